"""The pipeline with OpenAI-compatible engines against a scripted HTTP server on 127.0.0.1.

Endpoint faults (429, 500, timeouts, dropped connections, malformed and unparseable replies) are
proven in ``test_faults_judge.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.scripted_openai import ScriptedOpenAIServer, api_run_config, reply
from wbray.storage import RunLayout, read_evaluations, read_generations, read_scores

pytestmark = pytest.mark.integration


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
