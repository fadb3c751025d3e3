"""The S3-compatible store fails mid-run (issue 11): moto's real server on a fixed port, stopped
and started again while a run writes to it.

* A restart within the retry budget is a pause: every write is retried with backoff (boto3 and
  Arrow, ``storage.S3_MAX_ATTEMPTS``) and the run completes — the verdicts computed while the
  store was down are written after it came back.
* An outage beyond the budget stops the run with one line naming the endpoint; nothing it failed
  to write reads as complete (no commit marker, the manifest not ``complete``), and the re-run,
  with the store back, computes exactly the missing rows.
* A writer killed mid-run (``wbray run`` SIGKILLed with its session) leaves ``s3://`` results
  from which ``wbray aggregate`` and ``wbray export`` read exactly what the last complete run
  committed.

Counts are taken on the store itself (every row of every part, before de-duplication), and the
results equal an uninterrupted run's.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest

from tests.conftest import TEST_AWS_SECRET
from tests.helpers.faults import (
    Endpoint,
    assert_one_line_error,
    find_secrets,
    kill_session,
    ray_tmpdir,
    run_config,
    wait_for,
    wbray_cli,
)
from tests.helpers.on_disk import expected_ids, rows_on_disk
from tests.helpers.s3_server import RestartableS3
from tests.helpers.scripted_openai import ScriptedOpenAIServer
from wbray.cli import main
from wbray.config import load_config
from wbray.storage import RunLayout, list_files, read_manifest

pytestmark = pytest.mark.integration

BUCKET = "wbray-faults"
INDICES = [1, 2, 3, 4]
COLUMNS = ("score", "status", "reason", "error")
#: Seconds the store stays down in the ride-through test: several refused attempts, well inside
#: the default budget (about half a minute to a minute of backoff).
OUTAGE_S = 4.0


@pytest.fixture(scope="module")
def s3() -> Iterator[RestartableS3]:
    server = RestartableS3()
    server.start()
    old = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = server.endpoint  # the driver's options carry it to every stage
    boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket=BUCKET)
    yield server
    server.stop()
    if old is None:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    else:
        os.environ["AWS_ENDPOINT_URL"] = old


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[Endpoint, ScriptedOpenAIServer]]:
    script = Endpoint()
    with ScriptedOpenAIServer(script) as srv:
        yield script, srv


def _results(root: str) -> pd.DataFrame:
    rows = rows_on_disk(f"{root}/scores", COLUMNS).rows
    return pd.DataFrame(rows).drop(columns=["part"]).sort_values("row_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(
    ray_cluster: None,
    endpoint: tuple[Endpoint, ScriptedOpenAIServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> pd.DataFrame:
    """Verdicts of an uninterrupted run to a local directory."""
    import wbray

    script, srv = endpoint
    script.reset()
    tmp = tmp_path_factory.mktemp("reference")
    wbray.evaluate(
        load_config(run_config(tmp / "cfg.yaml", srv.base_url, indices=INDICES)), out=str(tmp / "run")
    )
    return _results(str(tmp / "run"))


@pytest.fixture
def tmpdir_ray() -> Iterator[Path]:
    with ray_tmpdir() as path:
        yield path


def _modified(prefix: str) -> dict[str, float]:
    """Key -> last-modified time of every object under ``s3://BUCKET/prefix``."""
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"]: o["LastModified"].timestamp() for p in pages for o in p.get("Contents", [])}


def _mid_scoring(root: str, script: Endpoint, gens: int, scores: int) -> bool:
    return (
        len(rows_on_disk(f"{root}/generations").ids) == gens
        and len(rows_on_disk(f"{root}/scores").ids) == scores
        and script.held > 0
    )


def test_a_store_restart_mid_run_is_a_pause_not_a_failure(
    reference: pd.DataFrame,
    s3: RestartableS3,
    endpoint: tuple[Endpoint, ScriptedOpenAIServer],
    tmp_path: Path,
) -> None:
    import wbray

    script, srv = endpoint
    script.reset()
    script.hold_judge_after = 5
    cfg = load_config(run_config(tmp_path / "cfg.yaml", srv.base_url, indices=INDICES))
    expected = expected_ids(cfg)
    root = f"s3://{BUCKET}/ride"
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["summary"] = wbray.evaluate(cfg, out=root)
        except BaseException as exc:  # reported below, with the test's own assertions
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: _mid_scoring(root, script, 4, 5), "the first verdicts on the store")
    before = set(rows_on_disk(f"{root}/scores").ids)
    s3.stop()
    script.gate.set()  # the held verdicts are computed now, while the store is down
    time.sleep(OUTAGE_S)
    back = time.time()
    s3.start()
    thread.join(timeout=600)

    assert "error" not in outcome, outcome.get("error")
    rows_on_disk(f"{root}/generations").assert_exact(expected.generations, "generations")
    scores = rows_on_disk(f"{root}/scores")
    scores.assert_exact(expected.scores, "verdicts")
    # The verdicts computed during the outage reached the store after it came back: retried.
    modified = _modified("ride/scores/")
    late = {r["part"] for r in scores.rows if r["row_id"] not in before}
    assert late and all(modified[p.removeprefix(f"s3://{BUCKET}/")] >= back - 1 for p in late)
    manifest = read_manifest(RunLayout.at(root))
    assert manifest is not None and manifest.status == "complete"
    pd.testing.assert_frame_equal(_results(root), reference)


