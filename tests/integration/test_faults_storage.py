"""A writer killed in the middle of writing a part (issue 11), locally and on ``s3://``.

A real writer — a process calling wbray's own ``write_scores`` in a loop, parts of a few MB each
— is SIGKILLed while a part is being written: locally once its temporary file is seen on disk
(so the kill provably lands between the write and the rename), on S3 just after it starts the PUT of a part.
What it leaves must never read as a part, let alone as complete:

* every visible part is whole (it opens, with all its rows); the local temp file is hidden;
* ``wbray aggregate`` and ``wbray export`` of the run read exactly what was committed before the
  writer started: the writer's rows name an answer that *is* current (same ``gen_row_id``), so
  the commit markers alone keep them out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest

from tests.helpers.faults import REPO
from tests.helpers.on_disk import rows_on_disk
from tests.helpers.s3_server import RestartableS3
from wbray.cli import main
from wbray.dataset import load_benchmark
from wbray.storage import (
    RunLayout,
    commit_stage,
    write_generations,
    write_manifest,
    write_scores,
)

pytestmark = pytest.mark.integration

ROWS_PER_PART = 2000
#: The writer: parts of ROWS_PER_PART verdicts with 2 kB reasons (a few MB after compression),
#: one after another, announcing each write of bytes ("writing") and each part done ("done").
WRITER = """
import random, string, sys
import wbray.storage._fs as fs
from wbray.storage import RunLayout, write_scores

real = fs.write_bytes
def announced(uri, data, storage=None):
    print("writing", flush=True)
    real(uri, data, storage)
fs.write_bytes = announced

layout, gen, crit, rows = RunLayout.at(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
for part in range(1, 1000):
    write_scores(layout, "j", "m", [
        {"row_id": f"late-{part}-{i}", "gen_row_id": gen, "model": "m", "judge": "j", "index": 1,
         "criterion": crit, "repeat": part * rows + i, "score": 1.0, "status": "ok",
         "reason": "".join(random.choices(string.ascii_letters, k=2000))}
        for i in range(rows)
    ])
    print("done", flush=True)
"""


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    server = RestartableS3()
    server.start()
    old = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = server.endpoint
    boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket="wbray-crash")
    yield server.endpoint
    server.stop()
    if old is None:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    else:
        os.environ["AWS_ENDPOINT_URL"] = old


def _committed_run(root: str) -> tuple[str, str]:
    """A complete run of one answer and its five verdicts; returns (answer id, a criterion)."""
    layout = RunLayout.at(root)
    query = load_benchmark("example").get(1)
    gen = "g-1"
    write_manifest(layout, {"status": "complete", "config": {"candidates": [{"name": "m"}]}})
    answer = {"row_id": gen, "model": "m", "index": 1, "sample": 0, "response": "an answer", "status": "ok"}
    write_generations(layout, "m", [answer])
    verdicts = [
        {
            "row_id": f"s-{k}",
            "gen_row_id": gen,
            "model": "m",
            "judge": "j",
            "index": 1,
            "criterion": c.name,
            "repeat": 0,
            "score": float(3 + k),
            "reason": "committed",
            "status": "ok",
        }
        for k, c in enumerate(query.checklist)
    ]
    write_scores(layout, "j", "m", verdicts)
    commit_stage(layout.generations("m"), layout.storage, current=[gen])
    commit_stage(layout.scores("j", "m"), layout.storage)
    return gen, query.checklist[0].name


def _read_back(root: str, tmp: Path, name: str) -> tuple[pd.DataFrame, dict[str, bytes]]:
    board, exported = tmp / f"{name}.csv", tmp / name
    assert main(["aggregate", root, "--data-dir", "example", "--csv", str(board)]) == 0
    assert main(["export", root, "--out", str(exported)]) == 0
    files = {str(p.relative_to(exported)): p.read_bytes() for p in exported.rglob("*") if p.is_file()}
    return pd.read_csv(board), files


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_writer_killed_mid_write_leaves_no_part_that_reads_as_written(
    where: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(tmp_path / "run") if where == "local" else f"s3://wbray-crash/{request.node.name}"
    if where == "s3":
        request.getfixturevalue("s3")
    gen, crit = _committed_run(root)
    board0, export0 = _read_back(root, tmp_path, "before")
    capsys.readouterr()
    assert len(board0) == 1 and export0  # the committed answer and verdicts are there to read

    scores_dir = RunLayout.at(root).scores("j", "m")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, root, gen, crit, str(ROWS_PER_PART)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert writer.stdout is not None
    try:
        done = 0
        while done < 2:  # two whole parts first: the kill then lands on a later one
            line = writer.stdout.readline()
            assert line, "the writer ended on its own"
            done += line.strip() == "done"
        if where == "local":
            # Kill as soon as a temporary file is on disk: between its write and its rename.
            deadline = time.monotonic() + 120
            while not any(p.name.startswith(".") for p in Path(scores_dir).iterdir()):
                assert time.monotonic() < deadline, "never saw a part being written"
            os.kill(writer.pid, signal.SIGKILL)
        else:
            while writer.stdout.readline().strip() != "writing":
                pass
            time.sleep(0.05)  # the PUT of a few MB is under way
            os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait(timeout=30)

    # Every part that is visible is whole: the committed one (5 rows) and whole writer parts.
    found = rows_on_disk(scores_dir)
    sizes = sorted(found.parts.values())
    assert sizes[0] == 5 and set(sizes[1:]) == {ROWS_PER_PART} and len(sizes) >= 3, found.parts
    assert not found.duplicates
    if where == "local":
        assert found.hidden, "the kill did not land mid-write"  # the interrupted write's temp file

    board1, export1 = _read_back(root, tmp_path, "after")
    capsys.readouterr()
    pd.testing.assert_frame_equal(board1, board0)
    assert export1 == export0
