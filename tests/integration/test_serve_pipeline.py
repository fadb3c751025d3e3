"""Pipelines use served models: `wbray run` scoring through a served judge — in the cluster via a
DeploymentHandle, from outside via HTTP — gives the same scores and aggregate as in-pipeline
scoring with the same engine and (greedy) sampling."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from wbray.aggregate import aggregate
from wbray.config import load_config
from wbray.dataset import load_benchmark
from wbray.storage import RunLayout, read_evaluations

pytestmark = pytest.mark.integration

APP = "pipe"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(ray_cluster: None, smollm2_dir: Path, official_dir: Path) -> Iterator[str]:
    from ray import serve

    from wbray.serve import build_application, load_serve_config

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = load_serve_config(
        {
            "name": APP,
            "models": [
                {
                    "name": "judge-lm",
                    # batch_size 1 on both sides: greedy decoding is then bit-identical.
                    "engine": {"backend": "transformers", "model": str(smollm2_dir), "batch_size": 1},
                    "deployment": {"resources": {"num_cpus": 0.5}},
                }
            ],
            # The critic endpoint, judging with the same template, schema and sampling as below.
            "critic": {
                "model": "judge-lm",
                "template": "official",
                "data_dir": str(official_dir),
                "constrained": True,
                "reason_max_chars": 30,
                "max_reasks": 2,
                "sampling": {"temperature": 0, "max_tokens": 136},
            },
        }
    )
    serve.run(build_application(app), name=APP, route_prefix="/", blocking=False)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        serve.shutdown()


def _judge(name: str, engine: str) -> list[str]:
    return [
        f"judge.name={name}",
        f"judge.engine={engine}",
        "judge.constrained=true",
        "judge.reason_max_chars=30",
        "judge.sampling={temperature: 0, max_tokens: 136}",
        "judge.resources={actors: 1, num_cpus: 0.25}",
    ]


def test_served_judge_matches_in_pipeline_judge(
    served: str, smollm2_dir: Path, official_dir: Path, tmp_path: Path
) -> None:
    import wbray

    full = load_benchmark(official_dir)
    shortest = min((q for q in full.queries if q.lang == "en"), key=lambda q: len(q.query))
    bench = full.select(indices=[shortest.index])
    base = [
        f"candidates=[{{name: smol, engine: {{backend: transformers, model: '{smollm2_dir}', "
        "batch_size: 1}, "
        "sampling: {temperature: 0, max_tokens: 16}}]",
        "generation.resources={actors: 1, num_cpus: 0.5}",
        f"data.data_dir={official_dir}",
        f"data.indices=[{shortest.index}]",
    ]
    out = str(tmp_path / "run")
    local_engine = f"{{backend: transformers, model: '{smollm2_dir}', batch_size: 1}}"
    wbray.evaluate(load_config(None, base + _judge("local", local_engine)), out=out)
    handle = f"{{backend: serve, app: {APP}, model: judge-lm}}"
    wbray.score(load_config(None, base + _judge("handle", handle)), out=out)
    http = f"{{backend: openai, base_url: '{served}', model: judge-lm}}"
    wbray.score(load_config(None, base + _judge("http", http)), out=out)

    layout = RunLayout.at(out)
    frames = {
        j: read_evaluations(layout, j).sort_values("criterion").reset_index(drop=True)
        for j in ("local", "handle", "http")
    }
    assert len(frames["local"]) == 5 and set(frames["local"]["status"]) == {"ok"}
    for j in ("handle", "http"):
        pd.testing.assert_frame_equal(
            frames["local"][["criterion", "score", "reason", "status"]],
            frames[j][["criterion", "score", "reason", "status"]],
        )
        a = aggregate(frames["local"], bench.queries, bench.requirements).official
        b = aggregate(frames[j], bench.queries, bench.requirements).official
        pd.testing.assert_frame_equal(a, b)

    # The critic endpoint (/v1/score), asked about the same answer, gives the same verdicts.
    import requests

    from wbray.storage import read_generations

    answer = read_generations(layout).to_pandas()["response"].iloc[0]
    body = {"index": shortest.index, "data_version": full.data_version, "response": answer, "criteria": "all"}
    r = requests.post(f"{served.removesuffix('/v1')}/v1/score", json=body, timeout=300)
    assert r.status_code == 200, r.text
    got = {c["criterion"]: (c["score"], c["reason"], c["status"]) for c in r.json()["items"][0]["results"]}
    want = {row.criterion: (row.score, row.reason, row.status) for row in frames["local"].itertuples()}
    assert got == want
