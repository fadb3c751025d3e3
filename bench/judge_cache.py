"""P9 and P10: the judge cache (a warm run vs a cold one) and verdict parts per 1,000 rows.

Usage:  python bench/judge_cache.py [--queries 12] [--judge-latency 0.2] [--p10-queries 200]
        [--data-dir ../shared/writingbench] [--out bench/judge_cache.json]

Both use an OpenAI-compatible server on 127.0.0.1 that answers the candidate at once and the judge
after ``--judge-latency`` seconds (deterministic replies), so the numbers measure wbray, not a model.

* P9: a cold run scores every answer into a judge cache; a second run of the same config into a
  new run directory takes every verdict from the cache. Reported: wall times, their ratio, and the
  judge calls each made (the warm run must make none).
* P10: parts per 1,000 verdict rows written unbuffered (``run.part_rows: 1``: every batch that
  reaches the writer becomes its part at once, what runs did before verdicts were buffered) against
  the default buffering (``run.part_rows: 1000``, ``run.part_age_s: 60``), on ``--p10-queries``
  queries of the benchmark in ``--data-dir`` (5 verdicts each; the judge handles one row per batch,
  as a CPU judge does). The example benchmark's 12 queries arrive in one block and give one part
  either way, so this needs a real benchmark's size.
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
    p.add_argument("--p10-queries", type=int, default=200)
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "writingbench"))
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
        before_cold = judge_calls(srv)
        t0 = time.perf_counter()
        wbray.evaluate(base, out=f"{tmp}/cold", report=False)
        cold = time.perf_counter() - t0
        cold_calls = judge_calls(srv) - before_cold
        t0 = time.perf_counter()
        wbray.evaluate(base, out=f"{tmp}/warm", report=False)
        warm = time.perf_counter() - t0
        warm_calls = judge_calls(srv) - before_cold - cold_calls
        rows = args.queries * 5
        from wbray.dataset import load_benchmark

        english = sorted(q.index for q in load_benchmark(args.data_dir).queries if q.lang == "en")
        big = {
            **base,
            "data": {"data_dir": args.data_dir, "indices": english[: args.p10_queries]},
            "judge": {**base["judge"], "cache": None},
        }
        wbray.evaluate({**big, "run": {"part_rows": 1}}, out=f"{tmp}/unbuffered", report=False)
        wbray.evaluate(big, out=f"{tmp}/buffered", report=False)
        before, after = _parts(f"{tmp}/unbuffered"), _parts(f"{tmp}/buffered")
        p10_rows = len(big["data"]["indices"]) * 5

    result = {
        "verdicts": rows,
        "judge_latency_s": args.judge_latency,
        "P9_cold_wall_s": round(cold, 2),
        "P9_warm_wall_s": round(warm, 2),
        "P9_ratio_warm_over_cold": round(warm / cold, 3),
        "P9_judge_calls_cold": cold_calls,
        "P9_judge_calls_warm": warm_calls,
        "P10_verdicts": p10_rows,
        "P10_parts_unbuffered": before,
        "P10_parts_buffered": after,
        "P10_parts_per_1000_rows_unbuffered": round(1000 * before / p10_rows, 1),
        "P10_parts_per_1000_rows_buffered": round(1000 * after / p10_rows, 1),
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
