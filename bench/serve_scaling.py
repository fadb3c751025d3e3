"""P4: Serve scaling — requests/s and p50/p99 latency at 1 and 2 replicas, against backend capacity.

Usage:  python bench/serve_scaling.py [--backend sleep|smollm2] [--requests 48] [--concurrency 8]
                                      [--admission replica,caller] [--out bench/serve_scaling.json]

The same closed-loop load (``--concurrency`` clients, ``--requests`` in all, over HTTP through the
gateway) runs against the chat deployment pinned at 1 replica, then at 2, in one run; the results
are the throughput as a fraction of what the backend allows and the 2-vs-1 ratio. Backends:

* ``sleep`` (default): the chat deployment's openai engine calls a local server that waits
  ``--sleep-s`` per request; each replica keeps ``--per-replica`` requests at the backend at once,
  so capacity is ``replicas * per_replica / sleep_s`` req/s (4 and 8 with the defaults). The server
  records when each request arrives and leaves, so the report also says how busy the backend was
  and how long a freed slot stayed empty. No CPU contention: this measures Serve.
* ``smollm2``: the real SmolLM2-135M on CPU (one torch thread per replica, ``--max-tokens``). On a
  2-core box both replicas share the cores with Ray itself, so expect well under 2.0.

Admission (``--admission``; each layout given is measured, in order):

* ``replica`` (wbray's layout): a replica admits ``4 * per_replica`` requests
  (``max_ongoing_requests``) and runs ``per_replica`` of them on the engine at once
  (``max_concurrent_batches`` / the openai engine's ``max_concurrency``); the rest wait in the
  replica and start the moment a slot frees.
* ``caller``: ``max_ongoing_requests = per_replica``, so waiting requests sit in the caller's
  (gateway's) Serve router, which retries a full replica with back-off of up to 0.5 s. This was the
  layout before P4 was fixed; it is kept to show the difference in one run.
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
    # The response goes out as two writes (headers, body); with Nagle on, the body waits for the
    # client's delayed ACK of the headers: +40 ms per request (measured), which is not Serve's.
    disable_nagle_algorithm = True
    delay_s = 0.5
    #: (arrived, left) per request, perf_counter seconds.
    trace: list[tuple[float, float]] = []  # noqa: RUF012 (one server per process)
    lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        arrived = time.perf_counter()
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
        with self.lock:
            self.trace.append((arrived, time.perf_counter()))


def _backend_use(since: float, until: float, slots: int) -> dict[str, Any]:
    """How busy the sleep backend was in a window, and how long a freed slot waited for work."""
    with _SleepHandler.lock:
        trace = sorted(t for t in _SleepHandler.trace if t[0] >= since)
    busy = sum(min(left, until) - arrived for arrived, left in trace)
    arrivals = [arrived for arrived, _ in trace]
    gaps = []
    for _, left in trace:
        later = [a for a in arrivals if a >= left - 0.002]
        if later:
            gaps.append(max(0.0, later[0] - left))
    return {
        "backend_busy": round(busy / ((until - since) * slots), 3),
        "refill_gap_mean_s": round(statistics.mean(gaps), 4) if gaps else None,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _model(
    args: argparse.Namespace, replicas: int, backend_url: str | None, admission: str
) -> dict[str, Any]:
    in_flight = args.per_replica
    admitted = in_flight if admission == "caller" else 4 * in_flight
    model: dict[str, Any] = {"name": "m", "sampling": {"temperature": 0, "max_tokens": args.max_tokens}}
    if args.backend == "sleep":
        model["engine"] = {
            "backend": "openai",
            "base_url": backend_url,
            "model": "m",
            "max_retries": 0,
            "max_concurrency": in_flight,
        }
        # Each request its own engine call: an HTTP backend gains nothing from batches.
        model["max_batch_size"] = 1
        cpus = 0.1
    else:
        from wbray.engines._smollm2 import smollm2_model_dir

        model["engine"] = {"backend": "transformers", "model": str(smollm2_model_dir()), "torch_threads": 1}
        model["max_concurrent_batches"] = 1  # the engine runs one generate() at a time anyway
        cpus = 0.5
    model["deployment"] = {
        "resources": {"num_cpus": cpus},
        "autoscaling": {"min_replicas": replicas, "max_replicas": replicas},
        "max_ongoing_requests": admitted,
        "max_queued_requests": -1,  # a benchmark measures queueing, it must not refuse
    }
    return model


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
        "started": started,
        "ended": started + wall,
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
    p.add_argument("--per-replica", type=int, default=2, help="Requests each replica runs at once.")
    p.add_argument("--sleep-s", type=float, default=0.5, help="Backend delay per request (sleep backend).")
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument(
        "--admission",
        default="replica,caller",
        help="Comma-separated layouts to measure: replica (wbray's), caller (before the P4 fix).",
    )
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
    layouts = [a.strip() for a in args.admission.split(",") if a.strip()]
    results: dict[str, Any] = {}
    try:
        for admission in layouts:
            for replicas in (1, 2):
                model = _model(args, replicas, backend_url, admission)
                config = load_serve_config({"name": "bench", "models": [model]})
                started = time.perf_counter()
                serve.run(build_application(config), name="bench", route_prefix="/", blocking=False)
                deploy_s = time.perf_counter() - started
                run = _load(url, args)
                since, until = run.pop("started"), run.pop("ended")
                run["deploy_s"] = round(deploy_s, 2)
                if args.backend == "sleep":
                    capacity = replicas * args.per_replica / args.sleep_s
                    run["backend_capacity_rps"] = capacity
                    run["of_capacity"] = round(run["rps"] / capacity, 3)
                    run.update(_backend_use(since, until, replicas * args.per_replica))
                results.setdefault(admission, {})[f"replicas_{replicas}"] = run
                print(f"{admission} admission, {replicas} replica(s): {run}", file=sys.stderr)
                serve.delete("bench")
    finally:
        serve.shutdown()
        ray.shutdown()
        if server is not None:
            server.shutdown()
    report: dict[str, Any] = {
        "benchmark": "P4 serve scaling",
        "backend": args.backend,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    for admission, runs in results.items():
        one, two = runs["replicas_1"], runs["replicas_2"]
        report[admission] = {
            **runs,
            "scaling_ratio_rps": round(two["rps"] / one["rps"], 3),
            "p50_ratio": round(two["p50_s"] / one["p50_s"], 3),
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
