"""``wbray criteria`` and ``wbray curate`` on local Ray against a scripted OpenAI server: faults that
the tiny model cannot be made to produce on demand (replies that never validate, HTTP errors,
unparseable verdicts), and a threshold curation whose every score is known in advance.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.scripted_openai import ScriptedOpenAIServer, reply, status
from wbray.cli import main
from wbray.criteria import prompt_version
from wbray.dataset import load_benchmark, validate_path

pytestmark = pytest.mark.integration

WRITER_SYSTEM = "You design grading rubrics"  # how the script tells a criteria request from a verdict


def items(*names: str) -> list[dict[str, str]]:
    return [
        {
            "name": n,
            "criteria_description": f"Checks {n.lower()}.",
            "1-2": "Absent.",
            "3-4": "Weak.",
            "5-6": "Partial.",
            "7-8": "Good.",
            "9-10": "Excellent.",
        }
        for n in names
    ]


GOOD = json.dumps({"criteria": items("Warmth", "Brevity", "Names", "Humour", "Closing")})
DUPLICATE = json.dumps({"criteria": items("Tone", "Tone", "Facts", "Order", "Length")})
FOUR = json.dumps({"criteria": items("Tone", "Facts", "Order", "Length")})


def _config(tmp: Path, base_url: str, **sections: str) -> Path:
    engine = f"{{backend: openai, base_url: '{base_url}', model: m, max_retries: 0, initial_backoff_s: 0.01}}"
    text = f"""
criteria:
  engine: {engine}
  max_reasks: 1
  resources: {{num_cpus: 0.25}}
judge:
  name: scripted
  engine: {engine}
  max_reasks: 1
  resources: {{num_cpus: 0.25}}
