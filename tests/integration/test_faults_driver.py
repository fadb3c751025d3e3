"""The driver dies (issue 11): ``wbray run`` SIGKILLed with its whole session — its embedded Ray
cluster included — once mid-generation and once mid-scoring.

The kill lands at a known point: the scripted endpoint holds the requests after it (the answers
to queries 3 and 4; the verdicts after the fifth) until the driver is dead, so the state on disk
is exact, not whatever a timer caught. Then:

* what the crash left reads as nothing new: ``wbray export`` and ``wbray aggregate`` read
  committed parts only (a crashed first run exports no answers; a crashed re-run aggregates and
  exports exactly what the last complete run committed);
* the same command again computes only the missing rows — counted on disk before the re-run and
  in the manifest's history after it — writes none twice, and ends equal to an uninterrupted run;
* no secret (the AWS canary, the engines' API key) is in any file the driver's Ray cluster wrote
  (its whole ``RAY_TMPDIR``: logs, session files) or in the run directory (manifest, reports).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import TEST_AWS_SECRET
from tests.helpers.faults import (
    API_KEY_CANARY,
    API_KEY_ENV,
    Endpoint,
    find_secrets,
    is_judge,
    kill_session,
    ray_tmpdir,
    run_config,
    wait_for,
    wbray_cli,
)
from tests.helpers.on_disk import expected_ids, rows_on_disk
from tests.helpers.scripted_openai import ScriptedOpenAIServer
from wbray.config import load_config
from wbray.dataset import load_benchmark
from wbray.storage import RunLayout, read_manifest

pytestmark = pytest.mark.integration

INDICES = [1, 2, 3, 4]
COLUMNS = ("score", "status", "reason", "error")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[Endpoint, ScriptedOpenAIServer]]:
    script = Endpoint()
    with ScriptedOpenAIServer(script) as srv:
        yield script, srv


def _results(out: Path) -> pd.DataFrame:
    rows = rows_on_disk(str(out / "scores"), COLUMNS).rows
    return pd.DataFrame(rows).drop(columns=["part"]).sort_values("row_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(
    ray_cluster: None,
    endpoint: tuple[Endpoint, ScriptedOpenAIServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> pd.DataFrame:
    """Verdicts of an uninterrupted in-process run (no api_key_env: this cluster's workers never
    saw the key, and which variable holds it is not part of a row's identity)."""
    import wbray

    script, srv = endpoint
    script.reset()
    tmp = tmp_path_factory.mktemp("reference")
    cfg = load_config(run_config(tmp / "cfg.yaml", srv.base_url, indices=INDICES))
    wbray.evaluate(cfg, out=str(tmp / "run"))
    return _results(tmp / "run")


@pytest.fixture
def tmpdir_ray() -> Iterator[Path]:
    with ray_tmpdir() as path:
        yield path


@functools.cache
def _queries() -> dict[str, int]:
    return {q.query: q.index for q in load_benchmark("example").select(indices=INDICES).queries}


def _query_of(body: Any) -> int | None:
    text = body["messages"][-1]["content"]
    return next((i for q, i in _queries().items() if q in text), None)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _finish(proc: Any) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    return str(out)


def test_driver_killed_mid_generation_resumes_computing_only_the_missing_rows(
    reference: pd.DataFrame,
    endpoint: tuple[Endpoint, ScriptedOpenAIServer],
    tmp_path: Path,
    tmpdir_ray: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(API_KEY_ENV, API_KEY_CANARY)  # drivers and their clusters inherit it
    script, srv = endpoint
    script.reset()
    # Answers to queries 3 and 4 wait: the crash comes with two answers (and their ten verdicts)
    # stored and generation unfinished.
    script.hold = lambda body: not is_judge(body) and _query_of(body) in (3, 4)
    cfg = run_config(tmp_path / "cfg.yaml", srv.base_url, indices=INDICES, api_key_env=API_KEY_ENV)
    expected = expected_ids(load_config(cfg))
    assert len(expected.generations) == 4 and len(expected.scores) == 20
    out = tmp_path / "run"
    env = {"RAY_TMPDIR": str(tmpdir_ray)}
    run = wbray_cli("run", str(cfg), "--out", str(out), env=env)

    def mid_generation() -> bool:
        gens, scores = rows_on_disk(str(out / "generations")), rows_on_disk(str(out / "scores"))
        return len(gens.ids) == 2 and len(scores.ids) == 10 and script.held > 0

    wait_for(mid_generation, "two answers and their verdicts stored", proc=run)
    kill_session(run, tmpdir_ray)
    layout = RunLayout.at(str(out))
    crashed = read_manifest(layout)
    assert crashed is not None and crashed.status == "running"  # a crash never reads as complete
    gens, scores = rows_on_disk(str(out / "generations")), rows_on_disk(str(out / "scores"))
    assert not gens.duplicates and set(gens.ids) < expected.generations
    assert not scores.duplicates and set(scores.ids) < expected.scores

    # Nothing of the crashed run was committed: export finds no answers, aggregation no verdicts.
    exported = tmp_path / "export"
    done = wbray_cli("export", str(out), "--out", str(exported))
    _finish(done)
    assert not (exported / "responses").exists() and not (exported / "scores").exists()

    script.gate.set()
    _finish(wbray_cli("run", str(cfg), "--out", str(out), env=env))
    rows_on_disk(str(out / "generations")).assert_exact(expected.generations, "generations")
    rows_on_disk(str(out / "scores")).assert_exact(expected.scores, "verdicts")
    manifest = read_manifest(layout)
    assert manifest is not None and manifest.status == "complete" and manifest.last is not None
    stages = {s.stage: s for s in manifest.last.stages}
    assert (stages["generate"].computed, stages["generate"].skipped) == (4 - len(gens.ids), len(gens.ids))
    assert (stages["score"].computed, stages["score"].skipped) == (20 - len(scores.ids), len(scores.ids))
    assert stages["generate"].planned == 2 and stages["score"].planned == 10
    pd.testing.assert_frame_equal(_results(out), reference)

    assert any(r.headers.get("authorization") == f"Bearer {API_KEY_CANARY}" for r in srv.requests)
    logs = list(tmpdir_ray.rglob("logs"))
    assert logs, "the driver's Ray cluster left no logs to read"
    hits = find_secrets([tmpdir_ray, out], (TEST_AWS_SECRET, API_KEY_CANARY))
    assert not hits, hits[:5]


def test_driver_killed_mid_scoring_leaves_only_committed_results_readable_and_resumes(
    reference: pd.DataFrame,
    endpoint: tuple[Endpoint, ScriptedOpenAIServer],
    tmp_path: Path,
    tmpdir_ray: Path,
) -> None:
    import wbray

    script, srv = endpoint
    script.reset()
    cfg = run_config(tmp_path / "cfg.yaml", srv.base_url, indices=INDICES)
    expected = expected_ids(load_config(cfg))
    out = tmp_path / "run"
    # A complete run of queries 1-2 first: what the crashed re-run must leave readable as is.
    wbray.evaluate(load_config(cfg, ["data.indices=[1, 2]"]), out=str(out))
    board0, export0 = tmp_path / "before.csv", tmp_path / "export0"
    _finish(wbray_cli("aggregate", str(out), "--data-dir", "example", "--csv", str(board0)))
    _finish(wbray_cli("export", str(out), "--out", str(export0)))

    # All four queries: answers 3 and 4 come at once, the judge answers five more verdicts and
    # the rest wait — the driver dies mid-scoring with 15 of 20 verdicts stored.
    script.reset()
    script.hold_judge_after = 5
    env = {"RAY_TMPDIR": str(tmpdir_ray)}
    run = wbray_cli("run", str(cfg), "--out", str(out), env=env)

    def mid_scoring() -> bool:
        gens, scores = rows_on_disk(str(out / "generations")), rows_on_disk(str(out / "scores"))
        return len(gens.ids) == 4 and len(scores.ids) == 15 and script.held > 0

    wait_for(mid_scoring, "fifteen verdicts stored", proc=run)
    kill_session(run, tmpdir_ray)
    scores = rows_on_disk(str(out / "scores"))
    assert not scores.duplicates and set(scores.ids) < expected.scores

    # Aggregation and export of the crashed run read only what the complete run committed.
    board1, export1 = tmp_path / "after.csv", tmp_path / "export1"
    _finish(wbray_cli("aggregate", str(out), "--data-dir", "example", "--csv", str(board1)))
    _finish(wbray_cli("export", str(out), "--out", str(export1)))
    pd.testing.assert_frame_equal(pd.read_csv(board1), pd.read_csv(board0))
    before, after = _tree(export0), _tree(export1)
    assert "responses/api-model.jsonl" in before and "scores/api-model.jsonl" in before
    assert after == before

    script.gate.set()
    _finish(wbray_cli("run", str(cfg), "--out", str(out), env=env))
    rows_on_disk(str(out / "generations")).assert_exact(expected.generations, "generations")
    rows_on_disk(str(out / "scores")).assert_exact(expected.scores, "verdicts")
    manifest = read_manifest(RunLayout.at(str(out)))
    assert manifest is not None and manifest.status == "complete" and manifest.last is not None
    stages = {s.stage: s for s in manifest.last.stages}
    assert (stages["generate"].computed, stages["generate"].skipped) == (0, 4)
    assert (stages["score"].computed, stages["score"].skipped) == (20 - len(scores.ids), len(scores.ids))
    pd.testing.assert_frame_equal(_results(out), reference)
    hits = find_secrets([tmpdir_ray, out], (TEST_AWS_SECRET,))
    assert not hits, hits[:5]
