"""P9 and P10: the judge cache (a warm run vs a cold one) and verdict parts per 1,000 rows.

Usage:  python bench/judge_cache.py [--queries 12] [--judge-latency 0.2] [--out bench/judge_cache.json]

Both use an OpenAI-compatible server on 127.0.0.1 that answers the candidate at once and the judge
after ``--judge-latency`` seconds (deterministic replies), so the numbers measure wbray, not a model.

* P9: a cold run scores every answer into a judge cache; a second run of the same config into a
  new run directory takes every verdict from the cache. Reported: wall times, their ratio, and the
  judge calls each made (the warm run must make none).
* P10: parts per 1,000 verdict rows with one part per judged batch (``run.part_rows: 1``, what
  every run wrote before verdicts were buffered; the judge handles one row per batch, as a CPU
  judge does) against the default buffering (``run.part_rows: 1000``, ``run.part_age_s: 60``).
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _parts(root: str) -> int:
    from wbray.storage import list_files

    return len(list_files(f"{root}/scores", ".parquet"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=12)
    p.add_argument("--judge-latency", type=float, default=0.2)
    p.add_argument("--out", default=str(Path(__file__).with_name("judge_cache.json")))
    args = p.parse_args()

    import wbray
    from tests.helpers.scripted_openai import ScriptedOpenAIServer, reply, sleep
    from wbray.config import RayConfig
    from wbray.pipelines import ray_session

    def script(body: dict[str, Any], attempt: int) -> Any:
        msgs = body["messages"]
        if msgs[0]["role"] != "system":
            return reply(f"An answer to: {msgs[-1]['content'][:40]}")
        verdict = f'{{"score": {1 + len(msgs[-1]["content"]) % 10}, "reason": "scripted"}}'
        return sleep(args.judge_latency, then=reply(verdict))

    def judge_calls(srv: ScriptedOpenAIServer) -> int:
        return sum(1 for r in srv.requests if r.body["messages"][0]["role"] == "system")

    indices = list(range(1, args.queries + 1))
    with (
        ScriptedOpenAIServer(script) as srv,
        tempfile.TemporaryDirectory() as tmp,
        ray_session(RayConfig(num_cpus=2)),
    ):
        engine = f"{{backend: openai, base_url: '{srv.base_url}', model: m, max_concurrency: 8}}"
        base = {
            "data": {"data_dir": "example", "indices": indices},
            "candidates": [{"name": "api-model", "engine": _yaml(engine)}],
            "judge": {
                "name": "api-judge",
                "engine": _yaml(engine),
                "cache": f"{tmp}/cache",
                "resources": {"actors": 1, "num_cpus": 0.5, "batch_size": 1},
            },
            "generation": {"resources": {"actors": 1, "num_cpus": 0.25}},
        }
        wbray.evaluate(base, out=f"{tmp}/warm-up", report=False, overrides=["judge.cache=null"])
        t0 = time.perf_counter()
        wbray.evaluate(base, out=f"{tmp}/cold", report=False)
        cold = time.perf_counter() - t0
        cold_calls = judge_calls(srv)
        t0 = time.perf_counter()
        wbray.evaluate(base, out=f"{tmp}/warm", report=False)
        warm = time.perf_counter() - t0
        warm_calls = judge_calls(srv) - cold_calls
        rows = args.queries * 5
        per_batch = {**base, "run": {"part_rows": 1}, "judge": {**base["judge"], "cache": None}}
        wbray.evaluate(per_batch, out=f"{tmp}/one-part-per-batch", report=False)
        buffered = {**base, "judge": {**base["judge"], "cache": None}}
        wbray.evaluate(buffered, out=f"{tmp}/buffered", report=False)
        before, after = _parts(f"{tmp}/one-part-per-batch"), _parts(f"{tmp}/buffered")

    result = {
        "verdicts": rows,
        "judge_latency_s": args.judge_latency,
        "P9_cold_wall_s": round(cold, 2),
        "P9_warm_wall_s": round(warm, 2),
        "P9_ratio_warm_over_cold": round(warm / cold, 3),
        "P9_judge_calls_cold": cold_calls,
        "P9_judge_calls_warm": warm_calls,
        "P10_parts_per_1000_rows_one_per_batch": round(1000 * before / rows, 1),
        "P10_parts_per_1000_rows_buffered": round(1000 * after / rows, 1),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


def _yaml(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


if __name__ == "__main__":
    sys.exit(main())
