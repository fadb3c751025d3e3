"""P3: aggregate 1,000,000 criterion rows, reported as ratios measured in one run.

  floor      pyarrow reads the needed Parquet columns of the synthetic run (nothing else)
  wbray      wbray reads the run (committed parts, de-duplicated) and builds the full leaderboard
  upstream   upstream-style aggregation: one JSONL score file per model, per-row Python loops
             (the arithmetic of calculate_scores.py), on the same data

Usage:  python bench/aggregate_million.py [--rows 1000000] [--data-dir DIR] [--out bench/aggregate.json]

Synthetic data follows the real schema: the official benchmark's 1,000 queries x 5 criteria per
model (200 models = 1M rows), integer scores 1-10, 1% failed rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--data-dir", default="../shared/writingbench")
    ap.add_argument("--out", default="bench/aggregate.json")
    args = ap.parse_args()

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from wbray.aggregate import aggregate
    from wbray.dataset import load_benchmark
    from wbray.storage import RunLayout, commit_stage, read_evaluations

    bench = load_benchmark(args.data_dir)
    pairs = [(q.index, c.name) for q in bench.queries for c in q.checklist]
    n_models = max(1, args.rows // len(pairs))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        layout = RunLayout.at(str(Path(tmp) / "run"))
        idx = np.array([p[0] for p in pairs], dtype="int64")
        crit = np.array([p[1] for p in pairs], dtype=object)
        upstream_dir = Path(tmp) / "upstream"
        upstream_dir.mkdir()
        t0 = time.perf_counter()
        for m in range(n_models):
            model = f"model-{m:03d}"
            scores = rng.integers(1, 11, len(pairs)).astype("float64")
            failed = rng.random(len(pairs)) < 0.01
            table = pa.table(
                {
                    "row_id": [f"{model}-{i}" for i in range(len(pairs))],
                    "model": [model] * len(pairs),
                    "index": idx,
                    "criterion": crit,
                    "repeat": np.zeros(len(pairs), dtype="int64"),
                    "score": np.where(failed, np.nan, scores),
                    "reason": ["r"] * len(pairs),
                    "status": np.where(failed, "failed", "ok"),
                    "error": np.where(failed, "unparseable reply", None),
                }
            )
            directory = Path(layout.scores("judge", model))
            directory.mkdir(parents=True)
            pq.write_table(table, directory / "part-0.parquet")
            commit_stage(str(directory))
            by_index: dict[int, dict[str, list[dict[str, object]]]] = defaultdict(dict)
            for i, c, s, f in zip(idx.tolist(), crit.tolist(), scores.tolist(), failed.tolist(), strict=True):
                if not f:
                    by_index[i][c] = [{"score": int(s), "reason": "r"}]
            with (upstream_dir / f"{model}.jsonl").open("w") as fh:
                for i, sc in by_index.items():
                    fh.write(json.dumps({"index": i, "scores": sc}) + "\n")
        (Path(layout.root) / "manifest.json").write_text("{}")
        setup_s = time.perf_counter() - t0
        rows = n_models * len(pairs)

        t0 = time.perf_counter()
        parts = sorted(Path(layout.scores_root).rglob("*.parquet"))
        floor_table = pa.concat_tables(
            [pq.read_table(p, columns=["model", "index", "criterion", "score", "status"]) for p in parts]
        )
        floor_s = time.perf_counter() - t0
        assert floor_table.num_rows == rows

        t0 = time.perf_counter()
        lean = ["model", "index", "criterion", "repeat", "score", "status"]
        board = aggregate(read_evaluations(layout, "judge", columns=lean), bench.queries, bench.requirements)
        wbray_s = time.perf_counter() - t0
        assert len(board.official) == n_models

        t0 = time.perf_counter()
        domain = {q.index: (q.domain1, q.domain2) for q in bench.queries}
        reqs = bench.requirements
        for f in sorted(upstream_dir.glob("*.jsonl")):  # calculate_scores.py's loops, per file
            q_mean, details, total, n = {}, {}, 0.0, 0
            for line in f.open():
                rec = json.loads(line)
                vals = []
                details[rec["index"]] = {}
                for name, evs in rec["scores"].items():
                    ss = [e["score"] for e in evs]
                    vals += ss
                    details[rec["index"]][name] = sum(ss) / len(ss)
                q_mean[rec["index"]] = sum(vals) / len(vals)
                total += sum(vals)
                n += len(vals)
            d1: dict[str, list[float]] = defaultdict(list)
            d2: dict[str, list[float]] = defaultdict(list)
            for i, s in q_mean.items():
                d1[domain[i][0]].append(s)
                d2[domain[i][1]].append(s)
            for sub in reqs.values():
                r = [q_mean[i] for i in sub.r_indices if i in q_mean]
                c = [
                    details[i][nm]
                    for i in sub.r_indices
                    if i in q_mean
                    for nm in sub.c_criteria.get(i, ())
                    if nm in details[i]
                ]
                _ = (sum(r) / max(len(r), 1), sum(c) / max(len(c), 1))
        upstream_s = time.perf_counter() - t0

    result = {
        "rows": rows,
        "models": n_models,
        "setup_s": round(setup_s, 2),
        "floor_pyarrow_read_s": round(floor_s, 3),
        "wbray_read_and_aggregate_s": round(wbray_s, 3),
        "upstream_style_python_s": round(upstream_s, 3),
        "P3_ratio_wbray_over_floor": round(wbray_s / floor_s, 2),
        "P3_ratio_upstream_over_wbray": round(upstream_s / wbray_s, 2),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