def test_a_store_down_beyond_the_retries_stops_the_run_in_one_line_and_the_rerun_completes(
    reference: pd.DataFrame,
    s3: RestartableS3,
    endpoint: tuple[Endpoint, ScriptedOpenAIServer],
    tmp_path: Path,
    tmpdir_ray: Path,
) -> None:
    import wbray

    script, srv = endpoint
    script.reset()
    script.hold_judge_after = 5
    cfg_path = run_config(tmp_path / "cfg.yaml", srv.base_url, indices=INDICES)
    expected = expected_ids(load_config(cfg_path))
    root = f"s3://{BUCKET}/down"
    # Two attempts per request keep the outage short for the test; what matters is what happens
    # once the budget is spent, whatever its size.
    env = {"RAY_TMPDIR": str(tmpdir_ray), "AWS_MAX_ATTEMPTS": "2"}
    run = wbray_cli("run", str(cfg_path), "--out", root, env=env)
    wait_for(lambda: _mid_scoring(root, script, 4, 5), "the first verdicts on the store", proc=run)
    stored = rows_on_disk(f"{root}/scores")
    s3.stop()
    try:
        script.gate.set()
        stdout, stderr = run.communicate(timeout=600)
    finally:
        s3.start()

    assert run.returncode == 1, stdout[-3000:] + stderr[-3000:]
    assert_one_line_error(stderr, "the run stopped", "cannot reach the S3 endpoint", s3.endpoint)
    # Nothing the failed writes meant to store reads as complete.
    crashed = read_manifest(RunLayout.at(root))
    assert crashed is not None and crashed.status != "complete"
    assert not [k for k in list_files(f"{root}/scores") if k.endswith("_COMMITTED.json")]
    after = rows_on_disk(f"{root}/scores")
    assert sorted(after.ids) == sorted(stored.ids) and not after.duplicates

    again = wbray.evaluate(load_config(cfg_path), out=root)
    rows_on_disk(f"{root}/generations").assert_exact(expected.generations, "generations")
    rows_on_disk(f"{root}/scores").assert_exact(expected.scores, "verdicts")
    assert again.computed == {"generate:api-model": 0, "score:api-model": 20 - len(stored.ids)}
    assert again.skipped == {"generate:api-model": 4, "score:api-model": len(stored.ids)}
    manifest = read_manifest(RunLayout.at(root))
    assert manifest is not None and manifest.status == "complete"
    pd.testing.assert_frame_equal(_results(root), reference)
    hits = find_secrets([tmpdir_ray], (TEST_AWS_SECRET,))
    assert not hits, hits[:5]
    assert TEST_AWS_SECRET not in stdout + stderr


def test_a_writer_killed_mid_run_on_s3_leaves_only_committed_results_readable(
    reference: pd.DataFrame,
    s3: RestartableS3,
    endpoint: tuple[Endpoint, ScriptedOpenAIServer],
    tmp_path: Path,
    tmpdir_ray: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import wbray

    script, srv = endpoint
    script.reset()
    cfg_path = run_config(tmp_path / "cfg.yaml", srv.base_url, indices=INDICES)
    expected = expected_ids(load_config(cfg_path))
    root = f"s3://{BUCKET}/killed"
    # A complete run of queries 1-2: what aggregation and export must still read after the crash.
    wbray.evaluate(load_config(cfg_path, ["data.indices=[1, 2]"]), out=root)
    board0, export0 = tmp_path / "before.csv", tmp_path / "export0"
    assert main(["aggregate", root, "--data-dir", "example", "--csv", str(board0)]) == 0
    assert main(["export", root, "--out", str(export0)]) == 0

    script.reset()
    script.hold_judge_after = 5
    run = wbray_cli("run", str(cfg_path), "--out", root, env={"RAY_TMPDIR": str(tmpdir_ray)})
    wait_for(lambda: _mid_scoring(root, script, 4, 15), "fifteen verdicts on the store", proc=run)
    kill_session(run, tmpdir_ray)
    scores = rows_on_disk(f"{root}/scores")
    assert len(scores.ids) == 15 and not scores.duplicates

    board1, export1 = tmp_path / "after.csv", tmp_path / "export1"
    assert main(["aggregate", root, "--data-dir", "example", "--csv", str(board1)]) == 0
    assert main(["export", root, "--out", str(export1)]) == 0
    capsys.readouterr()
    pd.testing.assert_frame_equal(pd.read_csv(board1), pd.read_csv(board0))
    tree = {str(p.relative_to(export0)): p.read_bytes() for p in export0.rglob("*") if p.is_file()}
    assert "responses/api-model.jsonl" in tree and "scores/api-model.jsonl" in tree
    assert {str(p.relative_to(export1)): p.read_bytes() for p in export1.rglob("*") if p.is_file()} == tree

    script.gate.set()
    again = wbray.evaluate(load_config(cfg_path), out=root)
    assert again.computed == {"generate:api-model": 0, "score:api-model": 5}
    rows_on_disk(f"{root}/generations").assert_exact(expected.generations, "generations")
    rows_on_disk(f"{root}/scores").assert_exact(expected.scores, "verdicts")
    pd.testing.assert_frame_equal(_results(root), reference)
