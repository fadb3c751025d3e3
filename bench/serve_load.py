"""P6: Serve under load — below and above capacity, chat and critic, with the Serve processes' memory.

Usage:  python bench/serve_load.py [--seconds 10] [--out bench/serve_load.json]

The application of tests/integration/test_serve_faults.py, measured instead of asserted: a chat
deployment whose openai engine calls a local server that sleeps ``--sleep-s`` per request, two at a
time (capacity ``2 / sleep_s`` req/s); the replica admits 4 and Serve queues 4 more per caller, so
beyond 8 outstanding requests the gateway answers 503 ``overloaded``. The critic scores through a
second, wide chat deployment (judge replies take 0.05 s) and admits 2 requests + 2 queued.

Phases, each with closed-loop clients on 127.0.0.1 (a client pauses 0.2 s after a 503):

* chat below capacity: 3 clients;
* chat above capacity: 24 clients, RSS of every Serve process sampled every 0.5 s;
* critic below capacity: 2 clients, each request 6 items x 5 criteria (30 judge calls);
* critic burst: 12 such requests at once.

Reported: req/s (and as a fraction of capacity), p50/p99 of answered and of refused requests,
status/code counts, and per-process RSS growth (highest sample minus first) during overload.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import http.server
import json
import os
import platform
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

JUDGE_REPLY = json.dumps({"score": 7, "reason": "fine"})


class _Backend(http.server.BaseHTTPRequestHandler):
    """OpenAI-compatible: sleeps ``delay_s`` per chat call, 0.05 s per judge call (response_format)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else +40 ms per response (delayed ACK), which is not Serve's
    delay_s = 0.3

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        judge = "response_format" in body
        time.sleep(0.05 if judge else self.delay_s)
        payload = json.dumps(
            {
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": JUDGE_REPLY if judge else "ok"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict[str, Any]) -> tuple[int, str | None, float]:
    import requests

    started = time.perf_counter()
    r = requests.post(url, json=body, timeout=120)
    elapsed = time.perf_counter() - started
    code = None
    if r.status_code != 200:
        try:
            code = r.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = "not-json"
    return r.status_code, code, elapsed


def _clients(n: int, seconds: float, send: Any) -> tuple[list[tuple[int, str | None, float]], float]:
    started = time.perf_counter()
    out: list[tuple[int, str | None, float]] = []
    lock = threading.Lock()

    def client() -> None:
        while time.perf_counter() - started < seconds:
            result = send()
            with lock:
                out.append(result)
            if result[0] == 503:
                time.sleep(0.2)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        for f in [pool.submit(client) for _ in range(n)]:
            f.result()
    return out, time.perf_counter() - started


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)


def _summary(results: list[tuple[int, str | None, float]], wall: float) -> dict[str, Any]:
    ok = [t for s, _, t in results if s == 200]
    refused = [t for s, _, t in results if s == 503]
    return {
        "requests": len(results),
        "answered_rps": round(len(ok) / wall, 3),
        "statuses": dict(collections.Counter(f"{s} {c or ''}".strip() for s, c, _ in results)),
        "answered_p50_s": _pct(ok, 0.5),
        "answered_p99_s": _pct(ok, 0.99),
        "refused_p50_s": _pct(refused, 0.5),
        "refused_p99_s": _pct(refused, 0.99),
    }


def _serve_processes() -> dict[int, str]:
    import psutil
    import ray

    node = ray._private.worker._global_node  # this driver's node: only our cluster's processes
    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    out = {}
    for child in raylet.children(recursive=True):
        name = child.name()
        if name.startswith(("ray::ServeController", "ray::ProxyActor", "ray::ServeReplica")):
            out[child.pid] = name
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="Length of each timed phase.")
    p.add_argument("--sleep-s", type=float, default=0.3, help="Backend time per chat request.")
    p.add_argument("--out", default="bench/serve_load.json")
    args = p.parse_args()

    import psutil
    import ray
    from ray import serve

    from wbray.serve import build_application, load_serve_config

    _Backend.delay_s = args.sleep_s
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{backend.server_address[1]}/v1"

    def model(name: str, in_flight: int, admitted: int, queued: int) -> dict[str, Any]:
        engine = {"backend": "openai", "base_url": base, "model": "m", "max_retries": 0}
        return {
            "name": name,
            "engine": {**engine, "max_concurrency": in_flight},
            "max_batch_size": 1,
            "deployment": {
                "resources": {"num_cpus": 0.1},
                "max_ongoing_requests": admitted,
                "max_queued_requests": queued,
            },
        }

    config = load_serve_config(
        {
            "name": "load",
            "models": [model("cap", 2, 4, 4), model("judge", 16, 32, 64)],
            "critic": {
                "model": "judge",
                "template": "builtin",
                "constrained": True,
                "max_reasks": 0,
                "deployment": {
                    "resources": {"num_cpus": 0.1},
                    "max_ongoing_requests": 2,
                    "max_queued_requests": 2,
                },
            },
        }
    )
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024**2, log_to_driver=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    chat_url = f"http://127.0.0.1:{port}/v1/chat/completions"
    score_url = f"http://127.0.0.1:{port}/v1/score"
    chat_body = {"model": "cap", "messages": [{"role": "user", "content": "hi"}]}
    checklist = [{"name": f"C{j}", "criteria_description": f"criterion {j}"} for j in range(5)]
    score_body = {
        "items": [
            {"query": f"Write line {i}.", "response": f"Line {i}.", "criteria": checklist} for i in range(6)
        ]
    }
    capacity = 2 / args.sleep_s
    report: dict[str, Any] = {
        "benchmark": "P6 serve load",
        "settings": {**{k: v for k, v in vars(args).items() if k != "out"}, "chat_capacity_rps": capacity},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    try:
        serve.run(build_application(config), name="load", route_prefix="/", blocking=False)
        _clients(3, 2.0, lambda: _post(chat_url, chat_body))  # warm-up
        results, wall = _clients(3, args.seconds, lambda: _post(chat_url, chat_body))
        report["chat_below_capacity"] = {"clients": 3, **_summary(results, wall)}
        print(report["chat_below_capacity"], file=sys.stderr)

        titles = _serve_processes()
        samples: dict[int, list[int]] = {pid: [] for pid in titles}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                for pid in titles:
                    with contextlib.suppress(psutil.Error):  # a process that ended meanwhile
                        samples[pid].append(psutil.Process(pid).memory_info().rss)
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        results, wall = _clients(24, args.seconds, lambda: _post(chat_url, chat_body))
        stop.set()
        sampler.join()
        above = {"clients": 24, **_summary(results, wall)}
        above["answered_of_capacity"] = round(above["answered_rps"] / capacity, 3)
        above["rss_mib"] = {
            f"{titles[pid]} ({pid})": {
                "first": round(rss[0] / 2**20, 1),
                "growth": round((max(rss) - rss[0]) / 2**20, 2),
            }
            for pid, rss in samples.items()
            if rss
        }
        report["chat_above_capacity"] = above
        print(above, file=sys.stderr)

        results, wall = _clients(2, args.seconds, lambda: _post(score_url, score_body))
        below = {"clients": 2, "criteria_per_request": 30, **_summary(results, wall)}
        below["criteria_per_s"] = round(below["answered_rps"] * 30, 1)
        report["critic_below_capacity"] = below
        print(below, file=sys.stderr)
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            started = time.perf_counter()
            burst = list(pool.map(lambda _: _post(score_url, score_body), range(12)))
            wall = time.perf_counter() - started
        report["critic_burst"] = {"requests_at_once": 12, **_summary(burst, wall)}
        print(report["critic_burst"], file=sys.stderr)
    finally:
        serve.shutdown()
        ray.shutdown()
        backend.shutdown()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
