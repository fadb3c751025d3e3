"""A worker node dies mid-run (issue 11): a real two-node Ray cluster on this machine.

The head and a second node are separate ``ray start`` processes (1 CPU each); ``wbray run
--address`` drives the run from its own process, as a user's shell would, against a scripted
OpenAI-compatible endpoint that answers deterministically (so a resumed run can be compared row
for row with an uninterrupted one). The second node dies as a machine would: every one of its
processes SIGKILLed at once, the head finding out from missed health checks.

Two outcomes, both proven with exact counts on disk:

* the judge ran on the dead node but may run elsewhere: Ray restarts it on the head, the batch in
  flight is retried, the run completes (before the fix in ``_execute.py`` the run still failed
  with a traceback at the very end: wbray's progress counter had been placed on the dead node);
* the judge is pinned to the dead node's resource: nothing can run it, so the run stops after
  ``ray.no_progress_timeout_s`` with one line (no traceback), the manifest says ``failed`` and
  why, and the re-run — once a replacement node joins — computes only what is missing.

A canary API key and the AWS canary secret travel to every node; neither may appear in any file
of the cluster's session directories (logs included), in Ray's job records, or in the run
directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import TEST_AWS_SECRET
from tests.helpers.faults import (
    API_KEY_CANARY,
    API_KEY_ENV,
    REPO,
    Endpoint,
    assert_one_line_error,
    find_secrets,
    run_config,
    wait_for,
    wbray_cli,
)
from tests.helpers.on_disk import expected_ids, rows_on_disk
from tests.helpers.ray_nodes import LocalRayCluster
from tests.helpers.scripted_openai import ScriptedOpenAIServer
from wbray.config import load_config
from wbray.storage import RunLayout, read_manifest

pytestmark = pytest.mark.integration

INDICES = [1, 2, 3, 4, 5, 6]
#: Judge requests answered before the rest wait at the gate: two of six batches, so scoring is
#: provably unfinished when the node dies, whatever order the batches come in.
ANSWERED = 10
RESULT_COLUMNS = ("score", "status", "reason", "error")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[Endpoint, ScriptedOpenAIServer]]:
    script = Endpoint()
    with ScriptedOpenAIServer(script) as srv:
        yield script, srv


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    env = {
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        API_KEY_ENV: API_KEY_CANARY,  # the engines read it on whichever node they run
    }
    with LocalRayCluster(env=env) as c:
        # The head offers `head_node` so a test can hold its only CPU with the generation pool.
        c.start_head(num_cpus=1, resources={"head_node": 1})
        yield c
    c.cleanup()


@pytest.fixture(scope="module")
def reference(
    ray_cluster: None,
    endpoint: tuple[Endpoint, ScriptedOpenAIServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> pd.DataFrame:
    """Verdicts of an uninterrupted run of the same rows on the in-process cluster (same endpoint,
    default resources: resources are not part of a row's identity)."""
    import wbray

    script, srv = endpoint
    script.reset()
    tmp = tmp_path_factory.mktemp("reference")
    # No api_key_env: this cluster's workers never saw the key, and which variable holds it is
    # not part of a row's identity either.
    cfg = run_config(tmp / "ref.yaml", srv.base_url, indices=INDICES)
    wbray.evaluate(load_config(cfg), out=str(tmp / "run"))
    return _results(tmp / "run")


def _results(out: Path) -> pd.DataFrame:
    rows = rows_on_disk(str(out / "scores"), RESULT_COLUMNS).rows
    return pd.DataFrame(rows).drop(columns=["part"]).sort_values("row_id").reset_index(drop=True)


def _driver_env() -> dict[str, str]:
    return {API_KEY_ENV: API_KEY_CANARY}


def _assert_no_secrets(cluster: LocalRayCluster, *dirs: Path) -> None:
    secrets = (TEST_AWS_SECRET, API_KEY_CANARY)
    hits = find_secrets([n.temp_dir for n in cluster.nodes] + list(dirs), secrets)
    assert not hits, hits[:5]
    jobs = "\n".join(cluster.inspect()["jobs"])
    assert "runtime_env" in jobs  # the records were read, runtime environments included
    assert not [s for s in secrets if s in jobs], "a secret is in Ray's job records"


def test_worker_node_dies_mid_scoring_and_the_run_finishes_on_the_head(
    reference: pd.DataFrame,
    cluster: LocalRayCluster,
    endpoint: tuple[Endpoint, ScriptedOpenAIServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(API_KEY_ENV, API_KEY_CANARY)  # this process probes the endpoint too
    script, srv = endpoint
    script.reset()
    script.hold_judge_after = ANSWERED

    worker = cluster.add_node(num_cpus=1, resources={"worker_node": 1})
    # The generation pool holds the head's only CPU, so the judge (1 CPU) can only start on the
    # worker node; once generation is done the head's CPU is free for the judge's restart.
    cfg = run_config(
        tmp_path / "cfg.yaml",
        srv.base_url,
        indices=INDICES,
        gen_resources="{actors: 1, num_cpus: 1, batch_size: 1, resources: {head_node: 1}}",
        judge_resources="{actors: 1, num_cpus: 1, batch_size: 5}",
        extra="ray: {no_progress_timeout_s: 120}",
        api_key_env=API_KEY_ENV,
    )
    expected = expected_ids(load_config(cfg))
    assert len(expected.generations) == 6 and len(expected.scores) == 30
    out = tmp_path / "run"
    run = wbray_cli("run", str(cfg), "--address", cluster.address, "--out", str(out), env=_driver_env())

    def mid_scoring() -> bool:
        gens, scores = rows_on_disk(str(out / "generations")), rows_on_disk(str(out / "scores"))
        return len(gens.ids) == 6 and len(scores.ids) == ANSWERED and script.held > 0

    wait_for(mid_scoring, "scoring to be under way", proc=run)
    state = cluster.inspect()
    (worker_id,) = [n for n, info in state["nodes"].items() if "worker_node" in info["resources"]]
    judges = [a for a in state["actors"] if "EngineStage" in a["ActorClassName"] and a["State"] == "ALIVE"]
    assert any(a["Address"]["NodeID"] == worker_id for a in judges), judges  # the judge is there
    before = rows_on_disk(str(out / "scores"))
    cluster.kill(worker)
    script.gate.set()
    stdout, stderr = run.communicate(timeout=600)

    assert run.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "Traceback" not in stdout + stderr
    assert len(before.ids) == ANSWERED  # the node died with verdicts still to compute
    rows_on_disk(str(out / "generations")).assert_exact(expected.generations, "generations")
    rows_on_disk(str(out / "scores")).assert_exact(expected.scores, "verdicts")
    manifest = read_manifest(RunLayout.at(str(out)))
    assert manifest is not None and manifest.status == "complete" and manifest.last is not None
    (pool,) = [p for p in manifest.last.pools if p.pool == "score:api-judge"]
    assert pool.engine_loads is not None and pool.engine_loads >= 2  # restarted: it ran on the dead node
    (stage,) = [s for s in manifest.last.stages if s.stage == "score"]
    assert stage.computed == stage.planned == 30 and stage.failed == 0
    pd.testing.assert_frame_equal(_results(out), reference)
    # The key reached the endpoint (so the canary check below is not vacuous).
    assert any(r.headers.get("authorization") == f"Bearer {API_KEY_CANARY}" for r in srv.requests)
    _assert_no_secrets(cluster, out)


def test_a_pinned_judge_whose_node_dies_stops_in_one_line_and_the_rerun_completes(
    reference: pd.DataFrame,
    cluster: LocalRayCluster,
    endpoint: tuple[Endpoint, ScriptedOpenAIServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(API_KEY_ENV, API_KEY_CANARY)  # this process probes the endpoint too
    script, srv = endpoint
    script.reset()
    script.hold_judge_after = ANSWERED

    worker = cluster.add_node(num_cpus=1, resources={"worker_node": 1})
    cfg = run_config(
        tmp_path / "cfg.yaml",
        srv.base_url,
        indices=INDICES,
        judge_resources="{actors: 1, num_cpus: 0.25, batch_size: 5, resources: {worker_node: 1}}",
        # Short, so the failure comes quickly; long enough for a fresh node to start the judge.
        extra="ray: {no_progress_timeout_s: 30}",
        api_key_env=API_KEY_ENV,
    )
    expected = expected_ids(load_config(cfg))
    out = tmp_path / "run"
    args = ("run", str(cfg), "--address", cluster.address, "--out", str(out))
    run = wbray_cli(*args, env=_driver_env())

    def mid_scoring() -> bool:
        return len(rows_on_disk(str(out / "scores")).ids) == ANSWERED and script.held > 0

    wait_for(mid_scoring, "scoring to be under way", proc=run)
    cluster.kill(worker)
    script.gate.set()
    stdout, stderr = run.communicate(timeout=600)

    assert run.returncode == 1, stdout[-3000:] + stderr[-3000:]
    line = assert_one_line_error(stderr, "the run stopped", "no progress", "re-run the same command")
    layout = RunLayout.at(str(out))
    failed = read_manifest(layout)
    assert failed is not None and failed.status == "failed"
    assert failed.error == line.removeprefix("wbray: error: ") and "\n" not in failed.error
    # What the dead node finished is on disk once each; nothing was sealed as complete.
    stored = rows_on_disk(str(out / "scores"))
    assert not stored.duplicates and set(stored.ids) < expected.scores
    assert not list((out / "scores").rglob("_COMMITTED.json"))
    gens = rows_on_disk(str(out / "generations"))

    # A replacement node joins (as an autoscaler or KubeRay would add one); the same command resumes.
    cluster.add_node(num_cpus=1, resources={"worker_node": 1})
    # The fresh node starts its workers from nothing while this 2-core box is busy: the short
    # timeout that made the failure quick could expire before the first batch moves. The timeout
    # is not part of any row's identity.
    again = wbray_cli(*args, "-o", "ray.no_progress_timeout_s=180", env=_driver_env())
    stdout, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stdout[-3000:] + stderr[-3000:]

    rows_on_disk(str(out / "generations")).assert_exact(expected.generations, "generations")
    rows_on_disk(str(out / "scores")).assert_exact(expected.scores, "verdicts")
    manifest = read_manifest(layout)
    assert manifest is not None and manifest.status == "complete" and manifest.last is not None
    by_stage = {s.stage: s for s in manifest.last.stages}
    assert by_stage["generate"].computed == 6 - len(gens.ids)
    assert by_stage["generate"].skipped == len(gens.ids)
    assert by_stage["score"].computed == by_stage["score"].planned == 30 - len(stored.ids)
    assert by_stage["score"].skipped == len(stored.ids)
    assert len(manifest.history) == 1  # the failed call recorded no invocation
    pd.testing.assert_frame_equal(_results(out), reference)
    assert json.loads((out / "manifest.json").read_text())["error"] is None
    _assert_no_secrets(cluster, out)
