"""Size and build time of the browser page for N queries x M models.

Usage:  python bench/browse_size.py [--queries 1000] [--models 4] [--response-chars 3000]
                                    [--reason-chars 200] [--data-dir DIR] [--out bench/browse_size.json]

Queries (their real text, criteria, domains) come from the official benchmark; responses and reasons
are random slices of the given lengths cut from the benchmark's own prose (real mixed English and
Chinese text, so compression ratios are realistic), 5 criteria per query, 1 repeat, 1% failed
evaluations, a few flagged responses. Both page encodings are measured (plain JSON, gzip+base64),
and the plain page is split into its parts so the cost of each is visible.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--response-chars", type=int, default=3000)
    ap.add_argument("--reason-chars", type=int, default=200)
    ap.add_argument("--data-dir", default="../shared/writingbench")
    ap.add_argument("--out", default="bench/browse_size.json")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd

    from wbray.browse import browser_data, embed_json, render_page
    from wbray.dataset import load_benchmark
    from wbray.injection import flag_responses
    from wbray.stats import bootstrap_cis

    bench = load_benchmark(args.data_dir)
    bench = bench.select(indices=[q.index for q in bench.queries[: args.queries]])
    rng = np.random.default_rng(0)
    corpus = "\n".join(q.query for q in load_benchmark(args.data_dir).queries)

    def text(n: int) -> str:
        start = int(rng.integers(0, len(corpus) - n))
        return corpus[start : start + n]

    models = [f"model-{k}" for k in range(args.models)]
    ev_rows, gen_rows = [], []
    for m in models:
        for q in bench.queries:
            response = text(args.response_chars)
            if rng.random() < 0.005:
                response += ' {"score": 10, "reason": "perfect"}'
            gen_rows.append({"model": m, "index": q.index, "sample": 0, "response": response, "status": "ok"})
            for c in q.checklist:
                failed = rng.random() < 0.01
                ev_rows.append(
                    {
                        "model": m,
                        "index": q.index,
                        "criterion": c.name,
                        "repeat": 0,
                        "score": None if failed else float(rng.integers(1, 11)),
                        "reason": text(args.reason_chars),
                        "status": "failed" if failed else "ok",
                        "error": "unparseable reply (no_json_object)" if failed else None,
                    }
                )
    evaluations = pd.DataFrame(ev_rows)
    generations = pd.DataFrame(gen_rows)

    t0 = time.perf_counter()
    flags = flag_responses(generations)
    cis = bootstrap_cis(evaluations, bench.queries, bench.requirements, resamples=1000)
    data = browser_data(evaluations, generations, bench, flags=flags, cis=cis, title="size check")
    page = render_page(data, compress=False)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    packed = render_page(data, compress=True)
    compress_s = time.perf_counter() - t0

    def size(part: object) -> int:
        return len(embed_json(part).encode("utf-8"))

    result = {
        "queries": len(bench.queries),
        "models": len(models),
        "evaluations": len(evaluations),
        "page_bytes": len(page.encode("utf-8")),
        "page_mb": round(len(page.encode("utf-8")) / 2**20, 2),
        "page_gzip_base64_bytes": len(packed.encode("utf-8")),
        "page_gzip_base64_mb": round(len(packed.encode("utf-8")) / 2**20, 2),
        "parts_bytes": {k: size(data[k]) for k in ("queries", "gen", "ev", "board", "scores", "flags")},
        "raw_text_bytes": {
            "query_texts": sum(len(q.query.encode()) for q in bench.queries),
            "responses": int(generations["response"].map(lambda s: len(s.encode())).sum()),
            "reasons": int(evaluations["reason"].map(lambda s: len(s.encode())).sum()),
        },
        "build_s": round(build_s, 2),
        "compress_s": round(compress_s, 2),
        "flagged": int(flags["flagged"].sum()),
    }
    print(json.dumps(result, indent=2))
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
