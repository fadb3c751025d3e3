"""Aggregation as a Ray job: the same leaderboard as ``wbray aggregate``, run on the cluster.

Submit it with the job SDK or the CLI, e.g.::

    ray job submit --address http://head:8265 --working-dir . -- \\
        python jobs/aggregate.py s3://bucket/runs/ --data-dir s3-mirror-or-path --out s3://bucket/reports/sweep1

Every argument is passed to ``wbray aggregate`` unchanged. The work is columnar (only the needed
Parquet columns are read; group-bys, no per-row Python), so a million criterion rows aggregate in
seconds on the job's driver; there is nothing to gain from spreading it over workers.
"""

from __future__ import annotations

import sys

from wbray.cli import main

if __name__ == "__main__":
    sys.exit(main(["aggregate", *sys.argv[1:]]))
