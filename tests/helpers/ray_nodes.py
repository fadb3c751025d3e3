"""A multi-node Ray cluster on one machine, for tests where a node is the thing that fails.

Each node is its own ``ray start --block`` process in its own session (process group) with its own
``--temp-dir``: killing that group is a node dying (raylet, workers, agents and log monitor at
once, no goodbye to the GCS), and teardown ends exactly the processes this cluster started —
never ``ray stop``, which ends every Ray process on the machine, another test's included.

The head is told to notice a dead node within a few seconds instead of Ray's default half minute
(``RAY_health_check_*``), so a node-death test stays short.

Example::

    with LocalRayCluster(env={"PYTHONPATH": repo}) as cluster:
        cluster.start_head(num_cpus=1)
        worker = cluster.add_node(num_cpus=1, resources={"worker_node": 1})
        ...  # drivers join with --address cluster.address
        cluster.kill(worker)
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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

#: Seconds a node may take to come up on a loaded 2-core machine.
START_TIMEOUT_S = 120.0
#: The head declares a node dead after about period x threshold (default: 5 s x 5 and more).
FAST_HEALTH_CHECKS = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RayNode:
    """One node: its ``ray start --block`` process (a session leader) and its temp dir."""

    name: str
    proc: subprocess.Popen[bytes]
    temp_dir: Path
    resources: Mapping[str, float] = field(default_factory=dict)
    killed: bool = False

    @property
    def logs(self) -> Path:
        """The node's Ray log directory (``session_latest/logs`` under its temp dir)."""
        return self.temp_dir / "session_latest" / "logs"

    def processes(self) -> list[Proc]:
        """Every live process of the node: its process group (the start command, raylet, agents,
        log monitor) and their descendants — Ray workers lead process groups of their own."""
        table = _process_table()
        mine = {p.pid for p in table.values() if p.pgid == self.proc.pid}
        grew = True
        while grew:
            more = {p.pid for p in table.values() if p.ppid in mine} - mine
            mine |= more
            grew = bool(more)
        return [table[pid] for pid in sorted(mine)]

    def pids(self) -> list[int]:
        """The ids of :meth:`processes`."""
        return [p.pid for p in self.processes()]


# Ray's own tables, through its internal state accessor (the dashboard's state API is not started
# on these nodes). The job records are printed whole, so a test can search them for secrets.
_INSPECT = """
import json, sys
import ray
from ray._private import state
from ray.core.generated import gcs_pb2
ray.init(address=sys.argv[1], log_to_driver=False)
accessor = state.state._connect_and_get_accessor()
jobs = [
    str(gcs_pb2.JobTableData.FromString(raw))
    for raw in accessor.get_job_table(skip_submission_job_info_field=False, skip_is_running_tasks_field=True)
]
nodes = {n["NodeID"]: {"alive": n["Alive"], "resources": n["Resources"]} for n in ray.nodes()}
actors = list(state.actors().values())
print("inspect:", json.dumps({"jobs": jobs, "nodes": nodes, "actors": actors}, default=str), flush=True)
"""


@dataclass(frozen=True)
class Proc:
    """One process as ``/proc/<pid>/stat`` shows it; ``started`` guards against pid reuse."""

    pid: int
    ppid: int
    pgid: int
    started: int


def _process_table() -> dict[int, Proc]:
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command name may hold spaces and parentheses: the fields follow the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] in ("Z", "X"):
            continue  # a zombie has already died
        out[int(entry.name)] = Proc(int(entry.name), int(fields[1]), int(fields[2]), int(fields[19]))
    return out


def _sigkill(processes: list[Proc]) -> None:
    now = _process_table()
    for p in processes:
        if now.get(p.pid) == p:  # still the same process, not a reused pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)


