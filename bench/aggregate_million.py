"""P3: aggregating a million criterion rows, two ways, each as ratios measured in one run.

1. Upstream score files: 200 models x the real benchmark's 1,000 queries x 5 criteria (1M criterion
   rows, ~70 MB of JSONL), aggregated by upstream's own ``calculate_scores.py`` (unmodified, run from
   ``--official-dir``/reference) and by ``wbray aggregate --xlsx``, each as a fresh subprocess
   (interpreter start, imports, benchmark load, reading, arithmetic, workbook), alternating, ``--repeat``
   times. Wall time by the clock around the subprocess, peak RSS from ``os.wait4``'s rusage of that
   child. Then the two workbooks' first sheets are compared cell by cell: they must be identical.
2. A wbray run (the same shape, 1% failed rows, one committed Parquet part per model): the floor is
   pyarrow reading the five columns aggregation needs; wbray reads the run through
   ``storage.read_evaluations`` (committed parts only, de-duplicated) and builds the full leaderboard.
   In one process, after imports, best of ``--repeat``.

Usage:  python bench/aggregate_million.py [--models 200] [--repeat 3] [--official-dir ../shared/writingbench]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REASONS = ("ok", "good", "weak", "好", "差")
#: The checkout this script belongs to: `wbray aggregate` is measured from it, not from an install.
REPO = Path(__file__).resolve().parents[1]


def _timed(cmd: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one subprocess, measured for that child alone."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        **(extra_env or {}),
    }
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024  # Linux reports KiB


def _write_upstream_files(queries: list[dict[str, Any]], out: Path, models: int) -> int:
    rng = random.Random(0)
    rows = 0
    for m in range(models):
        with (out / f"model-{m:03d}.jsonl").open("w", encoding="utf-8") as fh:
            for q in queries:
                scores = {
                    c["name"]: [{"score": rng.randint(1, 10), "reason": rng.choice(REASONS)}]
                    for c in q["checklist"]
                }
                rows += len(scores)
                fh.write(json.dumps({"index": q["index"], "scores": scores}, ensure_ascii=False) + "\n")
    return rows


def _first_sheet(path: Path) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    import openpyxl

    rows = list(openpyxl.load_workbook(path, read_only=True).worksheets[0].iter_rows(values_only=True))
    return rows[0], sorted(rows[1:], key=lambda r: str(r[0]))


def upstream_files(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    official = Path(args.official_dir).resolve()
    bq = official / "benchmark_query"
    queries = [json.loads(x) for x in (bq / "benchmark_all.jsonl").open(encoding="utf-8")]
    score_dir = tmp / "scores"
    score_dir.mkdir()
    rows = _write_upstream_files(queries, score_dir, args.models)
    size_mb = sum(f.stat().st_size for f in score_dir.iterdir()) / 2**20
    official_cmd = [
        sys.executable,
        str(official / "reference" / "calculate_scores.py"),
        "--score_dir",
        str(score_dir),
        "--benchmark_file",
        str(bq / "benchmark_all.jsonl"),
        "--output_excel",
        str(tmp / "official.xlsx"),
        "--requirement_dir",
        str(bq / "requirement"),
    ]
    wbray_cmd = [
        sys.executable,
        "-m",
        "wbray.cli",
        "aggregate",
        str(score_dir),
        "--data-dir",
        str(official),
        "--xlsx",
        str(tmp / "wbray.xlsx"),
        # The same work as the official script, which computes no intervals (wbray's default
        # bootstraps them: see P11 for their cost).
        "--resamples",
        "0",
    ]
    # wbray keeps a strictly loaded benchmark in its cache (keyed by the files' stamps), so only the
    # first load of the benchmark files on a machine checks them all: that cold run is timed and
    # reported on its own, then the runs alternate with the official script's.
    cache = {"WBRAY_CACHE_DIR": str(tmp / "wbray-cache")}
    # Bytecode for wbray's modules, as an installed package has (pip compiles at install time;
    # an editable install writes it on first import unless PYTHONDONTWRITEBYTECODE is set, as it
    # is on the project machine — then every run would compile ~40 modules, ~0.08 s).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "wbray")], check=True)
    cold = _timed(wbray_cmd, tmp, cache)
    runs: dict[str, list[tuple[float, float]]] = {"official": [], "wbray": []}
    for i in range(args.repeat):
        order = (("official", official_cmd, None), ("wbray", wbray_cmd, cache))
        for name, cmd, extra in order if i % 2 == 0 else reversed(order):
            runs[name].append(_timed(cmd, tmp, extra))
    head_o, rows_o = _first_sheet(tmp / "official.xlsx")
    head_w, rows_w = _first_sheet(tmp / "wbray.xlsx")
    cells = sum(len(r) for r in rows_o)
    differing = sum(
        a != b for ro, rw in zip(rows_o, rows_w, strict=True) for a, b in zip(ro, rw, strict=True)
    )
    identical = head_o == head_w and len(rows_o) == len(rows_w) and differing == 0
    wall = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
    rss = {k: max(r for _, r in v) for k, v in runs.items()}
    return {
        "models": args.models,
        "criterion_rows": rows,
        "jsonl_mb": round(size_mb, 1),
        "official_wall_s": [round(w, 2) for w, _ in runs["official"]],
        "wbray_wall_s": [round(w, 2) for w, _ in runs["wbray"]],
        "official_median_s": round(wall["official"], 2),
        "wbray_median_s": round(wall["wbray"], 2),
        "wbray_cold_benchmark_cache_s": round(cold[0], 2),
        "official_peak_rss_mb": round(rss["official"]),
        "wbray_peak_rss_mb": round(rss["wbray"]),
        "speedup_official_over_wbray": round(wall["official"] / wall["wbray"], 2),
        "first_sheet_identical": identical,
        "first_sheet_cells_compared": cells,
        "first_sheet_cells_differing": differing,
    }


def parquet_run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from wbray.aggregate import aggregate
    from wbray.dataset import load_benchmark
    from wbray.storage import RunLayout, commit_stage, read_evaluations, write_manifest

    bench = load_benchmark(args.official_dir)
    pairs = [(q.index, c.name) for q in bench.queries for c in q.checklist]
    rng = np.random.default_rng(0)
    layout = RunLayout.at(str(tmp / "run"))
    idx = np.array([p[0] for p in pairs], dtype="int64")
    crit = np.array([p[1] for p in pairs], dtype=object)
    for m in range(args.models):
        model = f"model-{m:03d}"
        failed = rng.random(len(pairs)) < 0.01
        table = pa.table(
            {
                "row_id": [f"{model}-{i}" for i in range(len(pairs))],
                "model": [model] * len(pairs),
                "index": idx,
                "criterion": crit,
                "repeat": np.zeros(len(pairs), dtype="int64"),
                "score": np.where(failed, np.nan, rng.integers(1, 11, len(pairs)).astype("float64")),
                "reason": ["r"] * len(pairs),
                "status": np.where(failed, "failed", "ok"),
                "error": np.where(failed, "unparseable reply", None),
            }
        )
        directory = Path(layout.scores("judge", model))
        directory.mkdir(parents=True)
        pq.write_table(table, directory / "part-0.parquet")
        commit_stage(str(directory))
    write_manifest(layout, {})
    parts = sorted(Path(layout.scores_root).rglob("*.parquet"))
    floor, full = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        floor_table = pa.concat_tables(
            [pq.read_table(p, columns=["model", "index", "criterion", "score", "status"]) for p in parts]
        )
        floor.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        lean = ["model", "index", "criterion", "repeat", "score", "status"]
        board = aggregate(read_evaluations(layout, "judge", columns=lean), bench.queries, bench.requirements)
        full.append(time.perf_counter() - t0)
    assert floor_table.num_rows == len(pairs) * args.models and len(board.official) == args.models
    return {
        "rows": floor_table.num_rows,
        "floor_pyarrow_read_s": round(min(floor), 3),
        "wbray_read_and_aggregate_s": round(min(full), 3),
        "ratio_wbray_over_floor": round(min(full) / min(floor), 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--official-dir", default="../shared/writingbench")
    ap.add_argument("--out", default="bench/aggregate.json")
    ap.add_argument("--only", choices=["upstream", "parquet"], help="Run one of the two parts.")
    args = ap.parse_args()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "upstream"):
            (Path(tmp) / "u").mkdir()
            result["upstream_files"] = upstream_files(args, Path(tmp) / "u")
        if args.only in (None, "parquet"):
            (Path(tmp) / "p").mkdir()
            result["parquet_run"] = parquet_run(args, Path(tmp) / "p")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
