"""P4 diagnosis: where one replica's missing throughput went (the measurement behind the P4 fix).

Usage:  python bench/serve_overhead.py [--requests 32] [--out bench/serve_overhead.json]

The P4 load (sleep backend 0.5 s, 2 in flight per replica, 8 closed-loop clients, 1 replica) under
four setups, in one run; for each, req/s as a fraction of the backend's capacity, how busy the
backend was, and how long a freed backend slot stayed empty before the next request arrived:

* ``http``: the old layout (``max_ongoing_requests`` = the 2 the backend runs), over HTTP through
  the gateway: waiting requests sit in the gateway's Serve router;
* ``handle``: the same layout, called through a DeploymentHandle straight from this process (no
  HTTP, no gateway): if the gateway hop were the cost, this would be faster;
* ``router-20ms``: the old layout with Serve's router retry back-off capped at 20 ms instead of
  0.5 s (``request_router_config``): if the back-off is the cost, this closes most of the gap;
* ``replica``: wbray's layout (the replica admits 8 and queues them itself).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.server
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

# The sibling benchmark's sleep backend and its bookkeeping (run from the repository root).
from serve_scaling import _backend_use, _free_port, _model, _SleepHandler

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

VARIANTS = ("http", "handle", "router-20ms", "replica")


def _closed_loop(send: Any, requests: int, clients: int) -> tuple[list[float], float, float]:
    def one(i: int) -> float:
        started = time.perf_counter()
        send(i)
        return time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients)))  # warm-up
        started = time.perf_counter()
        latencies = sorted(pool.map(one, range(requests)))
        ended = time.perf_counter()
    return latencies, started, ended


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--out", default="bench/serve_overhead.json")
    args = p.parse_args()
    # What _model() reads: the P4 defaults.
    model_args = argparse.Namespace(backend="sleep", per_replica=2, max_tokens=8)

    import ray
    import requests
    from ray import serve

    from wbray.serve import build_application, load_serve_config
    from wbray.serve._config import DeploymentSettings

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SleepHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    backend_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024**2, log_to_driver=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    capacity = model_args.per_replica / _SleepHandler.delay_s
    results: dict[str, Any] = {}
    original = DeploymentSettings.serve_options

    def fast_router(self: DeploymentSettings) -> dict[str, Any]:
        return {
            **original(self),
            "request_router_config": {"initial_backoff_s": 0.005, "max_backoff_s": 0.02},
        }

    try:
        for variant in VARIANTS:
            admission = "replica" if variant == "replica" else "caller"
            model = _model(model_args, 1, backend_url, admission)
            config = load_serve_config({"name": "bench", "models": [model]})
            # Only this diagnosis overrides Serve's router back-off; wbray never does.
            patch = mock.patch.object(DeploymentSettings, "serve_options", fast_router)
            with patch if variant == "router-20ms" else contextlib.nullcontext():
                app = build_application(config)
            serve.run(app, name="bench", route_prefix="/", blocking=False)
            if variant == "handle":
                handle = serve.get_deployment_handle("chat-m", app_name="bench")

                def send(i: int, handle: Any = handle) -> None:
                    payload = {"messages": [{"role": "user", "content": f"w {i}"}], "sampling": {}}
                    handle.complete.remote(payload).result(timeout_s=600)
            else:

                def send(i: int) -> None:
                    body = {"model": "m", "messages": [{"role": "user", "content": f"w {i}"}]}
                    requests.post(url, json=body, timeout=600).raise_for_status()

            latencies, since, until = _closed_loop(send, args.requests, args.concurrency)
            rps = args.requests / (until - since)
            results[variant] = {
                "rps": round(rps, 3),
                "of_capacity": round(rps / capacity, 3),
                "p50_s": round(statistics.median(latencies), 4),
                "p99_s": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 4),
                **_backend_use(since, until, model_args.per_replica),
            }
            print(f"{variant}: {results[variant]}", file=sys.stderr)
            serve.delete("bench")
    finally:
        serve.shutdown()
        ray.shutdown()
        server.shutdown()
    report = {
        "benchmark": "P4 diagnosis (serve overhead)",
        "settings": {**vars(args), "backend_capacity_rps": capacity},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        **results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
