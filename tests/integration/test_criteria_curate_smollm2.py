"""``generate_criteria`` and ``curate`` with the real SmolLM2-135M on CPU (mechanics only).

The tiny model writes valid JSON only under constrained decoding, and what it writes is noise (see the
tiny-model notes): its criteria are named like "Bella Luna" and it repeats names often, which the
validation rejects and re-asks. So nothing here is about quality: every query ends up with valid
criteria or a failure row, what validates is a benchmark that ``validate_path`` accepts and
``evaluate`` runs, and a curation's counts add up with exactly half of the scored pairs kept.
The strings are bounded very short (names 20 characters, texts 8) to keep a reply near 450 tokens.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.scripted_openai import ScriptedOpenAIServer, reply
from wbray.dataset import load_benchmark, validate_path

pytestmark = pytest.mark.integration

#: Original example queries (short and English: the tiny model reads no Chinese).
QUERIES = [
    {"query": "Write a two-sentence thank-you note to a neighbour who watered my plants while I was away."},
    {"query": "Write a product blurb of under 60 words for a reusable bamboo lunch box.", "domain1": "Ads"},
    {"query": "Write a friendly reminder to my book club about Thursday's meeting at 7 pm."},
]


def _writer(model_dir: Path) -> dict[str, Any]:
    return {
        "engine": {"backend": "transformers", "model": str(model_dir), "batch_size": 3},
        # T 1.0 varies the names most (greedy decoding repeats one name five times); a fixed seed
        # keeps a run reproducible.
        "sampling": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 640, "seed": 0},
        "max_reasks": 2,
        "name_max_chars": 20,
        "text_max_chars": 8,
        "resources": {"num_cpus": 2, "batch_size": 3},
    }


def test_criteria_from_the_tiny_model_make_a_benchmark_that_runs(
    ray_cluster: None, smollm2_dir: Path, tmp_path: Path
) -> None:
    import wbray
    from wbray.criteria import generate_criteria

    source = tmp_path / "new.jsonl"
    source.write_text("".join(json.dumps(q) + "\n" for q in QUERIES), encoding="utf-8")
    out = tmp_path / "bench"
    summary = generate_criteria(str(source), str(out), {"criteria": _writer(smollm2_dir)})

    assert summary.queries == 3 and summary.ok + len(summary.failed) == 3
    failures = [json.loads(x) for x in (out / "criteria_failures.jsonl").read_text().splitlines()]
    assert [(f["index"], f["error"]) for f in failures] == summary.failed
    assert all(f["error"] and f["attempts"] >= 1 for f in failures)
    assert summary.ok >= 1, f"no query got valid criteria in 3 calls each: {summary.failed}"

    assert validate_path(out) == []
    bench = load_benchmark(out)
    assert len(bench.queries) == summary.ok
    for q in bench.queries:
        assert q.lang == "en" and q.domain2 == "Custom"
        assert len(q.checklist) == 5
        assert len({c.name.casefold() for c in q.checklist}) == 5
        for c in q.checklist:
            assert len(c.name) <= 20 and all(0 < len(c.item[k].strip()) <= 8 for k in list(c.item)[1:])

    # The new benchmark runs: the tiny model answers, a scripted judge scores every criterion.
    first = bench.queries[0]
    judged: list[str] = []

    def judge(body: dict[str, Any], attempt: int) -> Any:
        judged.append(body["messages"][-1]["content"])
        return reply('{"score": 6, "reason": "scripted"}')

    with ScriptedOpenAIServer(judge) as srv:
        config = {
            "data": {"data_dir": str(out), "indices": [first.index]},
            "candidates": [
                {
                    "name": "smol",
                    "engine": {"backend": "transformers", "model": str(smollm2_dir), "batch_size": 1},
                    "sampling": {"max_tokens": 16, "temperature": 0},
                }
            ],
            "generation": {"resources": {"num_cpus": 1, "batch_size": 1}},
            "judge": {
                "name": "scripted",
                "engine": {"backend": "openai", "base_url": srv.base_url, "model": "m"},
                "resources": {"num_cpus": 0.25},
            },
        }
        run = wbray.evaluate(config, out=str(tmp_path / "run"))
    assert run.leaderboard is not None
    row = run.leaderboard.official.set_index("Model").loc["smol"]
    assert row["Count"] == 1 and row["Overall"] == pytest.approx(6.0)
    assert len(judged) == 5
    for c in first.checklist:  # every generated criterion reached the judge prompt
        assert sum(repr(c.name) in prompt for prompt in judged) == 1


def test_curation_with_the_tiny_model_keeps_exactly_half(
    ray_cluster: None, smollm2_dir: Path, tmp_path: Path
) -> None:
    from wbray.curate import curate

    given = [
        {
            "name": name,
            "criteria_description": f"The message is {name.lower()}.",
            "1-2": "Not at all.",
            "3-4": "Barely.",
            "5-6": "Somewhat.",
            "7-8": "Mostly.",
            "9-10": "Fully.",
        }
        for name in ("Warm", "Brief")
    ]
    birthday = "Write a two-line birthday message for a coworker."
    cleanup = "Write one sentence inviting neighbours to a street clean-up on Saturday."
    pairs = [
        {
            "prompt": birthday,
            "response": "Happy birthday! Thanks for all your help this year.",
            "checklist": given,
        },
        {"prompt": birthday, "response": "birthday.", "checklist": given},
        {"prompt": cleanup, "response": "Join us Saturday at 9 to clean up Elm Street together!"},
        {"prompt": cleanup, "response": "There is a thing on a day."},
    ]
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    config = {
        "criteria": _writer(smollm2_dir),
        "judge": {
            "name": "smol-judge",
            "engine": {"backend": "transformers", "model": str(smollm2_dir), "batch_size": 4},
            "constrained": True,  # the tiny model needs a grammar to write {score, reason}
            "reason_max_chars": 16,
            "max_reasks": 0,
            "sampling": {"temperature": 0, "max_tokens": 48},
            "template": "builtin",
            "resources": {"num_cpus": 2, "batch_size": 4},
        },
    }
    out = tmp_path / "curated"
    summary = curate(str(source), str(out), config, keep=0.5)

    sets = {
        name: [json.loads(x) for x in (out / f"{name}.jsonl").read_text().splitlines()]
        for name in ("kept", "dropped", "unscored")
    }
    assert summary.kept + summary.dropped + summary.unscored == 4
    assert [len(sets[n]) for n in ("kept", "dropped", "unscored")] == [
        summary.kept,
        summary.dropped,
        summary.unscored,
    ]
    scored = summary.kept + summary.dropped
    # The pairs bringing a checklist are always judged: constrained verdicts parse.
    assert scored >= 2, f"unscored: {[r['unscored_reason'] for r in sets['unscored']]}"
    assert summary.kept == math.floor(scored / 2)
    assert all(1 <= r["score"] <= 10 for n in ("kept", "dropped") for r in sets[n])
    if sets["kept"] and sets["dropped"]:
        assert min(r["score"] for r in sets["kept"]) >= max(r["score"] for r in sets["dropped"])
    for r in sets["unscored"]:
        assert r["unscored_reason"].startswith(("criteria: ", "judge: ")) and r["score"] is None
    # Each pair's verdicts: two for the given checklist, five for the written one.
    for r in sets["kept"] + sets["dropped"]:
        assert len(r["criteria_scores"]) == (2 if r["prompt"] == birthday else 5)
        if r["prompt"] == cleanup:
            assert len(r["checklist"]) == 5  # the written criteria come with the row
    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {
        "pairs": 4,
        "kept": summary.kept,
        "dropped": summary.dropped,
        "unscored": summary.unscored,
    }
    assert sum(b["pairs"] for b in report["histogram"]) == scored
    assert sum(b["kept"] for b in report["histogram"]) == summary.kept
    assert report["criteria"]["prompts_written"] == 1  # two pairs, one distinct prompt, asked once
    assert report["judge"]["template_source"] == "builtin"
