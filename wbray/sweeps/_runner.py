"""Running a sweep: each cell as a Ray job (``--address``) or in this process, then one leaderboard.

With a jobs API address, every cell that has not succeeded is submitted through the Ray Job
Submission API, at most ``max_concurrent`` in flight; the command then follows the jobs until
they end. Without one, cells run one after another in this process on one Ray cluster (embedded,
or the one the base config names).

Re-running the same command is how a sweep resumes: succeeded cells are skipped, a cell whose job is
still running is followed (never submitted twice), and a cell that failed, was stopped or whose job
vanished is submitted again as its next attempt, which resumes from the rows its run committed.
Killing the command itself stops nothing on the cluster: its jobs keep running and the next
command finds them.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wbray.errors import WbrayError
from wbray.storage import RunManifest, StorageOptions, check_destination, read_manifest
from wbray.sweeps._cell import run_cell
from wbray.sweeps._config import Cell, SweepConfig, expand, load_sweep
from wbray.sweeps._jobs import JobRequest, Jobs, JobView
from wbray.sweeps._layout import SweepLayout
from wbray.sweeps._state import (
    IN_FLIGHT,
    CellState,
    CellStatus,
    decide,
    job_phase,
    needs_job,
    start_attempt,
    submission_id,
    sweep_key,
)
from wbray.sweeps._store import (
    Grid,
    SweepRecord,
    new_record,
    read_grid,
    read_record,
    read_state,
    storage_dict,
    write_record,
    write_state,
    write_sweep,
)

#: Seconds between looks at the jobs in flight (one small HTTP call per job).
POLL_S = 2.0
#: Seconds between the summary lines printed while jobs run.
SUMMARY_EVERY_S = 30.0
#: How long the jobs API may stay unreachable while jobs are followed before the command gives up
#: (the jobs keep running; the next command finds them).
UNREACHABLE_LIMIT_S = 300.0

Say = Callable[[str], None]


@dataclass
class SweepOutcome:
    """What a sweep command did.

    Attributes:
        root: The sweep prefix.
        statuses: Cell -> status when the command ended.
        failed: Cell -> why, for cells that did not succeed.
        submitted: Submission ids of the jobs this command submitted (cells and report).
        reports: Report URIs written at the end.
        cancelled: Whether ``wbray sweep cancel`` ended it.
    """

    root: str
    statuses: dict[str, CellStatus] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    submitted: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    cancelled: bool = False


def run_sweep(
    source: str | Path | SweepConfig,
    *,
    out: str | None = None,
    address: str | None = None,
    jobs: Jobs | None = None,
    say: Say | None = None,
    poll_s: float = POLL_S,
    report: bool = True,
) -> SweepOutcome:
    """Run (or resume) a sweep and write its leaderboard.

    Args:
        source: The sweep file, or a loaded sweep.
        out: The sweep prefix; default: the sweep's ``out``, then ``sweeps/<name>``.
        address: A Ray jobs API (``http://head:8265``): cells run as jobs there. None: in this process.
        jobs: The jobs client (default: the Ray Job Submission API at ``address``).
        say: Called with one line per event.
        poll_s: Seconds between looks at the jobs in flight.
        report: Write the leaderboard at the end.

    Raises:
        ConfigError: The sweep or a cell's config is invalid (nothing is submitted).
        WbrayError: Storage or the jobs API cannot be reached, or a cell is held by a job this
            command cannot follow.
    """
    tell = say or (lambda _line: None)
    if isinstance(source, SweepConfig):
        sweep, where = source, "<sweep>"
        cells = expand(sweep, where)
    else:
        sweep, where = load_sweep(source), str(source)
        cells = expand(sweep, where)
    storage = StorageOptions.of(sweep.base.storage).with_env_defaults()
    layout = SweepLayout.at(out or sweep.default_out(), storage)
    check_destination(layout.root, layout.storage)
    key = sweep_key(sweep.name, layout.root)
    if address is not None and jobs is None:
        from wbray.sweeps._jobs import RayJobs

        jobs = RayJobs(address)
    hashes = write_sweep(layout, sweep, cells, key)
    record = new_record(sweep, key, layout, jobs.address if jobs is not None else None)
    write_record(layout, record)
    mode = f"as Ray jobs at {jobs.address}" if jobs is not None else "in this process"
    tell(f"sweep {sweep.name}: {len(cells)} cell(s) under {layout.root}, {mode}")
    if jobs is not None and "://" not in layout.root:
        tell(f"note: {layout.root} is a local path: every node of the cluster must see it (or use s3://)")
    outcome = SweepOutcome(root=layout.root)
    if jobs is not None:
        _Follower(sweep, cells, hashes, layout, key, jobs, record, tell, poll_s, outcome).run()
    else:
        _run_local(sweep, cells, hashes, layout, record, tell, outcome)
    for cell in cells:
        state = read_state(layout, cell.name)
        outcome.statuses[cell.name] = state.status if state is not None else "pending"
        if state is not None and state.status == "failed":
            outcome.failed[cell.name] = state.reason or "?"
    succeeded = [c for c, s in outcome.statuses.items() if s == "succeeded"]
    if report and succeeded and not outcome.cancelled:
        if jobs is not None:
            _report_job(sweep, layout, key, jobs, tell, poll_s, outcome)
        else:
            from wbray.sweeps._report import write_sweep_report

            for group in write_sweep_report(layout, say=tell):
                outcome.reports += group.reports
    return outcome


def cell_request(sweep: SweepConfig, layout: SweepLayout, key: str, cell: Cell, attempt: int) -> JobRequest:
    """The job of one attempt of one cell."""
    sid = submission_id(key, cell.name, attempt)
    args = ["python", "-m", "wbray.sweeps.cell", layout.root, cell.name, "--attempt", str(attempt)]
    args += ["--submission-id", sid, *_storage_args(layout)]
    return JobRequest(
        submission_id=sid,
        entrypoint=shlex.join(args),
        runtime_env=_runtime_env(sweep),
        num_cpus=sweep.job.num_cpus,
        num_gpus=sweep.job.num_gpus,
        memory_mb=sweep.job.memory_mb,
        metadata={
            "wbray_sweep": sweep.name,
            "wbray_out": layout.root,
            "wbray_cell": cell.name,
            "wbray_attempt": str(attempt),
        },
    )


def _storage_args(layout: SweepLayout) -> list[str]:
    # The store's address (never credentials) travels with the job: the job's node never sees the
    # shell that started the sweep.
    options = storage_dict(layout.storage)
    return ["--storage", json.dumps(options, sort_keys=True)] if options else []


def _runtime_env(sweep: SweepConfig) -> dict[str, Any]:
    env = dict(sweep.job.runtime_env)
    if sweep.job.ship_wbray:
        import wbray

        # The package directory as a py_module: jobs import this very wbray, whatever the image holds.
        env["py_modules"] = [*env.get("py_modules", []), str(Path(wbray.__file__).parent)]
    return env


class _Follower:
    """Submits cells as jobs (at most ``max_concurrent`` in flight) and follows them to the end."""

    def __init__(
        self,
        sweep: SweepConfig,
        cells: Sequence[Cell],
        hashes: Mapping[str, str],
        layout: SweepLayout,
        key: str,
        jobs: Jobs,
        record: SweepRecord,
        say: Say,
        poll_s: float,
        outcome: SweepOutcome,
    ) -> None:
        self.sweep, self.cells, self.hashes, self.layout = sweep, list(cells), hashes, layout
        self.key, self.jobs, self.record, self.say, self.poll_s = key, jobs, record, say, poll_s
        self.outcome = outcome
        self.by_name = {c.name: c for c in cells}
        self.queue: list[tuple[Cell, int]] = []
        self.in_flight: dict[str, str] = {}
        self.retry: set[str] = set()  # failed cells whose last job was still ending at the start
        self.announced: dict[str, str] = {}

    def run(self) -> None:
        self._plan()
        last_summary = time.monotonic()
        unreachable_since: float | None = None
        while self.queue or self.in_flight:
            if self._cancelled():
                self.outcome.cancelled = True
                if self.queue:
                    self.say(f"cancelled: {len(self.queue)} cell(s) not submitted")
                self.queue.clear()
            try:
                self._submit_ready()
                if not self.in_flight:
                    break
                time.sleep(self.poll_s)
                self._poll()
                unreachable_since = None
            except _Unreachable as exc:
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > UNREACHABLE_LIMIT_S:
                    raise WbrayError(
                        f"{exc}; gave up after {UNREACHABLE_LIMIT_S:.0f} s (the jobs keep running: re-run "
                        "the same command to follow them)"
                    ) from None
                self.say(f"{exc}; retrying")
                time.sleep(self.poll_s)
            if time.monotonic() - last_summary >= SUMMARY_EVERY_S and self.in_flight:
                last_summary = time.monotonic()
                self.say(self._summary())

    def _view(self, sid: str) -> JobView | None:
        try:
            return self.jobs.view(sid)
        except WbrayError as exc:
            raise _Unreachable(str(exc)) from None

    def _plan(self) -> None:
        """Decide for every cell from its record and its job (all before submitting anything)."""
        blocked = []
        skipped = 0
        for cell in self.cells:
            state = read_state(self.layout, cell.name)
            view, phase = None, None
            if needs_job(state, resubmit=True):
                assert state is not None and state.submission_id is not None
                view = self.jobs.view(state.submission_id)
                phase = job_phase(view.status if view else None)
                # Read again: a job that ended has written its last word by now.
                state = read_state(self.layout, cell.name)
            d = decide(
                state,
                phase,
                self.hashes[cell.name],
                jobs_mode=True,
                resubmit=True,
                job_message=view.message if view else None,
            )
            if d.state is not None:
                write_state(self.layout, d.state)
            if d.action == "skip":
                skipped += 1
            elif d.action == "wait":
                assert state is not None and state.submission_id is not None
                self.in_flight[cell.name] = state.submission_id
                if state.status == "failed":
                    self.retry.add(cell.name)
                    self.say(f"{cell.name}: waiting for job {state.submission_id} to end, then resubmitting")
                else:
                    self.say(f"{cell.name}: job {state.submission_id} is still {state.status}; following it")
            elif d.action == "submit":
                self.queue.append((cell, d.attempt))
                if d.note:
                    self.say(f"{cell.name}: resubmitting ({d.note})")
            else:
                blocked.append(f"{cell.name}: {d.note}")
        if skipped:
            self.say(f"{skipped} cell(s) already succeeded")
        if blocked:
            raise WbrayError(f"cannot follow {len(blocked)} cell(s): {'; '.join(blocked)}")

    def _submit_ready(self) -> None:
        while self.queue and len(self.in_flight) < self.sweep.max_concurrent:
            cell, attempt = self.queue.pop(0)
            request = cell_request(self.sweep, self.layout, self.key, cell, attempt)
            previous = read_state(self.layout, cell.name)
            # Recorded before submitting: a command killed right after the submission still
            # knows the job's id, and the next one follows that job instead of starting another.
            state = start_attempt(
                previous,
                cell.name,
                attempt,
                submission=request.submission_id,
                address=self.jobs.address,
                config_hash=self.hashes[cell.name],
            )
            write_state(self.layout, state)
            try:
                created = self.jobs.submit(request)
            except WbrayError as exc:
                raise WbrayError(
                    f"{cell.name}: submitting job {request.submission_id} failed: {exc}"
                ) from None
            self.outcome.submitted.append(request.submission_id)
            self.in_flight[cell.name] = request.submission_id
            again = "" if created else " (already on the cluster: following it)"
            self.say(f"{cell.name}: submitted job {request.submission_id}{again}")

    def _poll(self) -> None:
        for name, sid in list(self.in_flight.items()):
            view = self._view(sid)
            state = read_state(self.layout, name)
            if state is not None and state.status != self.announced.get(name):
                self.announced[name] = state.status
                if state.status == "running":
                    self.say(f"{name}: running (job {sid})")
            phase = job_phase(view.status if view else None)
            if phase in ("pending", "running"):
                continue
            d = decide(
                state,
                phase,
                self.hashes[name],
                jobs_mode=True,
                resubmit=name in self.retry,
                job_message=view.message if view else None,
            )
            if d.state is not None:
                write_state(self.layout, d.state)
                state = d.state
            del self.in_flight[name]
            self.retry.discard(name)
            if d.action == "submit":
                self.queue.insert(0, (self.by_name[name], d.attempt))
                self.say(f"{name}: resubmitting ({d.note})")
                continue
            if state is not None and state.status == "succeeded":
                self.say(f"{name}: succeeded")
            elif state is not None:
                self.say(f"{name}: {state.status}: {state.reason or '?'}")

    def _cancelled(self) -> bool:
        record = read_record(self.layout)
        return bool(
            record is not None
            and record.cancelled_at is not None
            and record.cancelled_at >= self.record.started_at
        )

    def _summary(self) -> str:
        parts = []
        for name in self.in_flight:
            state = read_state(self.layout, name)
            rows = ""
            if state is not None and state.progress:
                rows = " " + ", ".join(f"{k} {d}/{t}" for k, (d, t) in state.progress.items())
            parts.append(f"{name}{rows}")
        return (
            f"{len(self.in_flight)} running ({'; '.join(parts)}), {len(self.queue)} waiting to be submitted"
        )


class _Unreachable(WbrayError):
    """The jobs API did not answer while jobs were being followed (retried for a while)."""


def _run_local(
    sweep: SweepConfig,
    cells: Sequence[Cell],
    hashes: Mapping[str, str],
    layout: SweepLayout,
    record: SweepRecord,
    say: Say,
    outcome: SweepOutcome,
) -> None:
    """Run the cells that need it one after another in this process, on one Ray cluster."""
    todo: list[tuple[Cell, int]] = []
    blocked = []
    for cell in cells:
        state = read_state(layout, cell.name)
        d = decide(state, None, hashes[cell.name], jobs_mode=False, resubmit=True)
        if d.state is not None:
            write_state(layout, d.state)
        if d.action == "submit":
            todo.append((cell, d.attempt))
        elif d.action == "blocked":
            blocked.append(f"{cell.name}: {d.note}")
    if blocked:
        raise WbrayError(f"cannot run {len(blocked)} cell(s) here: {'; '.join(blocked)}")
    if len(todo) < len(cells):
        say(f"{len(cells) - len(todo)} cell(s) already succeeded")
    if not todo:
        return
    from wbray.pipelines import ray_session

    # One cluster for every cell: each wbray.evaluate call keeps the connection it finds.
    with ray_session(todo[0][0].config.ray, say=say):
        for cell, attempt in todo:
            now = read_record(layout)
            if now is not None and now.cancelled_at is not None and now.cancelled_at >= record.started_at:
                outcome.cancelled = True
                say("cancelled: the remaining cells are not run")
                return
            write_state(
                layout,
                start_attempt(
                    read_state(layout, cell.name),
                    cell.name,
                    attempt,
                    submission=None,
                    address=None,
                    config_hash=hashes[cell.name],
                ),
            )
            say(f"{cell.name}: running (attempt {attempt})")
            try:
                run_cell(layout, cell.name, attempt, None, say=_prefixed(say, cell.name))
            except WbrayError as exc:
                say(f"{cell.name}: failed: {exc}")
                continue
            say(f"{cell.name}: succeeded")


def _prefixed(say: Say, cell: str) -> Say:
    def tell(line: str) -> None:
        say(f"[{cell}] {line}")

    return tell


def _report_job(
    sweep: SweepConfig,
    layout: SweepLayout,
    key: str,
    jobs: Jobs,
    say: Say,
    poll_s: float,
    outcome: SweepOutcome,
) -> None:
    """Aggregate on the cluster, where the benchmark data is, as one more job; wait for it."""
    # A new job each time (the leaderboard is rewritten whenever the sweep ends).
    sid = f"wbray-{key}-report-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    args = ["python", "-m", "wbray.sweeps.report", layout.root, *_storage_args(layout)]
    request = JobRequest(
        submission_id=sid,
        entrypoint=shlex.join(args),
        runtime_env=_runtime_env(sweep),
        num_cpus=sweep.job.num_cpus,
        num_gpus=0.0,
        memory_mb=sweep.job.memory_mb,
        metadata={"wbray_sweep": sweep.name, "wbray_out": layout.root, "wbray_cell": "report"},
    )
    jobs.submit(request)
    outcome.submitted.append(sid)
    say(f"leaderboard: submitted job {sid}")
    while True:
        view = jobs.view(sid)
        phase = job_phase(view.status if view else None)
        if phase not in ("pending", "running"):
            break
        time.sleep(poll_s)
    if phase != "succeeded":
        why = view.message if view is not None and view.message else phase
        raise WbrayError(
            f"the leaderboard job {sid} {phase}: {why} (its log: ray job logs {sid} --address "
            f"{jobs.address}; or run `wbray sweep report {layout.root}` where the benchmark data is)"
        )
    outcome.reports.append(layout.report(""))


# -- cancel and status ------------------------------------------------------------------------------


def cancel_sweep(
    uri: str,
    *,
    address: str | None = None,
    jobs: Jobs | None = None,
    storage: StorageOptions | None = None,
    say: Say | None = None,
) -> list[str]:
    """Stop a sweep: no more submissions from a command following it, and its jobs stopped.

    Each in-flight cell is recorded ``failed`` ("cancelled") *before* its job is stopped, so the
    job's own last word does not overwrite it. Re-running the sweep resubmits these cells.

    Returns:
        The submission ids asked to stop.
    """
    tell = say or (lambda _line: None)
    layout = SweepLayout.at(uri, storage)
    grid = read_grid(layout)
    record = read_record(layout)
    if record is not None:
        write_record(layout, record.model_copy(update={"cancelled_at": time.time()}))
    stopped = []
    for entry in grid.cells:
        state = read_state(layout, entry.cell)
        if state is None or state.status not in IN_FLIGHT or state.submission_id is None:
            continue
        if jobs is None:
            target = address or state.address or (record.address if record else None)
            if target is None:
                raise WbrayError(f"{uri}: no jobs API address recorded; give it with --address")
            from wbray.sweeps._jobs import RayJobs

            jobs = RayJobs(target)
        write_state(
            layout, state.updated(status="failed", reason="cancelled (wbray sweep cancel)", progress={})
        )
        jobs.stop(state.submission_id)
        stopped.append(state.submission_id)
        tell(f"{entry.cell}: stopped job {state.submission_id}")
    if not stopped:
        tell("no cell has a job in flight")
    return stopped


@dataclass(frozen=True)
class CellRow:
    """One line of ``wbray sweep status``.

    Attributes:
        rows: Stage -> (rows stored, rows needed): live while the cell runs, from its run's
            manifest (last invocation) otherwise.
    """

    cell: str
    candidate: str
    judge: str
    status: CellStatus
    attempt: int
    job: str | None
    rows: dict[str, tuple[int, int]]
    updated_at: float | None
    reason: str | None


def sweep_status(
    uri: str, storage: StorageOptions | None = None
) -> tuple[Grid, SweepRecord | None, list[CellRow]]:
    """The grid, the last command's record, and one row per cell (read from storage only)."""
    layout = SweepLayout.at(uri, storage)
    grid = read_grid(layout)
    record = read_record(layout)
    rows = []
    for entry in grid.cells:
        state = read_state(layout, entry.cell)
        manifest = read_manifest(layout.run(entry.cell))
        rows.append(
            CellRow(
                cell=entry.cell,
                candidate=entry.candidate,
                judge=entry.judge,
                status=state.status if state is not None else "pending",
                attempt=state.attempt if state is not None else 0,
                job=state.submission_id if state is not None else None,
                rows=cell_rows(state, manifest),
                updated_at=state.updated_at if state is not None else None,
                reason=state.reason if state is not None and state.status == "failed" else None,
            )
        )
    return grid, record, rows


def cell_rows(state: CellState | None, manifest: RunManifest | None) -> dict[str, tuple[int, int]]:
    """Rows stored / needed per stage: live progress while running, else the manifest's last call."""
    if state is not None and state.status == "running" and state.progress:
        return {k: (int(v[0]), int(v[1])) for k, v in state.progress.items() if len(v) == 2}
    out: dict[str, tuple[int, int]] = {}
    last = manifest.last if manifest is not None else None
    if last is None:
        return out
    for stage in last.stages:
        done, need = out.get(stage.stage, (0, 0))
        out[stage.stage] = (done + stage.skipped + stage.computed, need + stage.skipped + stage.planned)
    return out