"""
    for key, value in sections.items():
        text += f"{key}: {value}\n"
    path = tmp / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_criteria_that_never_validate_are_failure_rows_with_reasons(
    ray_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queries = _write_jsonl(
        tmp_path / "new.jsonl",
        [
            {"query": "Write a toast for my sister's wedding.", "domain1": "Life", "domain2": "Speeches"},
            {"query": "Draft a memo about the new expense policy."},
            {"query": "Describe our product to a first-time buyer."},
        ],
    )

    def script(body: dict[str, Any], attempt: int) -> Any:
        task = body["messages"][1]["content"]
        if "toast" in task:
            return reply(GOOD)
        if "memo" in task:
            return reply(DUPLICATE if len(body["messages"]) == 2 else FOUR)  # the re-ask is no better
        return status(500, "overloaded")

    out = tmp_path / "bench"
    with ScriptedOpenAIServer(script) as srv:
        code = main(
            ["criteria", str(queries), "--out", str(out), "--config", str(_config(tmp_path, srv.base_url))]
        )
        sent = [r.body for r in srv.requests]
    printed = capsys.readouterr().out
    assert code == 0
    # Every request carried the reply schema (constrained backends obey it; APIs get response_format).
    assert all(b["response_format"]["type"] == "json_schema" for b in sent)
    schema = sent[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["criteria"]["minItems"] == 5
    memo = [b for b in sent if "memo" in b["messages"][1]["content"]]
    assert len(memo) == 2  # asked once, re-asked once (max_reasks 1), then given up
    assert memo[1]["messages"][2] == {"role": "assistant", "content": DUPLICATE}
    assert "criteria[1].name: 'Tone' repeats criteria[0]'s name" in memo[1]["messages"][3]["content"]

    assert validate_path(out) == []
    bench = load_benchmark(out)
    assert [(q.index, q.domain1, q.domain2, q.lang) for q in bench.queries] == [(1, "Life", "Speeches", "en")]
    assert [c.name for c in bench.queries[0].checklist] == ["Warmth", "Brevity", "Names", "Humour", "Closing"]

    failures = [json.loads(line) for line in (out / "criteria_failures.jsonl").read_text().splitlines()]
    assert [(f["index"], f["line"], f["attempts"]) for f in failures] == [(2, 2, 2), (3, 3, 1)]
    assert failures[0]["error"] == (
        "no valid criteria after 2 call(s): invalid_criteria: criteria: expected exactly 5 criteria, got 4"
    )
    assert failures[0]["raw"] == FOUR and failures[0]["domain1"] == "Custom"
    assert failures[1]["error"] == "engine: http 500 after 0 retries"
    assert "3 queries -> 1 with criteria, 2 failed" in printed
    assert "failed: index 2: no valid criteria after 2 call(s)" in printed
    assert "failed: index 3: engine: http 500" in printed

    manifest = json.loads((out / "criteria_manifest.json").read_text())
    assert manifest["counts"] == {"queries": 3, "ok": 1, "failed": 2}
    assert manifest["prompt_version"] == prompt_version()
    assert manifest["defaulted"] == {"index": 3, "domain1": 2, "domain2": 2, "lang": 3}


def test_no_valid_criteria_at_all_exits_1_and_leaves_no_benchmark(
    ray_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queries = _write_jsonl(
        tmp_path / "new.jsonl", [{"index": 40, "query": "Write a limerick.", "lang": "en"}]
    )
    out = tmp_path / "bench"
    (out / "benchmark_query").mkdir(parents=True)
    (out / "benchmark_query" / "benchmark_all.jsonl").write_text("stale\n")  # from an earlier call
    with ScriptedOpenAIServer(lambda body, attempt: reply("I'd rather not.")) as srv:
        cfg = _config(tmp_path, srv.base_url)
        code = main(
            ["criteria", str(queries), "--out", str(out), "--config", str(cfg), "-o", "criteria.max_reasks=0"]
        )
    assert code == 1
    assert not (out / "benchmark_query" / "benchmark_all.jsonl").exists()
    failure = json.loads((out / "criteria_failures.jsonl").read_text())
    assert failure["index"] == 40 and failure["error"].startswith(
        "no valid criteria after 1 call(s): no_json_object"
    )
    assert "no query got valid criteria" in capsys.readouterr().err


def _judge_score(prompt: str) -> str:
    """Scores known in advance: the response says its score per criterion ("A=7 B=9 ...")."""
    criterion = re.search(r"'name': '([^']+)'", prompt)
    assert criterion is not None
    found = re.search(rf"\b{criterion.group(1)}=(\d+|x)\b", prompt)
    assert found is not None
    if found.group(1) == "x":
        return "I refuse to give a number."
    return json.dumps({"score": int(found.group(1)), "reason": f"scripted {criterion.group(1)}"})


def test_threshold_curation_with_known_scores(
    ray_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    given = items("A", "B")
    pairs = [
        {"id": "p1", "prompt": "Write a haiku.", "response": "A=7 B=9", "checklist": given, "src": "s1"},
        {"id": "p2", "prompt": "Write a haiku.", "response": "A=5 B=6", "checklist": given, "src": "s2"},
        {"id": "p3", "prompt": "Write a haiku.", "response": "A=x B=x", "checklist": given, "src": "s3"},
        {
            "id": "p4",
            "prompt": "Write a toast.",
            "response": "Warmth=8 Brevity=8 Names=6 Humour=x Closing=8",
            "src": "s4",
        },
        {"id": "p5", "prompt": "Write a limerick.", "response": "whatever", "src": "s5"},
        {"id": "p6", "prompt": "Write a haiku.", "response": "A=8 B=x", "checklist": given, "src": "s6"},
    ]
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(pairs), path)

    def script(body: dict[str, Any], attempt: int) -> Any:
        msgs = body["messages"]
        if msgs[0]["content"].startswith(WRITER_SYSTEM):
            return reply(GOOD if "toast" in msgs[1]["content"] else "no criteria today")
        return reply(_judge_score(msgs[-1]["content"]))

    out = tmp_path / "curated"
    with ScriptedOpenAIServer(script) as srv:
        cfg = _config(tmp_path, srv.base_url)
        code = main(["curate", str(path), "--out", str(out), "--config", str(cfg), "--min-score", "7.5"])
    printed = capsys.readouterr().out
    assert code == 0

    def read(name: str) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in pq.read_table(out / f"{name}.parquet").to_pylist()}

    kept, dropped, unscored = read("kept"), read("dropped"), read("unscored")
    # p1 (7+9)/2 = 8; p4 (8+8+6+8)/4 = 7.5 (the unparseable verdict is left out); p6 8 (B failed)
    assert {k: v["score"] for k, v in kept.items()} == {"p1": 8.0, "p4": 7.5, "p6": 8.0}
    assert {k: v["score"] for k, v in dropped.items()} == {"p2": 5.5}
    assert sorted(unscored) == ["p3", "p5"]
    assert unscored["p3"]["unscored_reason"].startswith(
        "judge: no verdict parsed (2 failed: unparseable reply"
    )
    assert unscored["p5"]["unscored_reason"].startswith(
        "criteria: no valid criteria after 2 call(s): no_json_object"
    )
    assert len(kept) + len(dropped) + len(unscored) == len(pairs)

    # Input columns survive; the written criteria come along for re-scoring without re-writing them.
    assert kept["p1"]["src"] == "s1" and [c["name"] for c in kept["p4"]["checklist"]][:2] == [
        "Warmth",
        "Brevity",
    ]
    entries = {e["criterion"]: e for e in kept["p4"]["criteria_scores"]}
    assert entries["Humour"]["status"] == "failed" and entries["Humour"]["score"] is None
    assert entries["Names"] == {
        "criterion": "Names",
        "repeat": 0,
        "score": 6.0,
        "reason": "scripted Names",
        "status": "ok",
        "error": None,
    }

    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {"pairs": 6, "kept": 3, "dropped": 1, "unscored": 2}
    assert report["cut_score"] == 7.5 and report["unscored_reasons"] == {"criteria": 1, "judge": 1}
    bins = {(b["lo"], b["pairs"], b["kept"]) for b in report["histogram"] if b["pairs"]}
    assert bins == {(5.0, 1, 0), (7.0, 1, 1), (8.0, 2, 2)}
    assert report["criteria"]["prompts_written"] == 2 and report["criteria"]["prompts_failed"] == 1
    assert "<svg" in (out / "histogram.html").read_text()
    assert (out / "histogram.txt").read_text() in printed
    assert "pairs: 6 = kept 3 + dropped 1 + unscored 2 (1 criteria, 1 judge)" in printed
