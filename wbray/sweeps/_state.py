"""Cell state: what each cell of a sweep is doing, and what to do about it (pure decisions).

Each cell has one small JSON record next to its results (``cells/<cell>/cell.json``). Two writers
share it, one at a time: the sweep command writes ``submitted`` *before* it submits a job (so a
sweep killed mid-submission knows the job id it may have created), and the cell's job writes
``running`` when it starts and ``succeeded`` or ``failed`` (with the reason) when it ends. A job that
dies without a word (SIGKILL, a lost node) is recorded by the sweep command from the job's status.

:func:`decide` turns a record and the job's status into an action; it is a plain function so every
case is tested without Ray. The job status is always read *before* the record, so a job that ended
has written its last word by the time the record is read.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wbray.config import content_hash
from wbray.errors import WbrayError

CellStatus = Literal["pending", "submitted", "running", "succeeded", "failed"]
#: A Ray job's status as wbray sees it; "missing" when the cluster does not know the job.
JobPhase = Literal["missing", "pending", "running", "succeeded", "failed", "stopped"]
#: Statuses with work under way (a job submitted or a process running the cell).
IN_FLIGHT: frozenset[str] = frozenset({"submitted", "running"})


class _Record(BaseModel):
    # Kept lenient like the run manifest: a record outlives the wbray version that wrote it.
    model_config = ConfigDict(extra="allow")


class AttemptRecord(_Record):
    """How one earlier attempt of a cell ended."""

    attempt: int
    submission_id: str | None = None
    status: CellStatus
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


class CellState(_Record):
    """``cells/<cell>/cell.json``: the cell's current status and its attempts."""

    cell: str
    status: CellStatus = "pending"
    attempt: int = Field(0, description="The current (or last) attempt; 0 = never started.")
    submission_id: str | None = Field(None, description="The Ray job of the current attempt.")
    address: str | None = Field(None, description="The jobs API the job was submitted to.")
    config_hash: str = Field("", description="Hash of the cell config the attempt runs.")
    reason: str | None = Field(None, description="Why the attempt failed.")
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = 0.0
    progress: dict[str, list[int]] = Field(
        default_factory=dict, description="Live rows [done, total] per stage while the attempt runs."
    )
    history: list[AttemptRecord] = Field(default_factory=list, description="Earlier attempts.")

    def to_json(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False).encode("utf-8")

    @classmethod
    def parse(cls, data: bytes, source: str) -> CellState:
        try:
            return cls.model_validate(json.loads(data.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError, ValidationError, RecursionError) as exc:
            what = str(exc).splitlines()[0]
            raise WbrayError(
                f"{source}: damaged cell record ({what}); delete it to start the cell over (its "
                "committed rows are kept)"
            ) from None

    def updated(self, **changes: Any) -> CellState:
        return self.model_copy(update={**changes, "updated_at": time.time()})


def submission_id(sweep_key: str, cell: str, attempt: int) -> str:
    """The Ray job submission id of one attempt of one cell: the same inputs give the same id, so a
    sweep re-run never submits an attempt twice (the jobs API refuses a repeated id)."""
    return f"wbray-{sweep_key}-{cell}-{attempt}"


def sweep_key(name: str, out: str) -> str:
    """A short id of the sweep (its name and prefix): job ids of two sweeps never collide."""
    return content_hash({"name": name, "out": out}, 8)


@dataclass(frozen=True)
class Decision:
    """What to do with a cell.

    Attributes:
        action: ``skip`` (nothing to do), ``wait`` (its job is under way), ``submit`` (start
            ``attempt``), or ``blocked`` (cannot be followed from here; ``note`` says why).
        state: The record to write first, or None when it is unchanged.
        attempt: The attempt to start (for ``submit``).
        note: One line for the user.
    """

    action: Literal["skip", "wait", "submit", "blocked"]
    state: CellState | None
    attempt: int
    note: str = ""


def needs_job(state: CellState | None, *, resubmit: bool = False) -> bool:
    """Whether deciding about this cell needs its job's status: a job in flight, or (before a
    resubmission) the failed attempt's job, which must have ended before the next attempt starts
    (two attempts writing at once could store a row twice)."""
    if state is None or state.submission_id is None:
        return False
    return state.status in IN_FLIGHT or (resubmit and state.status == "failed")


def decide(
    state: CellState | None,
    job: JobPhase | None,
    config_hash: str,
    *,
    jobs_mode: bool,
    resubmit: bool = True,
    job_message: str | None = None,
) -> Decision:
    """What to do with one cell, from its record and its job's status (pure).

    Args:
        state: The cell's record (None: never touched).
        job: The status of the record's job (``needs_job``), else None.
        config_hash: The hash of the cell's config now.
        jobs_mode: Whether this sweep submits jobs (else it runs cells in this process).
        resubmit: Whether a failed cell is started again (the start of a sweep command) or only
            recorded (a job ending while the command watches).
        job_message: The jobs API's message for a job that ended (the reason when the cell
            wrote none).
    """
    if state is None or state.status == "pending":
        return Decision("submit", None, (state.attempt if state else 0) + 1)
    nxt = state.attempt + 1
    if state.status == "succeeded":
        if state.config_hash and state.config_hash != config_hash:
            return Decision("submit", None, nxt, "its config changed since it succeeded")
        return Decision("skip", None, state.attempt)
    if state.status == "failed":
        if not resubmit:
            return Decision("skip", None, state.attempt)
        if job in ("pending", "running"):
            # Stopped or cancelled, but its driver is still shutting down.
            return Decision("wait", None, state.attempt, "its last job is still ending")
        return Decision("submit", None, nxt, f"attempt {state.attempt} failed: {state.reason or '?'}")
    # submitted or running
    if state.submission_id is None:
        # Run in a sweep command's own process; no job outlives that process, so it died.
        failed = _failed(state, "the sweep command running it in-process was interrupted")
        return _after_failure(failed, resubmit)
    if not jobs_mode:
        return Decision(
            "blocked",
            None,
            state.attempt,
            f"its job {state.submission_id} was submitted to {state.address}; follow it with "
            f"--address {state.address}, or stop it with `wbray sweep cancel`",
        )
    if job in ("pending", "running"):
        return Decision("wait", None, state.attempt)
    if job == "missing":
        if state.status == "submitted":
            # Written before submitting: the submission never reached the cluster. The same id
            # is safe to use, since nothing runs under it.
            return Decision("submit", None, state.attempt, "its submission never reached the cluster")
        failed = _failed(state, f"job {state.submission_id} is unknown to the cluster (restarted?)")
        return _after_failure(failed, resubmit)
    if job == "succeeded":
        failed = _failed(state, f"job {state.submission_id} ended without recording the cell's result")
    else:
        why = job_message or f"job {job}"
        failed = _failed(state, f"job {state.submission_id} {job}: {why}")
    return _after_failure(failed, resubmit)


def _after_failure(failed: CellState, resubmit: bool) -> Decision:
    """Record the failure; start the next attempt only when resubmitting."""
    if resubmit:
        return Decision("submit", failed, failed.attempt + 1, failed.reason or "")
    return Decision("skip", failed, failed.attempt, failed.reason or "")


def _failed(state: CellState, reason: str) -> CellState:
    return state.updated(status="failed", reason=reason[:2000], finished_at=time.time(), progress={})


def start_attempt(
    state: CellState | None,
    cell: str,
    attempt: int,
    *,
    submission: str | None,
    address: str | None,
    config_hash: str,
) -> CellState:
    """The record of a new attempt (``submitted``), the previous attempt moved into the history."""
    now = time.time()
    history = list(state.history) if state else []
    if state is not None and state.attempt and state.attempt != attempt:
        history.append(
            AttemptRecord(
                attempt=state.attempt,
                submission_id=state.submission_id,
                status=state.status,
                reason=state.reason,
                started_at=state.started_at,
                finished_at=state.finished_at,
            )
        )
    return CellState(
        cell=cell,
        status="submitted",
        attempt=attempt,
        submission_id=submission,
        address=address,
        config_hash=config_hash,
        submitted_at=now,
        updated_at=now,
        history=history,
    )


def job_phase(status: str | None) -> JobPhase:
    """A Ray ``JobStatus`` value (``PENDING``, ``RUNNING``, ...) as a :data:`JobPhase`."""
    if status is None:
        return "missing"
    phases: dict[str, JobPhase] = {
        "PENDING": "pending",
        "RUNNING": "running",
        "SUCCEEDED": "succeeded",
        "FAILED": "failed",
        "STOPPED": "stopped",
    }
    # A status newer than this wbray: assume the job is still under way.
    return phases.get(status.upper(), "running")
