"""A sweep cell as a Ray job: ``python -m wbray.sweeps.cell SWEEP_URI CELL --attempt N``.

``wbray sweep --address`` submits this entry point for every cell. It marks the cell ``running``,
calls :func:`wbray.evaluate` on the config the sweep stored for it (inside a job ``RAY_ADDRESS``
names the cluster, so the run joins it), and records ``succeeded`` or ``failed`` with the reason.
A stop (``ray job stop``, ``wbray sweep cancel``) is recorded at once, before the run unwinds: Ray
kills the job 3 s after its SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType
from typing import Any

from wbray.errors import WbrayError
from wbray.sweeps._cell import CellStopped, StateWriter, run_cell, stop_reason
from wbray.sweeps._layout import SweepLayout
from wbray.sweeps._store import storage_from


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run one cell of a wbray sweep (the entry point of its Ray job).")
    p.add_argument("sweep", help="The sweep prefix (local path or s3://).")
    p.add_argument("cell", help="The cell's name.")
    p.add_argument("--attempt", type=int, required=True, help="The attempt the cell's record names.")
    p.add_argument("--submission-id", help="This job's submission id (as the record names it).")
    p.add_argument("--storage", help="Storage options as JSON (endpoint_url, region, addressing_style).")
    args = p.parse_args(argv)

    layout = SweepLayout.at(args.sweep, storage_from(json.loads(args.storage) if args.storage else None))

    stop = _StopRecorder()
    try:
        state = run_cell(
            layout, args.cell, args.attempt, args.submission_id, say=stop.say, on_writer=stop.attach
        )
    except WbrayError as exc:
        print(f"wbray: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except CellStopped as exc:
        print(f"wbray: {exc}", file=sys.stderr, flush=True)
        return 143
    print(json.dumps({"cell": state.cell, "status": state.status, "attempt": state.attempt}), flush=True)
    return 0


class _StopRecorder:
    """Records a stop (SIGTERM) in the cell's record at once, in front of whatever else handles it.

    Ray kills a stopped job 3 s after its SIGTERM, and a run unwinding (manifest, Ray shutdown) may
    take longer, so the record is written first. ``ray.init`` (inside the run) installs Ray's own
    handler; each line the run says puts the recorder in front of it again.
    """

    def __init__(self) -> None:
        self.writer: StateWriter | None = None
        self.installed: Any = None

    def attach(self, writer: StateWriter) -> None:
        self.writer = writer
        self._install()

    def say(self, line: str) -> None:
        print(line, flush=True)  # the job's log
        if self.writer is not None and signal.getsignal(signal.SIGTERM) is not self.installed:
            self._install()

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers; the next line from it will
        previous = signal.getsignal(signal.SIGTERM)
        writer = self.writer

        def handler(signum: int, frame: FrameType | None) -> None:
            if writer is not None:
                writer.finish("failed", stop_reason(signum))
            if callable(previous):
                previous(signum, frame)  # Ray's: SystemExit, and its own cleanup
            raise CellStopped(stop_reason(signum))

        signal.signal(signal.SIGTERM, handler)
        self.installed = handler


if __name__ == "__main__":
    sys.exit(main())
