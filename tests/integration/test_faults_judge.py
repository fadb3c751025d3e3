"""Endpoint faults (issue 11): the candidate and the judge behind a real HTTP server on 127.0.0.1
that answers each request with a scripted fault.

Every fault a real endpoint has — 429 with Retry-After, 500, a timeout, a dropped connection, a
reply cut off in transit, truncated JSON, an empty body, a reply that never parses — either passes
after a bounded number of retries or becomes a failure row with its reason. The run finishes;
the manifest's row counts, the summary and the leaderboard's failures table count the failures;
nothing is scored as zero (the means are those of the successful verdicts alone).

Per query (five criteria each, judged in this order):

====== =============================================================================
query  what happens
====== =============================================================================
1, 5   ok 7 · malformed 200 · unparseable once, then 5 · timeout once, then 6 ·
       never parses
3      the candidate's endpoint answers 500 to every attempt: five "generation failed" rows
7      429 + Retry-After every time · dropped connection every time · truncated JSON ·
       empty body · timeout every time
9      500 once · dropped connection once · 429 + Retry-After once · reply cut off in
       transit once · timeout once — each then 6
====== =============================================================================

The candidate's answer to query 5 also meets a 429 with Retry-After first.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_AWS_SECRET
from tests.helpers.faults import find_secrets
from tests.helpers.on_disk import expected_ids, rows_on_disk
from tests.helpers.scripted_openai import (
    ScriptedOpenAIServer,
    api_run_config,
    close_connection,
    cut_body,
    malformed,
    reply,
    sleep,
    status,
)
from wbray.aggregate import aggregate
from wbray.config import load_config
from wbray.dataset import load_benchmark
from wbray.storage import RunLayout, read_evaluations, read_generations, read_manifest, read_scores

pytestmark = pytest.mark.integration

INDICES = [1, 3, 5, 7, 9]
RETRIES = 2  # the engine's max_retries: an always-failing request is sent 1 + RETRIES times
TIMEOUT_S = 1.0
#: Failed verdicts: query 3's five, two each of queries 1 and 5, all five of query 7.
FAILED = 5 + 2 + 2 + 5


def test_endpoint_faults_are_retried_or_become_counted_failure_rows(
    ray_cluster: None, tmp_path: Path
) -> None:
    import wbray

    bench = load_benchmark("example").select(indices=INDICES)
    fail_query, slow_query = bench.get(3).query, bench.get(5).query
    names = {q.index: [c.name for c in q.checklist] for q in bench.queries}
    ok_json = '{"score": 6, "reason": "x"}'
    # A valid completion's JSON cut short, sent as a complete 200 body.
    truncated = json.dumps({"choices": [{"message": {"role": "assistant", "content": ok_json}}]})[:30]

    def where(prompt: str) -> tuple[int, int]:
        """(query index, criterion position) of a judge prompt."""
        index = next(i for i in names if bench.get(i).query in prompt)
        return index, next(k for k, n in enumerate(names[index]) if f"'name': '{n}'" in prompt)

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
        index, pos = where(msgs[-1]["content"])
        late = reply('{"score": 9, "reason": "late"}')
        if index == 7:
            return [
                status(429, "slow down", headers={"Retry-After": "0.05"}),
                close_connection(),
                malformed(truncated),
                malformed(b""),
                sleep(TIMEOUT_S + 1, then=late),
            ][pos]
        if index == 9:
            if attempt == 1:
                return [
                    status(500, "boom"),
                    close_connection(),
                    status(429, headers={"Retry-After": "0.05"}),
                    cut_body(ok_json, keep=25),
                    sleep(TIMEOUT_S + 1, then=late),
                ][pos]
            return reply(ok_json)
        if pos == 0:
            return reply('```json\n{"score": 7, "reason": "solid"}\n```')
        if pos == 1:
            return malformed(b"<html>bad gateway</html>")
        if pos == 2:
            return reply("I cannot decide.") if attempt == 1 else reply('{"score": 5, "reason": "ok"}')
        if pos == 3:
            return sleep(TIMEOUT_S + 1, then=late) if attempt == 1 else reply('{"score": 6, "reason": "x"}')
        return reply("Score: ten out of ten!")  # never parses

    with ScriptedOpenAIServer(script) as srv:
        cfg = api_run_config(tmp_path, srv.base_url, max_retries=RETRIES, timeout_s=TIMEOUT_S, max_reasks=1)
        config = load_config(cfg, [f"data.indices={INDICES}"])
        expected = expected_ids(config)
        out = tmp_path / "run"
        summary = wbray.evaluate(config, out=str(out))
        sent = srv.requests
        assert not srv.errors, srv.errors

    # Nothing lost, nothing written twice: counted on disk, before any de-duplication.
    assert len(expected.generations) == 5 and len(expected.scores) == 25
    rows_on_disk(str(out / "generations")).assert_exact(expected.generations, "generations")
    verdicts = rows_on_disk(str(out / "scores"), ("status", "score"))
    verdicts.assert_exact(expected.scores, "verdicts")
    assert [r["status"] for r in verdicts.rows].count("failed") == FAILED
    assert all(r["score"] is None for r in verdicts.rows if r["status"] == "failed")  # never a zero

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
    assert len(scores) == 25  # 5 queries x 5 criteria: nothing dropped
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
    hard = scores[scores["index"] == 7].set_index("criterion").loc[names[7]]
    assert list(hard["status"]) == ["failed"] * 5 and hard["score"].isna().all()
    assert list(hard["error"]) == [
        "engine: http 429 after 2 retries",
        hard["error"].iloc[1],  # the client library's wording; checked below
        hard["error"].iloc[2],
        hard["error"].iloc[3],
        f"engine: timeout after {TIMEOUT_S} s (2 retries)",
    ]
    assert hard["error"].iloc[1].startswith("engine: connection error:")
    assert hard["error"].iloc[1].endswith("(2 retries)")
    assert hard["error"].iloc[2].startswith("engine: malformed response: not JSON")
    assert hard["error"].iloc[3].startswith("engine: malformed response: not JSON")
    transient = scores[scores["index"] == 9]
    assert (transient["status"] == "ok").all() and (transient["score"] == 6).all()

    # Bounded: an always-failing request is sent exactly 1 + RETRIES times, a malformed 200 once
    # (a broken body is not a transport fault), a transient fault twice.
    judged = Counter(
        where(r.body["messages"][-1]["content"]) for r in sent if r.body["messages"][0]["role"] == "system"
    )
    assert [judged[(7, pos)] for pos in range(5)] == [1 + RETRIES, 1 + RETRIES, 1, 1, 1 + RETRIES]
    assert [judged[(9, pos)] for pos in range(5)] == [2] * 5
    assert judged[(1, 4)] == judged[(5, 4)] == 2  # a reply that never parses: re-asked once, then a row
    asked = Counter(
        r.body["messages"][-1]["content"] for r in sent if r.body["messages"][0]["role"] != "system"
    )
    assert asked[fail_query] == 1 + RETRIES

    # Counted wherever a run reports: the summary, the manifest, the leaderboard.
    assert summary.failed == {"generate:api-model": 1, "score:api-model": FAILED}
    manifest = read_manifest(layout)
    assert manifest is not None and manifest.status == "complete"
    assert manifest.row_counts["scores"].model_dump() == {"total": 25, "ok": 25 - FAILED, "failed": FAILED}
    assert manifest.row_counts["generations"].model_dump() == {"total": 5, "ok": 4, "failed": 1}
    board = aggregate(read_evaluations(layout, "api-judge"), bench.queries, bench.requirements)
    row = board.official.set_index("Model").loc["api-model"]
    assert row["Count"] == 3  # queries 1, 5 and 9 have verdicts; 3 and 7 none
    assert row["Overall"] == pytest.approx(6.0)  # failures excluded, not zero: (7+5+6)/3 and 6
    fails = board.failures.set_index("Model").loc["api-model"]
    assert fails["evaluations_failed"] == FAILED and fails["queries_failed"] == 2
    assert summary.leaderboard is not None
    assert summary.leaderboard.failures.set_index("Model").loc["api-model", "evaluations_failed"] == FAILED

    # No secret in what the run wrote (manifest, reports, parts) or in the driver's runtime env.
    import ray

    assert not find_secrets([out], (TEST_AWS_SECRET,))
    assert TEST_AWS_SECRET not in json.dumps(ray.get_runtime_context().runtime_env, default=str)
