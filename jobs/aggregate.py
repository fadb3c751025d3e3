"""Aggregation as a Ray job: ``wbray.api.aggregate`` on the cluster, reports written to storage.

    ray job submit --address http://head:8265 --working-dir . -- \\
        python jobs/aggregate.py s3://bucket/runs/ --out s3://bucket/reports/sweep1

Inputs are runs, run prefixes, score files or export directories (local or s3://); each run finds
its benchmark from its manifest (``--data-dir`` overrides). The work is columnar (only the needed
Parquet columns are read; group-bys, no per-row Python), so a million criterion rows aggregate in
seconds on the job's driver; there is nothing to gain from spreading it over workers.
"""

from __future__ import annotations

import argparse
import sys

import wbray.api as api


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Aggregate runs or score files into every report format.")
    p.add_argument("inputs", nargs="+", help="Runs, run prefixes, score files or export directories.")
    p.add_argument("--out", required=True, help="Directory or s3:// prefix for the reports.")
    p.add_argument("--data-dir", help="The benchmark (default: from each run's manifest).")
    p.add_argument("--judge", help="For runs holding several judges: the judge to aggregate.")
    p.add_argument("--dedupe", action="store_true", help="Keep the last of an index a score file repeats.")
    p.add_argument("--resamples", type=int, default=1000, help="Bootstrap resamples for intervals (0: none).")
    args = p.parse_args(argv)
    built = api.aggregate(
        args.inputs,
        data_dir=args.data_dir,
        judge=args.judge,
        dedupe=args.dedupe,
        resamples=args.resamples,
        out=args.out,
    )
    for note in built.notes:
        print(f"note: {note}", flush=True)
    print(f"wrote the reports of {len(built.board.models)} models to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
