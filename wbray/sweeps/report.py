"""A sweep's leaderboard as a Ray job: ``python -m wbray.sweeps.report SWEEP_URI``.

``wbray sweep --address`` submits it once the cells have ended, so the aggregation runs on the
cluster, where the benchmark data is (``wbray sweep report URI`` does the same in any shell that
has the data).
"""

from __future__ import annotations

import argparse
import json
import sys

from wbray.errors import WbrayError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Write a wbray sweep's leaderboards (the entry point of its job)."
    )
    p.add_argument("sweep", help="The sweep prefix (local path or s3://).")
    p.add_argument("--storage", help="Storage options as JSON (endpoint_url, region, addressing_style).")
    args = p.parse_args(argv)

    from wbray.sweeps._layout import SweepLayout
    from wbray.sweeps._report import write_sweep_report
    from wbray.sweeps._store import storage_from

    layout = SweepLayout.at(args.sweep, storage_from(json.loads(args.storage) if args.storage else None))
    try:
        groups = write_sweep_report(layout, say=lambda line: print(line, flush=True))
    except WbrayError as exc:
        print(f"wbray: error: {exc}", file=sys.stderr, flush=True)
        return 1
    for group in groups:
        for uri in group.reports:
            print(uri, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
