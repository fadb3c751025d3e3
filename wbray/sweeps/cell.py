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
from types import FrameType

from wbray.errors import WbrayError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run one cell of a wbray sweep (the entry point of its Ray job).")
    p.add_argument("sweep", help="The sweep prefix (local path or s3://).")
    p.add_argument("cell", help="The cell's name.")
    p.add_argument("--attempt", type=int, required=True, help="The attempt the cell's record names.")
    p.add_argument("--submission-id", help="This job's submission id (as the record names it).")
    p.add_argument("--storage", help="Storage options as JSON (endpoint_url, region, addressing_style).")
    args = p.parse_args(argv)

    from wbray.sweeps._cell import CellStopped, StateWriter, run_cell
    from wbray.sweeps._layout import SweepLayout
    from wbray.sweeps._store import storage_from

    layout = SweepLayout.at(args.sweep, storage_from(json.loads(args.storage) if args.storage else None))

    def on_writer(writer: StateWriter) -> None:
        def stopped(signum: int, _frame: FrameType | None) -> None:
            reason = f"stopped ({signal.Signals(signum).name}: ray job stop or wbray sweep cancel)"
            writer.finish("failed", reason)
            raise CellStopped(reason)

        signal.signal(signal.SIGTERM, stopped)

    say = lambda line: print(line, flush=True)  # noqa: E731 - the job log is stdout
    try:
        state = run_cell(layout, args.cell, args.attempt, args.submission_id, say=say, on_writer=on_writer)
    except WbrayError as exc:
        print(f"wbray: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except CellStopped as exc:
        print(f"wbray: {exc}", file=sys.stderr, flush=True)
        return 143
    print(json.dumps({"cell": state.cell, "status": state.status, "attempt": state.attempt}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
