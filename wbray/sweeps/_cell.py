"""Running one cell: mark it running, call :func:`wbray.evaluate`, record how it ended.

The same function runs a cell inside its Ray job (``python -m wbray.sweeps.cell``) and inside the
sweep command's own process (no ``--address``), so both record the same states.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from wbray.config import WbrayConfig, load_config
from wbray.errors import ConfigError, WbrayError
from wbray.storage import read_bytes
from wbray.sweeps._layout import SweepLayout
from wbray.sweeps._state import IN_FLIGHT, CellState, CellStatus
from wbray.sweeps._store import read_state, write_state

#: Live progress reaches the cell record at most this often (one small write per cell).
PROGRESS_EVERY_S = 5.0


class CellStopped(BaseException):
    """Raised in a cell's process when its job is stopped (SIGTERM from ``ray job stop``).

    A ``BaseException``, like ``KeyboardInterrupt``: nothing on the way may swallow it, and the run
    marks its manifest failed as it unwinds.
    """


class StateWriter:
    """Writes one attempt's record: running, live progress, then its end (once).

    Thread-safe: the progress callback runs on the pipeline's poller thread, the end on the main
    thread or in a signal handler (hence a re-entrant lock). Every write first checks that the
    record still names this attempt in flight, so a ``wbray sweep cancel`` (which writes
    "cancelled" before it stops the job) is never overwritten by the job's own last word.
    """

    def __init__(self, layout: SweepLayout, state: CellState) -> None:
        self.layout = layout
        self.state = state
        self.final = False
        self._lock = threading.RLock()
        self._last_progress = 0.0

    def _current(self) -> bool:
        now = read_state(self.layout, self.state.cell)
        return (
            now is not None
            and now.attempt == self.state.attempt
            and now.submission_id == self.state.submission_id
            and now.status in IN_FLIGHT
        )

    def write(self, *, check: bool = True, **changes: Any) -> None:
        with self._lock:
            if self.final:
                return
            if check and not self._current():
                self.final = True  # cancelled or taken over: this attempt says nothing more
                return
            self.state = self.state.updated(**changes)
            write_state(self.layout, self.state)

    def progress(self, counts: Mapping[str, Any], totals: Mapping[str, int]) -> None:
        """The pipeline's progress callback: rows done/total per stage, throttled."""
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_S:
            return
        self._last_progress = now
        progress = {
            stage: [int(counts.get(stage, {}).get("rows", 0)), int(totals.get(stage, 0))]
            for stage in ("generate", "score")
        }
        try:
            self.write(progress=progress)
        except Exception:  # a progress write that fails (a storage hiccup) must never stop the run
            return

    def finish(self, status: CellStatus, reason: str | None = None) -> None:
        with self._lock:
            if self.final:
                return
            self.final = True
            if not self._current():
                return
            self.state = self.state.updated(
                status=status, reason=reason[:2000] if reason else None, finished_at=time.time(), progress={}
            )
            write_state(self.layout, self.state)


def read_cell_config(layout: SweepLayout, cell: str) -> WbrayConfig:
    """The config the sweep wrote for ``cell``."""
    uri = layout.cell_config(cell)
    try:
        tree = yaml.safe_load(read_bytes(uri, layout.storage).decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{uri}: not valid YAML ({exc})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{uri}: the top level must be a mapping")
    try:
        return load_config(tree)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("<args>", uri, 1)) from None


def run_cell(
    layout: SweepLayout,
    cell: str,
    attempt: int,
    submission_id: str | None,
    *,
    say: Callable[[str], None] | None = None,
    on_writer: Callable[[StateWriter], None] | None = None,
) -> CellState:
    """Run one attempt of a cell and record it; the record must already name this attempt.

    Args:
        layout: The sweep prefix.
        cell: The cell's name.
        attempt: The attempt the record names (a job started for an older attempt refuses to run).
        submission_id: The attempt's Ray job, or None when run in the sweep command's process.
        say: Called with one-line notices (the run's own, and the cell's).
        on_writer: Called with the attempt's writer before the run starts (the job entry point
            uses it to record a SIGTERM at once).

    Returns:
        The record as written last.

    Raises:
        WbrayError: The record names another attempt, or the run failed (the record says why).
    """
    import wbray

    state = read_state(layout, cell)
    if state is None or state.attempt != attempt or state.submission_id != submission_id:
        have = "no record" if state is None else f"attempt {state.attempt} ({state.submission_id})"
        raise WbrayError(
            f"cell {cell}: this is attempt {attempt} ({submission_id}) but the record names {have}; "
            "a newer sweep command took the cell over, so this one does not run"
        )
    writer = StateWriter(layout, state)
    if on_writer is not None:
        on_writer(writer)
    writer.write(status="running", started_at=time.time(), reason=None)
    try:
        config = read_cell_config(layout, cell)
        wbray.evaluate(
            config, out=layout.cell_dir(cell), report=True, on_progress=writer.progress, on_event=say
        )
    except WbrayError as exc:
        writer.finish("failed", str(exc))
        raise
    except BaseException as exc:
        writer.finish("failed", _reason(exc))
        raise
    writer.finish("succeeded")
    return writer.state


def stop_reason(signum: int) -> str:
    """The recorded reason of a cell whose process got ``signum``."""
    return f"stopped ({signal.Signals(signum).name}: ray job stop or wbray sweep cancel)"


def _reason(exc: BaseException) -> str:
    """Why a run ended early, in words a user acts on."""
    # Once connected, Ray's own SIGTERM handler (installed by ray.init) turns a stop into SystemExit.
    if isinstance(exc, SystemExit) and exc.code in (signal.SIGTERM, signal.SIGINT):
        return stop_reason(int(exc.code))
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return f"{type(exc).__name__}: {exc}"
