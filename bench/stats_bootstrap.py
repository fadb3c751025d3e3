"""Bootstrap CIs at scale: 1,000 queries x 200 models x 1,000 resamples, every leaderboard group.

Usage:  python bench/stats_bootstrap.py [--queries 1000] [--models 200] [--resamples 1000]
                                        [--data-dir DIR] [--out bench/stats_bootstrap.json]

Synthetic evaluations on the official benchmark's first N queries (their real domains, languages and
requirement subsets): 5 criteria per query, integer scores 1-10, 1% failed rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--data-dir", default="../shared/writingbench")
    ap.add_argument("--out", default="bench/stats_bootstrap.json")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd

    from wbray.dataset import load_benchmark
    from wbray.stats import bootstrap_cis, compare_models, comparisons_table

    bench = load_benchmark(args.data_dir)
    queries = bench.queries[: args.queries]
    pairs = [(q.index, c.name) for q in queries for c in q.checklist]
    rng = np.random.default_rng(0)
    n = len(pairs) * args.models
    evaluations = pd.DataFrame(
        {
            "model": np.repeat([f"m{i:03d}" for i in range(args.models)], len(pairs)),
            "index": np.tile([p[0] for p in pairs], args.models),
            "criterion": np.tile(np.array([p[1] for p in pairs], dtype=object), args.models),
            "repeat": 0,
            "score": rng.integers(1, 11, n).astype("float64"),
        }
    )
    failed = rng.random(n) < 0.01
    evaluations["status"] = np.where(failed, "failed", "ok")
    evaluations.loc[failed, "score"] = np.nan

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    overall = bootstrap_cis(
        evaluations, queries, bench.requirements, resamples=args.resamples, scopes=["overall"]
    )
    timings["overall_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    every = bootstrap_cis(evaluations, queries, bench.requirements, resamples=args.resamples)
    timings["all_groups_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    compare_models(evaluations, "m000", "m001", resamples=10000)
    timings["paired_10000_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # What every report adds: each model against the leader, at the report's resamples.
    comparisons_table(evaluations, "m000", resamples=args.resamples)
    timings["every_model_vs_one_s"] = time.perf_counter() - t0
    result = {
        "rows": n,
        "queries": len(queries),
        "models": args.models,
        "resamples": args.resamples,
        "groups": int(every["group"].nunique()),
        "overall_rows": len(overall),
        **{k: round(v, 3) for k, v in timings.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result, indent=2))
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
