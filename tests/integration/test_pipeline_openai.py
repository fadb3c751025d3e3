"""The pipeline with OpenAI-compatible engines against a scripted HTTP server on 127.0.0.1.

Proves end to end that retries happen (429, slow replies) and that every fault that survives them
(500s, malformed bodies, unparseable judge replies) becomes a counted failure row — never a
dropped row, never a zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.scripted_openai import (
    ScriptedOpenAIServer,
    api_run_config,
    malformed,
    reply,
    sleep,
    status,
)
from wbray.aggregate import aggregate
from wbray.config import load_config
from wbray.dataset import load_benchmark
from wbray.storage import RunLayout, read_evaluations, read_generations, read_scores

pytestmark = pytest.mark.integration


def test_faults_become_failure_rows(ray_cluster: None, tmp_path: Path) -> None:
    import wbray

    bench = load_benchmark("example").select(indices=[1, 3, 5])
    fail_query = bench.get(3).query
    slow_query = bench.get(5).query
    names = {q.index: [c.name for c in q.checklist] for q in bench.queries}

    def script(body: dict[str, Any], attempt: int) -> Any:
        msgs = body["messages"]
        if msgs[0]["role"] != "system":  # a candidate generation request
            if msgs[-1]["content"] == fail_query:
                return status(500, "overloaded")
            if msgs[-1]["content"] == slow_query and attempt == 1:
                return status(429, headers={"Retry-After": "0.05"})
            return reply(
                "A complete and careful answer.", usage={"prompt_tokens": 12, "completion_tokens": 6}
            )
        prompt = msgs[-1]["content"]
        index = next(i for i in names if bench.get(i).query in prompt)
        pos = next(k for k, n in enumerate(names[index]) if f"'name': '{n}'" in prompt)
        if pos == 0:
            return reply('```json\n{"score": 7, "reason": "solid"}\n```')
        if pos == 1:
            return malformed(b"<html>bad gateway</html>")
        if pos == 2:
            return reply("I cannot decide.") if attempt == 1 else reply('{"score": 5, "reason": "ok"}')
        if pos == 3:
            return (
                sleep(2.0, then=reply('{"score": 9, "reason": "late"}'))
                if attempt == 1
                else reply('{"score": 6, "reason": "x"}')
            )
        return reply("Score: ten out of ten!")  # never parses

    with ScriptedOpenAIServer(script) as srv:
        cfg = api_run_config(tmp_path, srv.base_url, max_retries=2, timeout_s=1.0, max_reasks=1)
        config = load_config(cfg)
        out = tmp_path / "run"
        wbray.evaluate(config, out=str(out), overrides=["data.indices=[1, 3, 5]"])
        sent = srv.requests

    layout = RunLayout.at(str(out))
    gens = read_generations(layout).to_pandas().set_index("index")
    assert gens.loc[3, "status"] == "failed" and gens.loc[3, "error"] == "http 500 after 2 retries"
    assert gens.loc[1, "status"] == "ok" and gens.loc[5, "status"] == "ok"
    assert gens.loc[1, "completion_tokens"] == 6
    gen_bodies = [r.body for r in sent]
    slow = [
        b
        for b in gen_bodies
        if b["messages"][0]["role"] != "system" and b["messages"][-1]["content"] == slow_query
    ]
    assert len(slow) == 2  # the 429 was retried

    scores = read_scores(layout, "api-judge").to_pandas()
    assert len(scores) == 15  # 3 queries x 5 criteria: nothing dropped
    failed_gen = scores[scores["index"] == 3]
    assert (failed_gen["status"] == "failed").all()
    assert failed_gen["error"].str.startswith("generation failed: http 500").all()
    for index in (1, 5):
        rows = scores[scores["index"] == index].set_index("criterion").loc[names[index]]
        assert list(rows["status"]) == ["ok", "failed", "ok", "ok", "failed"]
        assert list(rows["score"].fillna(-1)) == [7.0, -1, 5.0, 6.0, -1]
        assert rows["error"].iloc[1].startswith("engine: malformed response")
        assert rows["attempts"].iloc[2] == 2  # re-asked after an unparseable reply
        assert rows["error"].iloc[4].startswith("unparseable reply") and rows["attempts"].iloc[4] == 2
        assert rows["raw"].iloc[4] == "Score: ten out of ten!"

    board = aggregate(read_evaluations(layout, "api-judge"), bench.queries, bench.requirements)
    row = board.official.set_index("Model").loc["api-model"]
    assert row["Count"] == 2
    assert row["Overall"] == pytest.approx((7 + 5 + 6) / 3)  # failures excluded, not zero
    fails = board.failures.set_index("Model").loc["api-model"]
    assert fails["evaluations_failed"] == 9 and fails["queries_failed"] == 1


def test_answers_from_files_are_judged_and_rescored_only_where_changed(
    ray_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The official workflow: answers generated elsewhere, judged from upstream's response files."""
    import json

    import wbray
    from wbray.cli import main

    def script(body: dict[str, Any], attempt: int) -> Any:
        prompt = body["messages"][-1]["content"]
        score = 3 if "REVISED" in prompt else 8 if "answer for" in prompt else 1  # 1: the empty answer
        return reply(f'{{"score": {score}, "reason": "scripted"}}')

    responses = tmp_path / "responses"
    responses.mkdir()
    answers = {1: "answer for 1", 3: "", 5: "answer for 5"}  # an empty answer is judged, not dropped

    def write(answers: dict[int, str]) -> None:
        lines = [json.dumps({"index": i, "response": r}) for i, r in answers.items()]
        (responses / "ext.jsonl").write_text("\n".join(lines) + "\n")

    write(answers)
    out = str(tmp_path / "run")
    with ScriptedOpenAIServer(script) as srv:
        judge = f"{{backend: openai, base_url: '{srv.base_url}', model: m, initial_backoff_s: 0.01}}"
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(
            f"data: {{data_dir: example, indices: [1, 3, 5]}}\n"
            f"candidates: [{{name: ext, responses: '{responses}'}}]\n"
            f"judge: {{name: api-judge, engine: {judge}, resources: {{num_cpus: 0.25}}}}\n"
        )
        first = wbray.evaluate(str(cfg), out=out)
        sent = srv.request_count
        again = wbray.evaluate(str(cfg), out=out)
        assert srv.request_count == sent  # unchanged file: nothing judged again
        write({**answers, 5: "REVISED answer for 5"})
        third = wbray.evaluate(str(cfg), out=out)
        assert srv.request_count == sent + 5  # one changed answer: its five criteria only

        write({1: "answer for 1"})  # indices 3 and 5 missing
        assert main(["run", str(cfg), "--out", out]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "ext.jsonl" in err[0] and "no response for 2 of the 3 selected" in err[0]
        partial = wbray.evaluate(str(cfg), out=str(tmp_path / "partial"), allow_missing=True)

    assert first.computed == {"generate:ext": 0, "score:ext": 15} and first.skipped["generate:ext"] == 3
    assert again.computed == {"generate:ext": 0, "score:ext": 0}
    assert third.computed == {"generate:ext": 0, "score:ext": 5}
    official = first.leaderboard.official.set_index("Model")  # type: ignore[union-attr]
    assert official.loc["ext", "Overall"] == pytest.approx((8 + 1 + 8) / 3)
    # The leaderboard follows the file as it is now: the superseded answer's verdicts are left out.
    now = third.leaderboard.official.set_index("Model")  # type: ignore[union-attr]
    assert now.loc["ext", "Overall"] == pytest.approx((8 + 1 + 3) / 3)
    layout = RunLayout.at(out)
    assert len(read_evaluations(layout, "api-judge")) == 15
    assert len(read_generations(layout).to_pandas()) == 4  # the old answer stays stored
    exported = tmp_path / "export"
    assert main(["export", out, "--out", str(exported)]) == 0
    rows = [json.loads(x) for x in (exported / "responses" / "ext.jsonl").read_text().splitlines()]
    assert {r["index"]: r["response"] for r in rows} == {1: "answer for 1", 3: "", 5: "REVISED answer for 5"}
    assert partial.computed == {"generate:ext": 0, "score:ext": 5}
    coverage = partial.leaderboard.failures.set_index("Model").loc["ext"]  # type: ignore[union-attr]
    assert coverage["queries_missing"] == 2


def test_the_judge_cache_is_shared_across_run_directories(ray_cluster: None, tmp_path: Path) -> None:
    """Same answers, same judge, a new run directory: every verdict comes from the cache and the
    judge is never called; a refresh draws anew; a different judge setting misses."""
    import wbray
    from wbray.storage import read_manifest

    def script(body: dict[str, Any], attempt: int) -> Any:
        msgs = body["messages"]
        if msgs[0]["role"] != "system":
            return reply(f"Answer to: {msgs[-1]['content'][:30]}")  # deterministic answers
        return reply(f'{{"score": {1 + len(msgs[-1]["content"]) % 10}, "reason": "scripted"}}')

    def judge_calls(srv: ScriptedOpenAIServer) -> int:
        return sum(1 for r in srv.requests if r.body["messages"][0]["role"] == "system")

    cache = str(tmp_path / "judge-cache")
    with ScriptedOpenAIServer(script) as srv:
        cfg = api_run_config(tmp_path, srv.base_url)
        # The judge sees one row per batch (as a CPU judge does): without buffering, one part each.
        base = [
            "data.indices=[1, 2]",
            f"judge.cache={cache}",
            "run.part_rows=4",
            "judge.resources={actors: 1, num_cpus: 0.25, batch_size: 1}",
        ]
        first = wbray.evaluate(str(cfg), out=str(tmp_path / "a"), overrides=base)
        cold = judge_calls(srv)
        second = wbray.evaluate(str(cfg), out=str(tmp_path / "b"), overrides=base)
        warm = judge_calls(srv) - cold
        third = wbray.evaluate(
            str(cfg), out=str(tmp_path / "c"), overrides=[*base, "judge.cache_refresh=true"]
        )
        refreshed = judge_calls(srv) - cold - warm
        other = wbray.evaluate(
            str(cfg), out=str(tmp_path / "d"), overrides=[*base, "judge.sampling.temperature=0.2"]
        )

    assert cold == 10 and warm == 0 and refreshed == 10
    stages = {}
    for name, summary in (("a", first), ("b", second), ("c", third), ("d", other)):
        manifest = read_manifest(RunLayout.at(summary.root))
        assert manifest is not None and manifest.last is not None
        (stages[name],) = [s for s in manifest.last.stages if s.stage == "score"]
    assert (stages["a"].cache_hits, stages["a"].cache_misses) == (0, 10)
    assert (stages["b"].cache_hits, stages["b"].cache_misses) == (10, 0)
    assert (stages["c"].cache_hits, stages["c"].cache_misses) == (0, 10)
    assert stages["d"].cache_hits == 0  # another sampling is another judge
    # Buffered parts: at most one per 4 verdicts (Ray Data may hand several batches at once).
    assert 1 <= stages["a"].parts <= 3 and stages["a"].parts_per_1000_rows is not None
    # A hit is the verdict the first run drew: same scores, reasons and statuses.
    cols = ["index", "criterion", "score", "reason", "status"]
    a = (
        read_evaluations(RunLayout.at(first.root), "api-judge")[cols]
        .sort_values(cols[:2])
        .reset_index(drop=True)
    )
    b = (
        read_evaluations(RunLayout.at(second.root), "api-judge")[cols]
        .sort_values(cols[:2])
        .reset_index(drop=True)
    )
    import pandas as pd

    pd.testing.assert_frame_equal(a, b)
    assert set(read_scores(RunLayout.at(second.root), "api-judge").to_pandas()["cache"]) == {"hit"}
