"""Evaluation as a Ray job: ``wbray.evaluate`` on the cluster the job runs on.

Submit it with the job SDK or the CLI, e.g.::

    ray job submit --address http://head:8265 --working-dir . -- \\
        python jobs/run.py configs/quickstart.yaml --out s3://bucket/runs/r1

Inside a job ``RAY_ADDRESS`` names the cluster, so the run joins it (it never starts a private
one there). Every setting comes from the config — storage endpoint included — applied by the
public API itself, exactly as ``wbray run`` applies it.
"""

from __future__ import annotations

import argparse
import json
import sys

import wbray


def main(argv: list[str] | None = None, *, generate: bool = True) -> int:
    p = argparse.ArgumentParser(description="Run wbray.evaluate (or wbray.score) as a Ray job.")
    p.add_argument("config", help="Evaluation config (YAML).")
    p.add_argument("--out", help="Run directory URI (default: run.out).")
    p.add_argument("--limit", type=int, help="Only the first N selected queries.")
    p.add_argument("--data-dir", help="WritingBench data directory, or 'example'.")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    call = wbray.evaluate if generate else wbray.score
    summary = call(
        args.config,
        out=args.out,
        limit=args.limit,
        data_dir=args.data_dir,
        overrides=args.override,
        on_event=lambda line: print(line, flush=True),
    )
    print(json.dumps({"run": summary.root, "computed": summary.computed, "failed": summary.failed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