class LocalRayCluster:
    """A head plus worker nodes started with ``ray start`` on this machine (module docstring).

    Args:
        env: Variables every node's processes get (e.g. ``PYTHONPATH``); the workers inherit them.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            **FAST_HEALTH_CHECKS,
            **(env or {}),
        }
        self.nodes: list[RayNode] = []
        self.port = 0
        # Unix socket paths are limited to ~107 bytes: pytest's tmp_path is too deep for Ray's.
        self.root = Path(tempfile.mkdtemp(prefix="wbr-", dir="/tmp"))

    @property
    def address(self) -> str:
        """The GCS address drivers join (``--address``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def head(self) -> RayNode:
        return self.nodes[0]

    def _start(self, name: str, args: list[str], resources: Mapping[str, float]) -> RayNode:
        temp = self.root / name
        temp.mkdir()
        cmd = [
            "ray",
            "start",
            "--block",
            "--temp-dir",
            str(temp),
            "--object-store-memory",
            str(100 * 1024 * 1024),
            "--disable-usage-stats",
            # Not the default 52365, which another cluster on this machine may hold.
            "--dashboard-agent-listen-port",
            str(free_port()),
            *args,
        ]
        if resources:
            cmd += ["--resources", json.dumps(dict(resources))]
        log = (self.root / f"{name}.out").open("wb")
        proc = subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        node = RayNode(name, proc, temp, dict(resources))
        self.nodes.append(node)
        return node

    def start_head(self, num_cpus: float = 1, resources: Mapping[str, float] | None = None) -> RayNode:
        """Start the head (no dashboard) and wait until it accepts drivers."""
        self.port = free_port()
        node = self._start(
            "head",
            ["--head", "--port", str(self.port), "--num-cpus", str(num_cpus), "--include-dashboard", "false"],
            dict(resources or {}),
        )
        self.wait_nodes(1)
        return node

    def add_node(self, num_cpus: float = 1, resources: Mapping[str, float] | None = None) -> RayNode:
        """Start a worker node joining the head and wait until the cluster counts exactly the nodes
        not killed (so a node killed just before is seen dead, not mistaken for the new one)."""
        node = self._start(
            f"node{len(self.nodes)}",
            ["--address", self.address, "--num-cpus", str(num_cpus)],
            dict(resources or {}),
        )
        self.wait_nodes(sum(1 for n in self.nodes if not n.killed))
        return node

    def alive_nodes(self) -> int:
        """Nodes the GCS counts as alive (asked from a short-lived subprocess, so this test process
        never joins the cluster itself)."""
        code = (
            "import ray,sys;ray.init(address=sys.argv[1],log_to_driver=False);"
            "print('alive-nodes:', sum(1 for n in ray.nodes() if n['Alive']), flush=True)"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, self.address],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        # Ray prints its own warnings to stdout too (e.g. lagging heartbeats), before or after ours.
        counts = [line.split()[-1] for line in done.stdout.splitlines() if line.startswith("alive-nodes: ")]
        return int(counts[-1]) if counts else 0

    def wait_nodes(self, count: int, timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait until exactly ``count`` nodes are alive (fails naming the node logs otherwise)."""
        deadline = time.monotonic() + timeout_s
        seen = -1
        while time.monotonic() < deadline:
            for node in self.nodes:
                if not node.killed and node.proc.poll() is not None:
                    raise RuntimeError(f"ray node {node.name} exited; see {self.root / node.name}.out")
            seen = self.alive_nodes()
            if seen == count:
                return
            time.sleep(1)
        raise TimeoutError(f"{seen} Ray nodes alive after {timeout_s:.0f} s, expected {count}")

    def inspect(self) -> dict[str, Any]:
        """What the GCS holds, read from a short-lived driver: ``actors`` (Ray's actor table:
        class, state, node, pid, restarts), ``jobs`` (every job's full record as text, its
        runtime environment included) and ``nodes`` (id -> alive, resources)."""
        done = subprocess.run(
            [sys.executable, "-c", _INSPECT, self.address],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"cannot inspect the cluster: {done.stderr[-2000:]}")
        (line,) = [line for line in done.stdout.splitlines() if line.startswith("inspect: ")][-1:]
        result: dict[str, Any] = json.loads(line.removeprefix("inspect: "))
        return result

    def kill(self, node: RayNode) -> None:
        """SIGKILL every process of ``node`` at once: the node dies as a machine would."""
        node.killed = True
        _sigkill(node.processes())
        node.proc.wait(timeout=30)

    def stop(self) -> None:
        """End every process this cluster started, at once (a graceful stop of a test cluster
        only costs time: ``ray start --block`` takes ~20 s to wind a node down)."""
        for node in reversed(self.nodes):
            _sigkill(node.processes())
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=30)
            node.killed = True

    def log_files(self) -> Iterator[Path]:
        """Every file under every node's Ray session directory (logs included)."""
        for node in self.nodes:
            for path in sorted(node.temp_dir.rglob("*")):
                if path.is_file() and not path.is_socket():
                    yield path

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
