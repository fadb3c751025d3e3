"""`wbray sweep` on a real multi-node Ray cluster, cells as Ray jobs, with the real tiny model.

The cluster: a head with the jobs API (``ray start --head``, 1 CPU, dashboard on 127.0.0.1) and a
second node joined with ``ray start --address`` (1 CPU), each its own ``ray start --block``
process in its own process group with its own ``--temp-dir``. Teardown ends exactly those
processes (never ``ray stop``, which ends every Ray process on the machine).

The sweep: 2 candidates x 1 judge on 2 short queries. One cell's job is stopped mid-run
(``ray job stop``) and the sweep command itself is killed; the same command run again follows the
other cell's job, resubmits only the stopped cell as its next attempt, and that attempt resumes
from the committed rows: every row of every Parquet part on disk is counted, none twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.helpers.scripted_openai import ScriptedOpenAIServer, reply
from wbray.dataset import load_benchmark
from wbray.storage import list_files, read_manifest, read_parquet
from wbray.sweeps import SweepLayout, read_state, sweep_key

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
#: Seconds a node may take to come up on a loaded 2-core machine.
START_TIMEOUT_S = 120.0
A, B = "smol-a--strict", "smol-b--strict"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    # Jobs inherit the environment of the `ray start` processes: this checkout first on the path.
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": path}


@dataclass
class JobsCluster:
    """The running cluster: its jobs API address and the `ray start` processes to end."""

    address: str
    root: Path
    procs: list[subprocess.Popen[bytes]]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.address}{path}", timeout=10) as r:
            return json.loads(r.read())


def _start(root: Path, name: str, args: list[str]) -> subprocess.Popen[bytes]:
    temp = root / name
    temp.mkdir()
    cmd = ["ray", "start", "--block", "--temp-dir", str(temp), "--num-cpus", "1"]
    cmd += ["--object-store-memory", "200000000", "--disable-usage-stats", *args]
    # The job agent's HTTP port defaults to 52365 on every node: another cluster on this machine
    # (the suite's own) holds it, and a head without its agent refuses every job submission.
    cmd += ["--dashboard-agent-listen-port", str(_free_port())]
    log = (root / f"{name}.out").open("wb")
    return subprocess.Popen(cmd, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _alive_nodes(cluster: JobsCluster) -> int:
    try:
        nodes = cluster.get("/api/v0/nodes?limit=10")["data"]["result"]["result"]
    except (OSError, KeyError, ValueError):
        return 0
    return sum(1 for n in nodes if n.get("state") == "ALIVE")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):  # the worker first, the head last
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        # Whatever the start command left behind in its group goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def jobs_cluster() -> Iterator[JobsCluster]:
    # Unix socket paths are limited to ~107 bytes: pytest's tmp_path is too deep for Ray's.
    root = Path(tempfile.mkdtemp(prefix="wbs-", dir="/tmp"))
    port, dash = _free_port(), _free_port()
    cluster = JobsCluster(f"http://127.0.0.1:{dash}", root, [])
    try:
        head = ["--head", "--port", str(port), "--include-dashboard", "true"]
        head += ["--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash)]
        cluster.procs.append(_start(root, "head", head))
        _wait(lambda: _alive_nodes(cluster) == 1, cluster, "the head")
        cluster.procs.append(_start(root, "node1", ["--address", f"127.0.0.1:{port}"]))
        _wait(lambda: _alive_nodes(cluster) == 2, cluster, "the second node")
        yield cluster
    finally:
        _stop(cluster.procs)
        shutil.rmtree(root, ignore_errors=True)


def _wait(ready: Any, cluster: JobsCluster, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for proc in cluster.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a `ray start` exited while waiting for {what}; see {cluster.root}/*.out")
        if ready():
            return
        time.sleep(1)
    raise TimeoutError(f"{what} did not come up within {START_TIMEOUT_S:.0f} s")


def _sweep_file(tmp_path: Path, official_dir: Path, model_dir: Path, indices: list[int]) -> Path:
    engine = {"backend": "transformers", "model": str(model_dir), "batch_size": 1}
    # Fractional CPUs: two cells' drivers and pools fit the cluster's 2 CPUs at once.
    pool = {"actors": 1, "num_cpus": 0.4, "batch_size": 1}
    doc = {
        "name": "it",
        "base": {
            "data": {"data_dir": str(official_dir), "indices": indices},
            "generation": {"resources": pool},
            "ray": {"no_progress_timeout_s": 300},
            # Verdicts reach disk in parts of 5 (a stop then lands mid-run, after some are stored);
            # no bootstrap or browse page per cell: the sweep's leaderboard is what is checked.
            "run": {"part_rows": 5, "part_age_s": 5},
            "report": {"resamples": 0, "browse": False},
        },
        "candidates": [
            {"name": "smol-a", "engine": engine, "sampling": {"max_tokens": 16, "temperature": 0}},
            {"name": "smol-b", "engine": engine, "sampling": {"max_tokens": 12, "temperature": 0}},
        ],
        "judges": [
            {
                "name": "strict",
                "engine": {**engine, "batch_size": 5},
                "constrained": True,
                "reason_max_chars": 30,
                "sampling": {"max_tokens": 136, "seed": 3},
                "resources": {**pool, "batch_size": 5},
            }
        ],
        "baseline": "smol-a",
        "max_concurrent": 2,
        "job": {"num_cpus": 0.1},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _wbray(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wbray.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        start_new_session=True,
    )


def _rows_on_disk(run: Path, stage: str) -> pd.DataFrame:
    """Every row of every Parquet part of a stage, before any de-duplication."""
    parts = list_files(str(run / stage), ".parquet")
    table = read_parquet(parts)
    return table.to_pandas() if table is not None else pd.DataFrame()


def test_sweep_jobs_resume_only_the_stopped_cell(
    jobs_cluster: JobsCluster, official_dir: Path, smollm2_dir: Path, tmp_path: Path
) -> None:
    from ray.job_submission import JobSubmissionClient

    bench = load_benchmark(official_dir)
    english = sorted((q for q in bench.queries if q.lang == "en"), key=lambda q: len(q.query))
    # Three queries: 15 verdicts per cell, parts of 5, so after the first part two thirds of the
    # cell's judging is left for `ray job stop` to land in (with two, a cell could finish first).
    indices = sorted(q.index for q in english[:3])
    expected_scores = {(i, c.name) for i in indices for c in bench.by_index[i].checklist}
    sweep = _sweep_file(tmp_path, official_dir, smollm2_dir, indices)
    out = tmp_path / "sweep"
    layout = SweepLayout.at(str(out))
    args = ("sweep", str(sweep), "--address", jobs_cluster.address, "--out", str(out))

    first = _wbray(*args)
    # Wait until cell A has committed some verdicts: its job is mid-run.
    deadline = time.monotonic() + 400
    while not list_files(str(out / "cells" / A / "scores"), ".parquet"):
        if first.poll() is not None or time.monotonic() > deadline:
            pytest.fail(
                f"no verdict of {A} before the sweep ended:\n{first.stdout.read() if first.stdout else ''}"
            )
        time.sleep(0.5)
    state = read_state(layout, A)
    assert state is not None and state.status == "running" and state.submission_id is not None
    stopped = subprocess.run(
        ["ray", "job", "stop", state.submission_id, "--address", jobs_cluster.address, "--no-wait"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    # The job records its stop itself (before Ray kills it 3 s after the SIGTERM).
    deadline = time.monotonic() + 60
    while (s := read_state(layout, A)) is None or s.status != "failed":
        assert time.monotonic() < deadline, s
        time.sleep(0.5)
    assert "stopped" in (s.reason or "") or "STOPPED" in (s.reason or "").upper()
    # Now the sweep command itself dies: the cluster keeps running B's job.
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    b_at_kill = read_state(layout, B)
    assert b_at_kill is not None and b_at_kill.attempt == 1

    second = _wbray(*args)
    output, _ = second.communicate(timeout=480)
    assert second.returncode == 0, output
    assert f"{A}: resubmitting" in output, output
    # B's job was followed (or had just ended), never submitted again (the job list below).
    assert f"{B}: job {b_at_kill.submission_id} is still" in output or "1 cell(s) already succeeded" in output
    assert "Traceback" not in output, output

    # The jobs API: A ran twice (stopped, then succeeded), B once.
    key = sweep_key("it", str(out))
    mine = {
        j.submission_id: str(getattr(j.status, "value", j.status))
        for j in JobSubmissionClient(jobs_cluster.address).list_jobs()
        if (j.metadata or {}).get("wbray_out") == str(out)
    }
    cells = {k: v for k, v in mine.items() if "-report-" not in k}
    assert cells == {
        f"wbray-{key}-{A}-1": "STOPPED",
        f"wbray-{key}-{A}-2": "SUCCEEDED",
        f"wbray-{key}-{B}-1": "SUCCEEDED",
    }
    assert any("-report-" in k and v == "SUCCEEDED" for k, v in mine.items())

    for cell in (A, B):
        state = read_state(layout, cell)
        assert state is not None and state.status == "succeeded"
        run = out / "cells" / cell
        gens = _rows_on_disk(run, "generations")
        scores = _rows_on_disk(run, "scores")
        # Every row on disk once: exactly the expected answers and verdicts, no duplicates.
        assert len(gens) == len(indices) and gens["row_id"].is_unique
        assert sorted(gens["index"]) == indices
        assert len(scores) == len(expected_scores) and scores["row_id"].is_unique
        assert set(zip(scores["index"], scores["criterion"], strict=True)) == expected_scores
        assert set(scores["gen_row_id"]) <= set(gens["row_id"])
    a_state = read_state(layout, A)
    assert a_state is not None and a_state.attempt == 2 and [h.status for h in a_state.history] == ["failed"]
    # The resumed attempt kept what the stopped one had committed.
    manifest = read_manifest(layout.run(A))
    assert manifest is not None and manifest.status == "complete" and manifest.last is not None
    (score_stage,) = [s for s in manifest.last.stages if s.stage == "score"]
    assert score_stage.skipped >= 1 and score_stage.skipped + score_stage.planned == len(expected_scores)

    # One leaderboard for both models, with the delta to the baseline.
    report = out / "reports" / "strict"
    board = pd.read_csv(report / "leaderboard.csv")
    assert sorted(board["Model"]) == ["smol-a", "smol-b"]
    deltas = pd.read_csv(report / "deltas.csv").set_index("Model")
    assert deltas.loc["smol-a", "Δ Overall"] == 0 and "smol-b" in deltas.index

    status = _wbray("sweep", "status", str(out))
    shown, _ = status.communicate(timeout=120)
    assert status.returncode == 0, shown
    assert "2 succeeded" in shown and f"{len(expected_scores)}/{len(expected_scores)}" in shown


def test_sweep_without_address_runs_cells_in_process(tmp_path: Path) -> None:
    """No --address: cells run one after another in this process; a re-run has nothing to do."""
    from wbray.sweeps import run_sweep

    def script(body: dict[str, Any], attempt: int) -> Any:
        if body["messages"][0]["role"] != "system":
            return reply("An answer.")
        return reply('{"score": 7, "reason": "fine"}')

    with ScriptedOpenAIServer(script) as srv:
        engine = {"backend": "openai", "base_url": srv.base_url, "model": "m", "initial_backoff_s": 0.01}
        pool = {"actors": 1, "num_cpus": 0.25}
        doc = {
            "name": "local",
            "base": {
                "data": {"data_dir": "example", "indices": [1, 2]},
                "generation": {"resources": pool},
                "ray": {"num_cpus": 2},
                "report": {"resamples": 0, "browse": False},
            },
            "candidates": [{"name": n, "engine": engine} for n in ("api-a", "api-b")],
            "judges": [{"name": "api-judge", "engine": engine, "resources": pool}],
            "baseline": "api-a",
        }
        path = tmp_path / "local.yaml"
        path.write_text(yaml.safe_dump(doc))
        out = tmp_path / "sweep"
        lines: list[str] = []
        outcome = run_sweep(path, out=str(out), say=lines.append)
        assert outcome.statuses == {"api-a--api-judge": "succeeded", "api-b--api-judge": "succeeded"}
        assert not outcome.submitted
        deltas = pd.read_csv(out / "reports" / "api-judge" / "deltas.csv")
        assert deltas["Model"].tolist() == ["api-a", "api-b"] and (deltas["Δ Overall"] == 0).all()
        asked = srv.request_count
        again = run_sweep(path, out=str(out), say=lines.append)
        assert again.statuses == outcome.statuses and srv.request_count == asked
        assert "2 cell(s) already succeeded" in lines
