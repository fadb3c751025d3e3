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
