"""Shared pieces of the fault tests: a deterministic scripted endpoint, run configs, the CLI as a
subprocess, and the checks every fault test makes (one-line errors, equal results, no secrets).

The endpoint answers like a greedy model would: the same prompt always gets the same answer and
the same verdict, so a run interrupted anywhere and resumed must end equal to an uninterrupted
one, row for row. It can be slowed (so a fault lands mid-stage) and gated (a request waits until
the test lets it through), which places a fault at a known point instead of a lucky moment.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.helpers.scripted_openai import Action, reply, sleep

REPO = Path(__file__).resolve().parents[2]
#: The API key a canary test gives the openai engines (through ``api_key_env``).
API_KEY_ENV = "WBRAY_TEST_CANARY_API_KEY"
API_KEY_CANARY = "sk-wbray-canary-apikey-9f8e7d6c5b4a"


def verdict_for(prompt: str) -> str:
    """The judge's reply to a prompt: a score 1..10 derived from the prompt's text."""
    score = 1 + int(hashlib.sha256(prompt.encode("utf-8")).hexdigest(), 16) % 10
    return f'{{"score": {score}, "reason": "scripted {score}"}}'


def answer_for(query: str) -> str:
    """The candidate's answer to a query."""
    return f"Answer to: {query[:40]}"


def is_judge(body: Mapping[str, Any]) -> bool:
    """Judge requests carry the judge's system prompt; candidate requests do not."""
    return bool(body["messages"][0]["role"] == "system")


class Endpoint:
    """A deterministic candidate + judge endpoint (module docstring).

    Attributes:
        judge_delay_s: Seconds each judge reply waits (0 = immediate).
        answer_delay_s: Seconds each candidate reply waits.
        hold: Requests for which ``hold(body)`` is true wait until :attr:`gate` is set.
        hold_judge_after: When set, every judge request after the first N waits at the gate too:
            a stage is provably mid-way (N verdicts given, the rest held) whatever the order in
            which Ray hands out the batches.
        gate: Opened by the test to let held requests through.
        on_request: Called with each request body before it is answered (fault injection).
    """

    def __init__(self) -> None:
        self.judge_delay_s = 0.0
        self.answer_delay_s = 0.0
        self.hold: Callable[[Mapping[str, Any]], bool] = lambda body: False
        self.hold_judge_after: int | None = None
        self.judge_requests = 0
        self.gate = threading.Event()
        self.on_request: Callable[[Mapping[str, Any]], None] | None = None
        self.held = 0
        self._lock = threading.Lock()

    def __call__(self, body: Any, attempt: int) -> Action:
        if self.on_request is not None:
            self.on_request(body)
        late = False
        if is_judge(body):
            with self._lock:
                self.judge_requests += 1
                late = self.hold_judge_after is not None and self.judge_requests > self.hold_judge_after
        if late or self.hold(body):
            with self._lock:
                self.held += 1
            # Bounded: a test that forgets to open the gate fails instead of hanging forever.
            self.gate.wait(timeout=600)
        msgs = body["messages"]
        if is_judge(body):
            action: Action = reply(verdict_for(msgs[-1]["content"]))
            delay = self.judge_delay_s
        else:
            action = reply(answer_for(msgs[-1]["content"]))
            delay = self.answer_delay_s
        return sleep(delay, then=action) if delay else action

    def reset(self) -> None:
        """Back to immediate, unheld answers (between tests sharing one endpoint)."""
        self.judge_delay_s = self.answer_delay_s = 0.0
        self.hold = lambda body: False
        self.hold_judge_after = None
        self.on_request = None
        self.judge_requests = self.held = 0
        self.gate.clear()


