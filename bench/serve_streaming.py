"""P5: Serve token streaming — time to first token vs the whole answer, real SmolLM2 over HTTP.

Usage:  python bench/serve_streaming.py [--requests 8] [--max-tokens 64] [--out bench/serve_streaming.json]

One chat deployment (SmolLM2-135M-Instruct on CPU, one torch thread, one replica) behind the
gateway on 127.0.0.1. The same prompts go one at a time (no queueing), each twice, greedy:

* streamed (``stream: true``): time to the first content chunk (TTFT), time to the end, and the
  number of content chunks;
* not streamed: time to the whole answer.

The result is TTFT as a fraction of the non-streamed latency, measured in one run. Before token
streaming, a streamed answer came as one chunk after the whole generation, so that fraction was
about 1.0. The streamed text must equal the non-streamed one (greedy), which the bench checks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

PROMPTS = [
    "Write a haiku about rain.",
    "Name three colours and say why you like them.",
    "Explain what a river is to a child.",
    "Describe a sunset in two sentences.",
    "Give me a short tip for learning to cook.",
    "What is a good name for a cat? Explain.",
    "Write a one-line poem about the sea.",
    "Tell me something interesting about trees.",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _streamed(url: str, body: dict[str, Any]) -> dict[str, Any]:
    import requests

    started = time.perf_counter()
    first: float | None = None
    pieces: list[str] = []
    with requests.post(url, json={**body, "stream": True}, stream=True, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[len(b"data: ") :])
            content = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
            if content:
                if first is None:
                    first = time.perf_counter() - started
                pieces.append(content)
    total = time.perf_counter() - started
    return {"ttft_s": first if first is not None else total, "total_s": total, "pieces": pieces}


def _whole(url: str, body: dict[str, Any]) -> tuple[float, str, int]:
    import requests

    started = time.perf_counter()
    r = requests.post(url, json=body, timeout=600)
    r.raise_for_status()
    data = r.json()
    return (
        time.perf_counter() - started,
        data["choices"][0]["message"]["content"],
        data["usage"]["completion_tokens"],
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=8, help="Prompts (each sent streamed and not).")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--out", default="bench/serve_streaming.json")
    args = p.parse_args()

    import ray
    from ray import serve

    from wbray.engines._smollm2 import smollm2_model_dir
    from wbray.serve import build_application, load_serve_config

    model = str(smollm2_model_dir())
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024**2, log_to_driver=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    config = load_serve_config(
        {
            "name": "bench",
            "models": [
                {
                    "name": "m",
                    "engine": {"backend": "transformers", "model": model, "torch_threads": 1},
                    "sampling": {"temperature": 0, "max_tokens": args.max_tokens, "repetition_penalty": 1.15},
                    "max_concurrent_batches": 1,
                    "deployment": {"resources": {"num_cpus": 0.5}},
                }
            ],
        }
    )
    rows = []
    try:
        serve.run(build_application(config), name="bench", route_prefix="/", blocking=False)
        warm = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        _whole(url, warm)  # first call: lazy init in the replica
        _streamed(url, warm)
        for i in range(args.requests):
            body = {"model": "m", "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]}
            latency, text, tokens = _whole(url, body)
            streamed = _streamed(url, body)
            joined = "".join(streamed["pieces"])
            if joined != text:
                print(f"warning: streamed text differs for prompt {i}", file=sys.stderr)
            rows.append(
                {
                    "tokens": tokens,
                    "whole_s": round(latency, 4),
                    "ttft_s": round(streamed["ttft_s"], 4),
                    "stream_total_s": round(streamed["total_s"], 4),
                    "chunks": len(streamed["pieces"]),
                    "same_text": joined == text,
                }
            )
            print(rows[-1], file=sys.stderr)
    finally:
        serve.shutdown()
        ray.shutdown()
    ttft = [r["ttft_s"] for r in rows]
    whole = [r["whole_s"] for r in rows]
    report = {
        "benchmark": "P5 serve streaming (time to first token)",
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "requests": rows,
        "ttft_p50_s": _pct(ttft, 0.5),
        "ttft_p99_s": _pct(ttft, 0.99),
        "whole_p50_s": _pct(whole, 0.5),
        "whole_p99_s": _pct(whole, 0.99),
        "ttft_over_whole_p50": round(statistics.median(t / w for t, w in zip(ttft, whole, strict=True)), 3),
        "chunks_per_answer_p50": statistics.median(r["chunks"] for r in rows),
        "tokens_per_answer_p50": statistics.median(r["tokens"] for r in rows),
        "all_texts_equal": all(r["same_text"] for r in rows),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "requests"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
