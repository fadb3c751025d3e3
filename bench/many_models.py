"""P8: many models in one pipeline — one run of N candidates x 1 judge vs the sum of N single runs.

Usage:  python bench/many_models.py [--candidates 4] [--queries 2] [--prefix-cache-mb 1024]
                                   [--out bench/many_models.json]

The same rows both ways: N candidates (the real SmolLM2-135M on CPU under different names, greedy)
answer the same queries and one constrained judge scores every answer. "Singles" runs each
candidate alone, one run after the other, each in its own run directory (each run builds its
own judge pool, as before one pipeline held many models); "one run" evaluates all N together.
Both use the same already-started local Ray cluster, so Ray's own start-up is not counted on
either side. Reported: wall time of each, the ratio (target <= 0.75), the engine loads each
way from the run manifests, and how many of the single runs' verdicts the one run reproduces
(greedy, so all of them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _config(model_dir: Path, names: list[str], indices: list[int], prefix_cache_mb: int = 1024) -> Any:
    from wbray.config import load_config

    cands = ", ".join(
        f"{{name: {n}, engine: {{backend: transformers, model: '{model_dir}', batch_size: 2}}, "
        f"sampling: {{temperature: 0, max_tokens: 24}}, resources: {{actors: 1, num_cpus: 0.25}}}}"
        for n in names
    )
    return load_config(
        None,
        [
            f"candidates=[{cands}]",
            "data.data_dir=example",
            f"data.indices={indices}",
            "judge.name=critic",
            f"judge.engine={{backend: transformers, model: '{model_dir}', batch_size: 1, "
            f"prefix_cache_mb: {prefix_cache_mb}}}",
            "judge.constrained=true",
            "judge.reason_max_chars=24",
            "judge.sampling={temperature: 0, max_tokens: 112}",
            "judge.resources={actors: 1, num_cpus: 1}",
        ],
    )


def _loads(root: str) -> int:
    from wbray.storage import RunLayout, read_manifest

    manifest = read_manifest(RunLayout.at(root))
    assert manifest is not None and manifest.last is not None
    return sum(p.engine_loads or 0 for p in manifest.last.pools)


def _verdicts(root: str) -> dict[tuple[str, int, str], tuple[Any, Any]]:
    """(model, index, criterion) -> (score, reason) of a run's verdicts."""
    from wbray.storage import RunLayout, read_evaluations

    table = read_evaluations(RunLayout.at(root))
    return {(r.model, int(r.index), r.criterion): (r.score, r.reason) for r in table.itertuples(index=False)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--queries", type=int, default=2)
    p.add_argument("--cache", default=str(Path(__file__).resolve().parents[1] / ".cache"))
    p.add_argument("--out", default=str(Path(__file__).with_name("many_models.json")))
    p.add_argument(
        "--prefix-cache-mb",
        type=int,
        default=1024,
        help="The judge engine's prefix cache (0 = off, to see what it contributes).",
    )
    args = p.parse_args()

    import wbray
    from wbray.config import RayConfig
    from wbray.engines._smollm2 import smollm2_model_dir
    from wbray.pipelines import ray_session

    model_dir = smollm2_model_dir(Path(args.cache))
    names = [f"cand{i}" for i in range(args.candidates)]
    indices = list(range(1, args.queries + 1))
    with ray_session(RayConfig(num_cpus=2)), tempfile.TemporaryDirectory() as tmp:
        # Warm-up outside the timings: first imports and page cache of the model files.
        wbray.evaluate(_config(model_dir, names[:1], indices[:1]), out=f"{tmp}/warm", report=False)

        t0 = time.perf_counter()
        single_loads = 0
        single_verdicts: dict[tuple[str, int, str], tuple[Any, Any]] = {}
        for name in names:
            root = f"{tmp}/single-{name}"
            wbray.evaluate(_config(model_dir, [name], indices, args.prefix_cache_mb), out=root, report=False)
            single_loads += _loads(root)
        singles = time.perf_counter() - t0
        for name in names:  # read after the clock stops
            single_verdicts.update(_verdicts(f"{tmp}/single-{name}"))

        t0 = time.perf_counter()
        wbray.evaluate(
            _config(model_dir, names, indices, args.prefix_cache_mb), out=f"{tmp}/one", report=False
        )
        one = time.perf_counter() - t0
        one_loads = _loads(f"{tmp}/one")
        one_verdicts = _verdicts(f"{tmp}/one")
    # Greedy candidates and judge: the one run must hold the very verdicts of the single runs.
    same = sum(one_verdicts.get(key) == value for key, value in single_verdicts.items())

    result = {
        "candidates": args.candidates,
        "queries": args.queries,
        "verdicts": args.candidates * args.queries * 5,
        "singles_wall_s": round(singles, 2),
        "one_run_wall_s": round(one, 2),
        "P8_ratio_one_over_singles": round(one / singles, 3),
        "engine_loads_singles": single_loads,
        "engine_loads_one_run": one_loads,
        "judge_prefix_cache_mb": args.prefix_cache_mb,
        "verdicts_equal_to_singles": f"{same} of {len(single_verdicts)} ({len(one_verdicts)} in the one run)",
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