def run_config(
    path: Path,
    base_url: str,
    *,
    indices: Iterable[int],
    gen_resources: str = "{actors: 1, num_cpus: 0.25, batch_size: 1}",
    judge_resources: str = "{actors: 1, num_cpus: 0.25, batch_size: 5}",
    extra: str = "",
    api_key_env: str | None = None,
) -> Path:
    """A run config with one candidate and one judge on ``base_url`` (both openai engines).

    Generation batches of one answer make each answer its own part and its own scoring block,
    so a fault can land between parts.
    """
    key = f", api_key_env: {api_key_env}" if api_key_env else ""
    engine = (
        f"{{backend: openai, base_url: '{base_url}', model: m, max_retries: 2, "
        f"initial_backoff_s: 0.05, timeout_s: 60{key}}}"
    )
    path.write_text(
        f"""
data: {{data_dir: example, indices: {sorted(indices)}}}
candidates:
  - name: api-model
    engine: {engine}
generation:
  resources: {gen_resources}
judge:
  name: api-judge
  engine: {engine}
  resources: {judge_resources}
{extra}
"""
    )
    return path


def wbray_cli(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[str]:
    """``wbray ARGS`` as a user runs it: its own process and session (so it can be killed with
    everything it started), output captured."""
    full = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "wbray.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full,
        cwd=cwd,
        start_new_session=True,
    )


def kill_session(proc: subprocess.Popen[str], ray_tmpdir: Path | None = None) -> None:
    """SIGKILL a CLI process and its whole session (a crash: no cleanup, no manifest update).

    Ray workers lead process groups of their own and outlive the session by a moment; with
    ``ray_tmpdir`` (the ``RAY_TMPDIR`` the process ran with) every process whose command line
    names it goes too, so no worker of the dead driver's cluster keeps a core busy.
    """
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    if ray_tmpdir is None:
        return
    for pid in processes_of(ray_tmpdir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def processes_of(ray_tmpdir: Path) -> list[int]:
    """Processes started with ``RAY_TMPDIR=ray_tmpdir`` (inherited by every process of that
    cluster) or naming it on their command line."""
    needles = (str(ray_tmpdir).encode(), f"RAY_TMPDIR={ray_tmpdir}".encode())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needles[0] in cmdline or needles[1] in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


@contextlib.contextmanager
def ray_tmpdir() -> Iterator[Path]:
    """A short, fresh ``RAY_TMPDIR`` for drivers' embedded clusters: their logs can be read whole
    afterwards (Unix socket paths under pytest's deep tmp_path would be too long). On exit, every
    process still running with it is ended and the directory removed."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="wbr-", dir="/tmp"))
    try:
        yield path
    finally:
        for pid in processes_of(path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(path, ignore_errors=True)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 300.0, proc: Any = None) -> None:
    """Poll ``condition`` until true; fail naming ``what`` (and the process output if it ended)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended before {what}:\n{out[-3000:]}\n{err[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def assert_one_line_error(stderr: str, *needles: str) -> str:
    """The CLI's error is exactly one ``wbray: error:`` line with no traceback; returns it."""
    assert "Traceback" not in stderr, stderr[:6000]
    errors = [line for line in stderr.splitlines() if line.startswith("wbray: error:")]
    assert len(errors) == 1, stderr[-4000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def find_secrets(paths: Iterable[Path], secrets: Iterable[str]) -> list[str]:
    """``path: secret`` for every file under ``paths`` (recursive) that contains a secret."""
    needles = [s.encode("utf-8") for s in secrets]
    hits = []
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            try:
                data = f.read_bytes()
            except OSError:
                continue  # a socket or a file removed meanwhile
            hits += [f"{f}: {n.decode()}" for n in needles if n in data]
    return hits


def _tcp_inodes(local_port: int, remote_port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            ports = (int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16))
            if ports == (local_port, remote_port):
                inodes.add(fields[9])
    return inodes


def pid_of_client(client_port: int, server_port: int) -> int:
    """The process on this machine that holds the client end of a TCP connection (read from
    ``/proc``): which Ray worker sent the request a scripted server is handling."""
    wanted = {f"socket:[{inode}]" for inode in _tcp_inodes(client_port, server_port)}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    return int(proc.name)
            except OSError:
                continue
    raise LookupError(f"no process holds 127.0.0.1:{client_port} -> :{server_port}")
