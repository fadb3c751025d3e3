"""`wbray run` as a user runs it: a subprocess killed mid-run, resumed, exported, aggregated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.on_disk import expected_ids, rows_on_disk
from wbray.api import load
from wbray.dataset import load_benchmark
from wbray.storage import RunLayout, list_files, read_manifest, read_scores

pytestmark = pytest.mark.integration


def _write_config(path: Path, model_dir: Path, indices: list[int]) -> None:
    path.write_text(
        f"""
data:
  indices: {indices}
candidates:
  - name: smol
    engine: {{backend: transformers, model: "{model_dir}", batch_size: 1}}
    sampling: {{max_tokens: 16, temperature: 0}}
generation:
  resources: {{actors: 1, num_cpus: 1, batch_size: 1}}
judge:
  name: strict
  engine: {{backend: transformers, model: "{model_dir}", batch_size: 5}}
  constrained: true
  reason_max_chars: 30
  sampling: {{max_tokens: 136, seed: 3}}
  resources: {{actors: 1, num_cpus: 1, batch_size: 5}}
ray: {{num_cpus: 2, no_progress_timeout_s: 300}}
# Small verdict parts, so that some are durable when the run is killed mid-scoring.
run: {{part_rows: 5}}
"""
    )


def _wbray(*args: str, **kw: object) -> subprocess.Popen[str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "wbray.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # so the kill takes the driver's local Ray cluster down with it
        **kw,  # type: ignore[arg-type]
    )


def test_killed_run_resumes_without_recomputing_or_duplicating(
    official_dir: Path, smollm2_dir: Path, tmp_path: Path
) -> None:
    bench = load_benchmark(official_dir)
    indices = sorted(
        q.index for q in sorted((q for q in bench.queries if q.lang == "en"), key=lambda q: len(q.query))[:3]
    )
    cfg = tmp_path / "cfg.yaml"
    _write_config(cfg, smollm2_dir, indices)
    out = tmp_path / "run"
    args = ("run", str(cfg), "--data-dir", str(official_dir), "--out", str(out))

    proc = _wbray(*args)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and not list_files(str(out / "scores"), ".parquet"):
        if proc.poll() is not None:
            pytest.fail(
                f"run ended before it could be interrupted:\n{proc.stdout.read() if proc.stdout else ''}"
            )
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # a crash: no cleanup, no manifest update
    proc.wait(timeout=30)

    layout = RunLayout.at(str(out))
    crashed = read_manifest(layout)
    assert crashed is not None and crashed.status == "running"  # a crashed run never reads as complete
    gens_before = {p: os.path.getmtime(p) for p in list_files(str(out / "generations"), ".parquet")}
    scores_before = read_scores(layout, "strict").to_pandas()
    # Counted on disk, every row of every part: a row written twice would show here, not in a reader.
    on_disk = rows_on_disk(str(out / "scores"))
    assert not on_disk.duplicates and len(on_disk.ids) == len(scores_before)
    assert 0 < len(on_disk.ids) < 15

    done = _wbray(*args)
    output, _ = done.communicate(timeout=600)
    assert done.returncode == 0, output
    assert "WritingBench leaderboard" in output and "smol" in output

    scores = read_scores(layout, "strict").to_pandas()
    expected = expected_ids(load(cfg, data_dir=str(official_dir)))
    assert len(expected.generations) == 3 and len(expected.scores) == 15
    rows_on_disk(str(out / "generations")).assert_exact(expected.generations, "generations")
    rows_on_disk(str(out / "scores")).assert_exact(expected.scores, "verdicts")
    # Work finished before the crash was kept, not redone.
    for part, mtime in gens_before.items():
        assert os.path.getmtime(part) == mtime
    kept = scores.set_index("row_id").loc[scores_before["row_id"], "created_at"]
    assert (kept.to_numpy() == scores_before["created_at"].to_numpy()).all()
    manifest = read_manifest(layout)
    assert manifest is not None and manifest.status == "complete" and manifest.last is not None
    (score_stage,) = [s for s in manifest.last.stages if s.stage == "score"]
    assert score_stage.computed == score_stage.planned == 15 - len(on_disk.ids)
    assert score_stage.skipped == len(on_disk.ids)
    assert (out / "reports" / "strict" / "leaderboard.xlsx").is_file()

    # Export to upstream's formats; aggregating the export equals aggregating the run.
    exp = tmp_path / "export"
    exported = _wbray("export", str(out), "--out", str(exp))
    assert exported.wait(timeout=120) == 0
    assert (exp / "responses" / "smol.jsonl").is_file() and (exp / "scores" / "smol.jsonl").is_file()
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for src, dst in ((str(out), a), (str(exp), b)):
        p = _wbray("aggregate", src, "--data-dir", str(official_dir), "--csv", str(dst))
        assert p.wait(timeout=120) == 0, p.stdout.read() if p.stdout else ""
    # The export names the model by file stem, the run by its config name: both "smol".
    pd.testing.assert_frame_equal(pd.read_csv(a), pd.read_csv(b))
