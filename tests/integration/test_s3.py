"""Results in an S3-compatible store (moto's server on 127.0.0.1): runs, aggregation, commit
protocol, clear errors, and no secrets in logs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest

from tests.conftest import TEST_AWS_SECRET
from tests.helpers.scripted_openai import ScriptedOpenAIServer, api_run_config, reply
from wbray.cli import main
from wbray.config import load_config
from wbray.storage import (
    RunLayout,
    list_files,
    read_manifest,
    write_generations,
    write_manifest,
    write_scores,
)

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    old = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="wbray-results")
    yield endpoint
    server.stop()
    if old is None:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    else:
        os.environ["AWS_ENDPOINT_URL"] = old


def _script(body: dict[str, Any], attempt: int) -> Any:
    msgs = body["messages"]
    if msgs[0]["role"] != "system":
        return reply(f"Answer to: {msgs[-1]['content'][:40]}")
    # A deterministic verdict per prompt, so two runs give identical numbers.
    return reply(f'{{"score": {1 + len(msgs[-1]["content"]) % 10}, "reason": "scripted"}}')


def _config(tmp: Path, base_url: str) -> Path:
    return api_run_config(tmp, base_url)


def test_run_to_s3_equals_local_and_aggregates_back(
    ray_cluster: None, s3: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import wbray

    with ScriptedOpenAIServer(_script) as srv:
        config = load_config(_config(tmp_path, srv.base_url), ["data.limit=4"])
        wbray.evaluate(config, out="s3://wbray-results/runs/r1")
        wbray.evaluate(config, out=str(tmp_path / "local-run"))

    keys = list_files("s3://wbray-results/runs/r1", "")
    assert "s3://wbray-results/runs/r1/manifest.json" in keys
    assert any("/scores/judge=api-judge/model=api-model/part-" in k for k in keys)
    assert any(k.endswith("/scores/judge=api-judge/model=api-model/_COMMITTED.json") for k in keys)
    manifest = read_manifest(RunLayout.at("s3://wbray-results/runs/r1"))
    assert manifest is not None and manifest.status == "complete"

    s3_csv, local_csv = tmp_path / "s3.csv", tmp_path / "local.csv"
    assert (
        main(
            [
                "aggregate",
                "s3://wbray-results/runs/",
                "--data-dir",
                "example",
                "--csv",
                str(s3_csv),
                "--out",
                "s3://wbray-results/reports/r1",
            ]
        )
        == 0
    )
    assert (
        main(["aggregate", str(tmp_path / "local-run"), "--data-dir", "example", "--csv", str(local_csv)])
        == 0
    )
    pd.testing.assert_frame_equal(pd.read_csv(s3_csv), pd.read_csv(local_csv))
    reports = list_files("s3://wbray-results/reports/r1", "")
    assert {r.rsplit("/", 1)[-1] for r in reports} == {
        "leaderboard.xlsx",
        "leaderboard.per_query.parquet",
        "leaderboard.md",
        "leaderboard.csv",
        "leaderboard.html",
    }
    html = (
        boto3.client("s3")
        .get_object(Bucket="wbray-results", Key="reports/r1/leaderboard.html")["Body"]
        .read()
    )
    assert b"<svg" in html and b"api-model" in html

    assert main(["runs", "list", "s3://wbray-results/runs/", "--json"]) == 0
    out = capfd.readouterr()
    assert '"status": "complete"' in out.out and "s3://wbray-results/runs/r1" in out.out
    assert TEST_AWS_SECRET not in out.out + out.err


def test_a_job_calling_the_api_takes_the_endpoint_from_yaml_alone(s3: str, tmp_path: Path) -> None:
    """jobs/run.py (the public API, nothing else) in a fresh process whose environment names no S3
    endpoint: `storage.endpoint_url` in the YAML must reach the driver and every Ray worker."""
    with ScriptedOpenAIServer(_script) as srv:
        cfg = _config(tmp_path, srv.base_url)
        cfg.write_text(cfg.read_text() + f"storage: {{endpoint_url: '{s3}', addressing_style: path}}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "RAY_ADDRESS"))}
        env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
        repo = Path(__file__).resolve().parents[2]
        done = subprocess.run(
            [
                sys.executable,
                str(repo / "jobs" / "run.py"),
                str(cfg),
                "--limit",
                "2",
                "--out",
                "s3://wbray-results/runs/from-job",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "private local Ray cluster" in done.stdout
    layout = RunLayout.at("s3://wbray-results/runs/from-job")  # read back through this process's env
    manifest = read_manifest(layout)
    assert manifest is not None and manifest.status == "complete"
    assert manifest.row_counts["scores"].total == 10 and manifest.config["storage"]["endpoint_url"] == s3
    keys = list_files(layout.root, ".parquet")
    assert any("/generations/model=api-model/" in k for k in keys) and any("/scores/" in k for k in keys)
    assert TEST_AWS_SECRET not in done.stdout + done.stderr + manifest.to_json().decode()


def test_crashed_writer_leaves_nothing_that_reads_as_complete(s3: str, tmp_path: Path) -> None:
    run = "s3://wbray-results/runs/crashed"
    layout = RunLayout.at(run)
    # What a writer killed mid-run leaves behind: a "running" manifest and uncommitted parts.
    write_manifest(layout, {"status": "running", "config": {"candidates": [{"name": "m"}]}})
    write_generations(layout, "m", [{"row_id": "g1", "model": "m", "index": 1, "sample": 0, "status": "ok"}])
    write_scores(
        layout,
        "j",
        "m",
        [
            {
                "row_id": "s1",
                "model": "m",
                "judge": "j",
                "index": 1,
                "criterion": "x",
                "repeat": 0,
                "score": 7.0,
                "status": "ok",
            }
        ],
    )
    from wbray.cli._runs import describe_runs

    (info,) = [r for r in describe_runs("s3://wbray-results/runs/") if r["run"] == run]
    assert info["status"] == "running"
    from wbray.storage import read_evaluations

    assert read_evaluations(layout, "j").empty  # uncommitted parts are ignored by readers


def test_clear_errors_before_any_work(s3: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, "http://127.0.0.1:9/v1")
    # Missing bucket.
    assert main(["run", str(cfg), "--out", "s3://no-such-bucket-wbray/r"]) == 1
    err = capsys.readouterr().err
    assert "bucket 'no-such-bucket-wbray' does not exist" in err and err.count("\n") == 1
    # Server down.
    old = os.environ["AWS_ENDPOINT_URL"]
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{_free_port()}"
    try:
        assert main(["run", str(cfg), "--out", "s3://wbray-results/r"]) == 1
        err = capsys.readouterr().err
        assert "cannot reach the S3 endpoint" in err and err.count("\n") == 1
    finally:
        os.environ["AWS_ENDPOINT_URL"] = old
    assert TEST_AWS_SECRET not in err


def test_wrong_credentials_are_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}  # this server checks credentials
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    old = os.environ.get("AWS_ENDPOINT_URL")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
        cfg = _config(tmp_path, "http://127.0.0.1:9/v1")
        assert main(["run", str(cfg), "--out", "s3://wbray-results/r"]) == 1
        err = capsys.readouterr().err
        assert "access denied" in err and "check the AWS credentials" in err
        assert TEST_AWS_SECRET not in err
    finally:
        if old is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = old
        proc.terminate()
        proc.wait(timeout=10)
