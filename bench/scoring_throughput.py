"""P1 and P2: scoring throughput, measured in one run, reported as ratios.

P1  bare transformers engine (one process, same prompts/model/batch size)  vs  wbray's Ray Data
    scoring stage (actor pool, Parquet writes, progress)         -> ratio = wbray / bare (target >= 0.85)
P2  wbray's batched scoring  vs  upstream-style one request at a time with the same engine
                                                                 -> ratio = batched / sequential

Usage:  python bench/scoring_throughput.py [--rows 24] [--batch 4] [--data-dir DIR] [--out bench/results.json]

Throughput is judged rows per second of wall time for the scoring work itself (model loading and
cluster start are excluded on both sides and reported separately). The judge is constrained
SmolLM2-135M (the embedded default) on the builtin or official template.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _rows(data_dir: str | None, n: int, judge, template):  # type: ignore[no-untyped-def]
    from wbray.dataset import load_benchmark
    from wbray.steps import scoring_rows

    bench = load_benchmark(data_dir or "example")
    queries = sorted(bench.queries, key=lambda q: len(q.query))
    rows = []
    for q in queries:
        gen = {
            "row_id": f"g{q.index}",
            "model": "bench",
            "index": q.index,
            "status": "ok",
            "error": None,
            "response": "A short answer that covers the request in a few plain sentences.",
            "data_version": "bench",
        }
        rows += scoring_rows(gen, q, judge, template)
        if len(rows) >= n:
            break
    return bench, rows[:n]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--data-dir")
    ap.add_argument("--out", default="bench/results.json")
    args = ap.parse_args()

    from wbray.config import JudgeConfig, RayConfig, SamplingParams, StageResources, TransformersEngineConfig
    from wbray.engines import create_engine
    from wbray.engines._smollm2 import smollm2_model_dir
    from wbray.prompts import load_judge_template
    from wbray.steps import score_batch

    model_dir = smollm2_model_dir()
    engine_cfg = TransformersEngineConfig(model=str(model_dir), batch_size=args.batch, torch_threads=1)
    judge = JudgeConfig(
        name="bench",
        engine=engine_cfg,
        constrained=True,
        reason_max_chars=40,
        max_reasks=0,
        sampling=SamplingParams(max_tokens=176, seed=0),
        resources=StageResources(actors=1, num_cpus=1, batch_size=args.batch),
    )
    template = load_judge_template(Path(args.data_dir) if args.data_dir else None, "auto")
    _, rows = _rows(args.data_dir, args.rows, judge, template)
    results: dict[str, object] = {
        "rows": len(rows),
        "batch": args.batch,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }

    # Bare engine, batched (the floor for P1) and one at a time (upstream style, for P2).
    t0 = time.perf_counter()
    engine = create_engine(engine_cfg)
    results["bare_load_s"] = time.perf_counter() - t0
    loop = asyncio.new_event_loop()
    t0 = time.perf_counter()
    for i in range(0, len(rows), args.batch):
        loop.run_until_complete(score_batch(engine, rows[i : i + args.batch], template, judge))
    bare_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    for row in rows:
        loop.run_until_complete(score_batch(engine, [row], template, judge))
    sequential = time.perf_counter() - t0
    loop.run_until_complete(engine.close())

    # wbray's Ray Data scoring stage on the same rows (1 actor, 1 CPU, same batch size).
    import ray

    from wbray.config import StageResources
    from wbray.engines import StageSpec
    from wbray.pipelines import configure_data, ray_session
    from wbray.pipelines._stages import ProgressActor, actor_pool_stage, store_scores
    from wbray.steps import ScoringTask
    from wbray.storage import RunLayout

    cfg = RayConfig(num_cpus=2)
    with ray_session(cfg), tempfile.TemporaryDirectory() as tmp:
        configure_data(cfg)
        progress = ProgressActor.remote()
        resources = StageResources(actors=1, num_cpus=1, batch_size=args.batch)
        spec = StageSpec(engine_cfg, resources, ScoringTask(judge, template), "score:bench", progress)
        ds = actor_pool_stage(ray.data.from_items(rows), spec).map_batches(
            store_scores,
            fn_kwargs={"layout": RunLayout.at(tmp), "judge": judge.name, "progress": progress},
            batch_format="pandas",
            num_cpus=0,
        )
        # Timed from dataset start: actor start-up and model load count against wbray (honest).
        t0 = time.perf_counter()
        n = sum(int(b["rows"].sum()) for b in ds.iter_batches(batch_size=None, batch_format="pandas"))
        ray_wall = time.perf_counter() - t0
        assert n == len(rows)

    results.update(
        bare_batched_rows_per_s=len(rows) / bare_batched,
        sequential_rows_per_s=len(rows) / sequential,
        wbray_ray_rows_per_s=len(rows) / ray_wall,
        P1_ratio_wbray_over_bare=bare_batched / ray_wall,
        P2_ratio_batched_over_sequential=sequential / bare_batched,
        note="wbray_ray wall includes actor start-up and model load; bare excludes its model load",
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
