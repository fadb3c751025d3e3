"""The embedded default next to a running cluster: `wbray run` without an address always starts a
private cluster, even when `ray start` left one on the machine that a plain `ray.init()` would
attach to (and then refuse `num_cpus`: "When connecting to an existing cluster, num_cpus and
num_gpus must not be provided")."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.scripted_openai import ScriptedOpenAIServer, api_run_config, reply
from wbray.storage import RunLayout, read_manifest

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def running_cluster() -> Iterator[dict[str, str]]:
    """A head started by `ray start` in its own temp dir; RAY_TMPDIR makes it the cluster a plain
    `ray.init()` finds (its address file lives there), without touching other clusters' files."""
    root = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths have a limit
    env = {
        **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        "RAY_TMPDIR": str(root),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    port = _free_port()
    start = subprocess.run(
        [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--num-cpus", "1",
            "--port", str(port), "--include-dashboard", "false", "--disable-usage-stats",
            "--object-store-memory", "100000000", "--temp-dir", str(root / "ray"),
        ],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        yield {**env, "HEAD": f"127.0.0.1:{port}"}
    finally:
        # Stop exactly this cluster's processes (a global `ray stop` would end other clusters too).
        found = subprocess.run(["pgrep", "-f", str(root)], capture_output=True, text=True)
        for pid in found.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def test_run_without_an_address_starts_a_private_cluster_beside_a_running_one(
    running_cluster: dict[str, str], tmp_path: Path
) -> None:
    env = running_cluster
    probe = subprocess.run(
        [sys.executable, "-c", "import ray; ray.init(); print(len(ray.nodes()))"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert probe.returncode == 0 and probe.stdout.strip().endswith("1"), probe.stderr[
        -2000:
    ]  # plain init attaches

    def script(body: dict, attempt: int) -> object:
        if body["messages"][0]["role"] != "system":
            return reply("An answer.")
        return reply('{"score": 6, "reason": "fine"}')

    with ScriptedOpenAIServer(script) as srv:
        cfg = api_run_config(tmp_path, srv.base_url)
        out = tmp_path / "run"
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "wbray.cli", "run", str(cfg), "--limit", "1", "--out", str(out)],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "starting a private local Ray cluster" in done.stderr
    assert "When connecting to an existing cluster" not in done.stdout + done.stderr
    manifest = read_manifest(RunLayout.at(str(out)))
    assert manifest is not None and manifest.status == "complete" and manifest.row_counts["scores"].total == 5
    # The cluster `ray start` made is untouched, and joining it stays an explicit choice.
    status = subprocess.run(
        [sys.executable, "-m", "ray.scripts.scripts", "status", "--address", env["HEAD"]],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr[-1000:]
    assert time.monotonic() - started < 300
