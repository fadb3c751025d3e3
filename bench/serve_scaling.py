"""P4: Serve scaling — requests/s and p50/p99 latency at 1 and 2 replicas under the same load.

Usage:  python bench/serve_scaling.py [--backend sleep|smollm2] [--requests 48] [--concurrency 8]
                                      [--out bench/serve_scaling.json]

The same closed-loop load (``--concurrency`` clients, ``--requests`` in all, over HTTP through the
gateway) runs against the chat deployment pinned at 1 replica, then at 2, in one run; the result is
the throughput ratio. Backends:

* ``sleep`` (default): the chat deployment's openai engine calls a local server that waits
  ``--sleep-s`` per request; each replica takes ``--per-replica`` requests at a time. This measures
  Serve's routing and replica scaling with no CPU contention, so the ideal ratio is 2.0.
* ``smollm2``: the real SmolLM2-135M on CPU (one torch thread per replica, ``--max-tokens``). On a
  2-core box both replicas share the cores with Ray itself, so expect well under 2.0.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.server
import json
import os
import platform
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


class _SleepHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    delay_s = 0.5

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.delay_s)
        body = json.dumps(
            {
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _model(args: argparse.Namespace, replicas: int, backend_url: str | None) -> dict[str, Any]:
    if args.backend == "sleep":
        engine: dict[str, Any] = {
            "backend": "openai",
            "base_url": backend_url,
            "model": "m",
            "max_retries": 0,
        }
        cpus = 0.1
    else:
        from wbray.engines._smollm2 import smollm2_model_dir

        engine = {"backend": "transformers", "model": str(smollm2_model_dir()), "torch_threads": 1}
        cpus = 0.5
    return {
        "name": "m",
        "engine": engine,
        "sampling": {"temperature": 0, "max_tokens": args.max_tokens},
        "deployment": {
            "resources": {"num_cpus": cpus},
            "autoscaling": {"min_replicas": replicas, "max_replicas": replicas},
            "max_ongoing_requests": args.per_replica,
            "max_queued_requests": -1,  # a benchmark measures queueing, it must not refuse
        },
    }


def _load(url: str, args: argparse.Namespace) -> dict[str, Any]:
    import requests

    def one(i: int) -> float:
        body = {"model": "m", "messages": [{"role": "user", "content": f"Say a word. ({i})"}]}
        started = time.perf_counter()
        r = requests.post(url, json=body, timeout=600)
        r.raise_for_status()
        return time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(one, range(args.concurrency)))  # warm-up: connections, replicas, first batch
        started = time.perf_counter()
        latencies = sorted(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - started
    return {
        "requests": args.requests,
        "wall_s": round(wall, 3),
        "rps": round(args.requests / wall, 3),
        "p50_s": round(statistics.median(latencies), 4),
        "p99_s": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 4),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=("sleep", "smollm2"), default="sleep")
    p.add_argument("--requests", type=int, default=48)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--per-replica", type=int, default=2, help="max_ongoing_requests per replica.")
    p.add_argument("--sleep-s", type=float, default=0.5, help="Backend delay per request (sleep backend).")
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--out", default="bench/serve_scaling.json")
    args = p.parse_args()

    import ray
    from ray import serve

    from wbray.serve import build_application, load_serve_config

    server = None
    backend_url = None
    if args.backend == "sleep":
        _SleepHandler.delay_s = args.sleep_s
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SleepHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        backend_url = f"http://127.0.0.1:{server.server_address[1]}/v1"

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024**2, log_to_driver=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    results: dict[str, Any] = {}
    try:
        for replicas in (1, 2):
            config = load_serve_config({"name": "bench", "models": [_model(args, replicas, backend_url)]})
            started = time.perf_counter()
            serve.run(build_application(config), name="bench", route_prefix="/", blocking=False)
            deploy_s = time.perf_counter() - started
            results[f"replicas_{replicas}"] = {**_load(url, args), "deploy_s": round(deploy_s, 2)}
            print(f"{replicas} replica(s): {results[f'replicas_{replicas}']}", file=sys.stderr)
            serve.delete("bench")
    finally:
        serve.shutdown()
        ray.shutdown()
        if server is not None:
            server.shutdown()
    one, two = results["replicas_1"], results["replicas_2"]
    report = {
        "benchmark": "P4 serve scaling",
        "backend": args.backend,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        **results,
        "scaling_ratio_rps": round(two["rps"] / one["rps"], 3),
        "p50_ratio": round(two["p50_s"] / one["p50_s"], 3),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
