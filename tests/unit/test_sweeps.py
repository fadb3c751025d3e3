"""Sweeps without Ray: the schema and grid, cell-state decisions, and the sweep command driving a
scripted jobs API (the seam where the Ray Job Submission API plugs in) to its leaderboard."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from wbray.aggregate import aggregate, read_upstream_scores
from wbray.cli import main
from wbray.config import content_hash
from wbray.dataset import example_dir, load_benchmark
from wbray.errors import ConfigError, WbrayError
from wbray.storage import RunLayout, commit_stage, write_scores
from wbray.sweeps import (
    CellState,
    JobRequest,
    JobView,
    SweepLayout,
    baseline_deltas,
    cancel_sweep,
    decide,
    expand,
    load_sweep,
    read_state,
    run_sweep,
    submission_id,
    sweep_key,
    sweep_status,
    sweep_yaml,
)
from wbray.sweeps._state import start_attempt
from wbray.sweeps._store import write_state, write_sweep

REPO = Path(__file__).resolve().parents[2]
PAPER_GRID = REPO / "configs" / "sweeps" / "paper-grid.yaml"
EXAMPLE_RESULTS = example_dir() / "results"


# -- schema and grid --------------------------------------------------------------------------------


def test_paper_grid_expands_to_one_cell_per_model_with_the_critic() -> None:
    sweep = load_sweep(PAPER_GRID)
    cells = expand(sweep)
    assert [c.name for c in cells] == [
        "qwen2.5-7b-instruct--writingbench-critic",
        "qwen2.5-72b-instruct--writingbench-critic",
        "llama-3.1-8b-instruct--writingbench-critic",
        "llama-3.3-70b-instruct--writingbench-critic",
        "mistral-large-instruct--writingbench-critic",
        "deepseek-r1--writingbench-critic",
    ]
    assert sweep.baseline == "qwen2.5-7b-instruct" and sweep.max_concurrent == 4
    for cell in cells:
        (cand,) = cell.config.candidates
        assert cand.name == cell.candidate and cell.config.judge.name == "writingbench-critic"
        # The base's settings reach every cell.
        assert cell.config.ray.address == "auto" and cell.config.ray.no_progress_timeout_s == 3600
        assert cell.group == "writingbench-critic"
    # Stored self-contained, the sweep loads back equal (no includes, base inline).
    text = sweep_yaml(sweep)
    assert "include" not in text
    assert load_sweep(yaml.safe_load(text)) == sweep


def _write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _candidate(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "engine": {"backend": "transformers", "batch_size": 1}, **extra}


JUDGE = {"name": "j", "engine": {"backend": "transformers"}, "constrained": True}


def _sweep_file(tmp_path: Path, **over: Any) -> Path:
    """``sweeps/s.yaml`` next to ``base.yaml``, ``models/b.yaml`` and ``judges/k.yaml`` (relative refs)."""
    doc: dict[str, Any] = {
        "name": "s",
        "base": "../base.yaml",
        "candidates": [_candidate("a"), {"include": "../models/b.yaml"}],
        "judges": [JUDGE],
        "baseline": "a",
    }
    doc.update(over)
    _write(tmp_path / "base.yaml", {"data": {"data_dir": "example"}, "ray": {"num_cpus": 2}})
    _write(tmp_path / "models" / "b.yaml", {"candidates": [_candidate("b")]})
    _write(tmp_path / "judges" / "k.yaml", {"judge": {**JUDGE, "name": "k"}})
    return _write(tmp_path / "sweeps" / "s.yaml", doc)


def test_grid_axes_and_names(tmp_path: Path) -> None:
    path = _sweep_file(
        tmp_path,
        judges=[JUDGE, {"include": "../judges/k.yaml"}],
        subsets=[{"name": "en", "lang": ["en"]}, {"name": "first3", "limit": 3}],
        samples=[1, 2],
    )
    sweep = load_sweep(path)
    cells = expand(sweep)
    assert len(cells) == 2 * 2 * 2 * 2
    by_name = {c.name: c for c in cells}
    cell = by_name["b--k--en--s2"]
    assert (cell.candidate, cell.judge, cell.subset, cell.samples) == ("b", "k", "en", 2)
    assert cell.config.data.lang == ["en"] and cell.config.data.data_dir == "example"
    assert cell.config.data.limit is None  # a subset sets only what it names
    assert cell.config.generation.samples == 2 and cell.config.ray.num_cpus == 2
    assert cell.group == "k--en--s2"
    assert by_name["a--j--first3--s1"].config.data.limit == 3
    # Names are deterministic and the config hash changes with the config, not with the run place.
    again = {c.name: c.config_hash for c in expand(load_sweep(path))}
    assert again == {c.name: c.config_hash for c in cells}
    assert len({c.config_hash for c in cells}) == len(cells)


def test_judges_default_to_the_bases(tmp_path: Path) -> None:
    path = _sweep_file(tmp_path, judges=[])
    base = tmp_path / "base.yaml"
    _write(base, {"data": {"data_dir": "example"}, "judge": JUDGE})
    assert [c.name for c in expand(load_sweep(path))] == ["a--j", "b--j"]


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({"max_concurent": 2}, "unknown key 'max_concurent'; did you mean 'max_concurrent'?"),
        ({"max_concurrent": 0}, "max_concurrent: Input should be greater than or equal to 1"),
        (
            {"candidates": [{"name": "a", "engine": {"backend": "transformers", "modle": "x"}}]},
            "candidates[0]: unknown key 'engine.modle'; did you mean 'model'?",
        ),
        ({"candidates": [{"include": "../nope.yaml"}]}, "candidates[0]: include"),
        ({"candidates": [{"include": "../models/b.yaml", "name": "x"}]}, "only `include`, not name"),
        ({"judges": [{"include": "../models/b.yaml"}]}, "judges[0]: ../models/b.yaml has no judge"),
        ({"judges": [{**JUDGE, "sampling": {"temperature": -1}}]}, "judges[0]: sampling.temperature"),
        ({"baseline": "zzz"}, "baseline: 'zzz' is not a candidate (candidates: a, b)"),
        (
            {"candidates": [_candidate("b"), {"include": "../models/b.yaml"}]},
            "candidates: names must be unique",
        ),
        ({"samples": [0]}, "samples: every samples value must be at least 1"),
        ({"subsets": [{"name": "x", "lang": ["fr"]}]}, "subsets.0.lang.0"),
        ({"name": "a/b"}, "name: use letters, digits"),
        ({"candidates": []}, "candidates: List should have at least 1 item"),
        ({"base": "../missing.yaml"}, "base: "),
        (
            # Two cells with one name: a--b x c and a x b--c.
            {
                "candidates": [_candidate("a--b"), _candidate("a")],
                "judges": [JUDGE, {**JUDGE, "name": "b--j"}],
            },
            "cell a--b--j: two cells share this name",
        ),
        ({"candidates": [_candidate("x" * 120)], "judges": [{**JUDGE, "name": "y" * 90}]}, "over 200"),
        (
            {"job": {"runtime_env": {"env_vars": {"WBRAY_DATA_DIR": "/d"}}}},
            "job.runtime_env: env_vars: WBRAY_DATA_DIR cannot be set per job",
        ),
    ],
)
def test_bad_sweeps_fail_with_one_line_naming_file_and_field(
    tmp_path: Path, over: dict[str, Any], expected: str
) -> None:
    if "candidates" in over and "baseline" not in over:
        over["baseline"] = None
    path = _sweep_file(tmp_path, **over)
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert expected in message, message
    assert "\n" not in message


def test_base_must_not_hold_candidates_or_a_run_directory(tmp_path: Path) -> None:
    path = _sweep_file(tmp_path, candidates=[_candidate("a")])
    _write(tmp_path / "base.yaml", {"candidates": [_candidate("z")]})
    with pytest.raises(ConfigError, match=r"base: lists candidates"):
        load_sweep(path)
    _write(tmp_path / "base.yaml", {"run": {"out": "runs/x"}})
    with pytest.raises(ConfigError, match=r"base: sets run.out"):
        load_sweep(path)
    # An error inside the base names the base file.
    _write(tmp_path / "base.yaml", {"judge": {"repeat": 2}})
    with pytest.raises(ConfigError, match=r"base.yaml: unknown key 'judge.repeat'"):
        load_sweep(path)


def test_cli_refuses_a_bad_sweep_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _sweep_file(tmp_path, baseline="zzz")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--address", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"wbray: error: {path}: baseline: 'zzz'") and "\n" not in err
    assert "Traceback" not in err and not out.exists()


# -- cell state decisions ---------------------------------------------------------------------------


def _state(status: str, attempt: int = 1, sid: str | None = "wbray-k-c-1", **kw: Any) -> CellState:
    return CellState(cell="c", status=status, attempt=attempt, submission_id=sid, config_hash="h", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "job", "resubmit", "action", "attempt", "written"),
    [
        (None, None, True, "submit", 1, None),
        (_state("succeeded"), None, True, "skip", 1, None),
        (_state("failed", reason="boom"), "failed", True, "submit", 2, None),
        (_state("failed", reason="boom"), "running", True, "wait", 1, None),  # its driver still ending
        (_state("failed"), None, False, "skip", 1, None),
        (_state("running"), "running", True, "wait", 1, None),
        (_state("submitted"), "pending", True, "wait", 1, None),
        # Recorded before submitting, never reached the cluster: the same id again.
        (_state("submitted"), "missing", True, "submit", 1, None),
        (_state("running"), "missing", True, "submit", 2, "failed"),
        (_state("running"), "stopped", True, "submit", 2, "failed"),
        (_state("running"), "stopped", False, "skip", 1, "failed"),
        (_state("running"), "succeeded", False, "skip", 1, "failed"),  # ended without its last word
        (_state("running", sid=None), None, True, "submit", 2, "failed"),  # an in-process run died
    ],
)
def test_decide(
    state: CellState | None, job: Any, resubmit: bool, action: str, attempt: int, written: str | None
) -> None:
    d = decide(
        state, job, "h", jobs_mode=True, resubmit=resubmit, job_message="Job was intentionally stopped."
    )
    assert (d.action, d.attempt) == (action, attempt), d
    assert (d.state.status if d.state else None) == written
    if written and job == "stopped":
        assert d.state is not None and "intentionally stopped" in (d.state.reason or "")


def test_decide_changed_config_and_mixed_modes() -> None:
    d = decide(_state("succeeded"), None, "other", jobs_mode=True)
    assert (d.action, d.attempt) == ("submit", 2) and "config changed" in d.note
    # A job submitted elsewhere is never run a second time in-process.
    d = decide(_state("running", address="http://head:8265"), None, "h", jobs_mode=False)
    assert d.action == "blocked" and "--address http://head:8265" in d.note


def test_submission_ids_are_deterministic_and_new_per_attempt() -> None:
    key = sweep_key("s", "s3://b/sweeps/s")
    assert key == sweep_key("s", "s3://b/sweeps/s") != sweep_key("s", "s3://b/sweeps/t")
    assert submission_id(key, "a--j", 1) == f"wbray-{key}-a--j-1" != submission_id(key, "a--j", 2)
    history = start_attempt(
        _state("failed", reason="x"), "c", 2, submission="id2", address=None, config_hash="h"
    )
    assert history.status == "submitted" and history.attempt == 2
    assert [(h.attempt, h.status, h.reason) for h in history.history] == [(1, "failed", "x")]


# -- the sweep command against a scripted jobs API --------------------------------------------------


class ScriptedJobs:
    """A jobs API whose jobs do what a script says, on this machine, without Ray.

    A cell job reports RUNNING on its first look (writing ``running`` as the real entry point
    does), then on its second ends as scripted per attempt: ``ok`` stores the cell's scores (the
    example benchmark's upstream results) and records ``succeeded`` before SUCCEEDED; ``die`` ends
    FAILED without a word (a killed driver); ``hang`` never ends. The report job runs the real
    report entry point in this process.
    """

    address = "http://scripted:8265"

    def __init__(self, script: Mapping[str, list[str]] | None = None) -> None:
        self.script = dict(script or {})
        self.jobs: dict[str, dict[str, Any]] = {}
        self.submitted: list[str] = []
        self.stopped: list[str] = []
        self.most_in_flight = 0

    def submit(self, request: JobRequest) -> bool:
        if request.submission_id in self.jobs:
            return False
        meta = request.metadata
        self.submitted.append(request.submission_id)
        job: dict[str, Any] = {"meta": dict(meta), "looks": 0, "status": "PENDING", "request": request}
        self.jobs[request.submission_id] = job
        if meta["wbray_cell"] == "report":
            from wbray.sweeps.report import main as report_main

            args = shlex.split(request.entrypoint)[3:]
            job["status"] = "SUCCEEDED" if report_main(args) == 0 else "FAILED"
        in_flight = sum(1 for j in self.jobs.values() if j["status"] in ("PENDING", "RUNNING"))
        self.most_in_flight = max(self.most_in_flight, in_flight)
        return True

    def view(self, sid: str) -> JobView | None:
        job = self.jobs.get(sid)
        if job is None:
            return None
        if job["status"] in ("PENDING", "RUNNING"):
            job["looks"] += 1
            self._advance(job)
        return JobView(job["status"], job.get("message"))

    def stop(self, sid: str) -> bool:
        self.stopped.append(sid)
        job = self.jobs[sid]
        job["status"], job["message"] = "STOPPED", "Job was intentionally stopped."
        return True

    def _advance(self, job: dict[str, Any]) -> None:
        meta = job["meta"]
        cell, attempt = meta["wbray_cell"], int(meta["wbray_attempt"])
        layout = SweepLayout.at(meta["wbray_out"])
        outcomes = self.script.get(cell, [])
        outcome = outcomes[attempt - 1] if attempt <= len(outcomes) else "ok"
        if job["looks"] == 1:
            job["status"] = "RUNNING"
            state = read_state(layout, cell)
            assert state is not None and state.status == "submitted" and state.attempt == attempt
            write_state(layout, state.updated(status="running", progress={"score": [0, 60]}))
        elif outcome == "ok":
            _store_example_scores(layout, cell)
            state = read_state(layout, cell)
            assert state is not None
            write_state(layout, state.updated(status="succeeded", progress={}))
            job["status"] = "SUCCEEDED"
        elif outcome == "die":
            job["status"], job["message"] = "FAILED", "Job entrypoint command failed with exit code -9"


def _store_example_scores(layout: SweepLayout, cell: str) -> None:
    """Store the example results of the cell's candidate as its scores (committed)."""
    candidate, judge = cell.split("--")[:2]
    ev = read_upstream_scores(EXAMPLE_RESULTS / f"{candidate}.jsonl")
    rows = [
        {
            "row_id": content_hash([candidate, r.index, r.criterion, r.repeat]),
            "gen_row_id": content_hash([candidate, r.index]),
            "model": candidate,
            "judge": judge,
            "index": r.index,
            "criterion": r.criterion,
            "repeat": r.repeat,
            "score": r.score,
            "status": "ok",
        }
        for r in ev.itertuples()
    ]
    run = RunLayout.at(layout.cell_dir(cell))
    write_scores(run, judge, candidate, rows)
    commit_stage(run.scores(judge, candidate))


def _example_sweep(tmp_path: Path, **over: Any) -> Path:
    doc: dict[str, Any] = {
        "name": "demo",
        "base": {"data": {"data_dir": "example"}},
        "candidates": [
            {"name": m, "responses": str(EXAMPLE_RESULTS / f"{m}.jsonl")}
            for m in ("demo-model-a", "demo-model-b")
        ],
        "judges": [JUDGE],
        "baseline": "demo-model-a",
        "max_concurrent": 1,
    }
    doc.update(over)
    return _write(tmp_path / "demo.yaml", doc)


def test_jobs_mode_submits_each_cell_once_and_writes_the_leaderboard_with_deltas(tmp_path: Path) -> None:
    path = _example_sweep(tmp_path, job={"num_cpus": 0.2, "runtime_env": {"env_vars": {"HF_HOME": "/hf"}}})
    out = tmp_path / "sweep"
    jobs = ScriptedJobs()
    outcome = run_sweep(path, out=str(out), jobs=jobs, poll_s=0.001)
    key = sweep_key("demo", str(out))
    cells = ["demo-model-a--j", "demo-model-b--j"]
    assert outcome.statuses == dict.fromkeys(cells, "succeeded") and not outcome.failed
    assert jobs.submitted[:2] == [submission_id(key, c, 1) for c in cells]
    assert jobs.submitted[2].startswith(f"wbray-{key}-report-") and len(jobs.submitted) == 3
    assert jobs.most_in_flight == 1  # max_concurrent
    request = jobs.jobs[jobs.submitted[0]]["request"]
    assert request.entrypoint.startswith("python -m wbray.sweeps.cell ") and request.num_cpus == 0.2
    # This wbray travels with the job, next to what the sweep adds to the runtime env.
    assert request.runtime_env == {"env_vars": {"HF_HOME": "/hf"}, "py_modules": [str(REPO / "wbray")]}

    # What a job runs is on storage: the self-contained sweep and each cell's config.
    layout = SweepLayout.at(str(out))
    cell_cfg = yaml.safe_load(Path(layout.cell_config(cells[0])).read_text())
    assert cell_cfg["run"]["out"] == layout.cell_dir(cells[0])
    assert [c["name"] for c in cell_cfg["candidates"]] == ["demo-model-a"]

    # One leaderboard for both cells, equal to aggregating the two result files directly.
    report = out / "reports" / "j"
    assert {p.name for p in report.iterdir()} >= {
        "leaderboard.xlsx",
        "leaderboard.csv",
        "deltas.csv",
        "deltas.md",
    }
    bench = load_benchmark("example")
    direct = aggregate(
        pd.concat([read_upstream_scores(EXAMPLE_RESULTS / f"demo-model-{m}.jsonl") for m in "ab"]),
        bench.queries,
        bench.requirements,
    )
    board = pd.read_csv(report / "leaderboard.csv")
    assert list(board["Model"]) == ["demo-model-a", "demo-model-b"]
    assert board["Overall"].tolist() == pytest.approx(direct.official["Overall"].tolist())
    deltas = pd.read_csv(report / "deltas.csv").set_index("Model")
    scaled = direct.scaled().set_index("Model")
    assert deltas.loc["demo-model-a", "Δ Overall"] == 0
    assert deltas.loc["demo-model-b", "Δ Overall"] == pytest.approx(
        scaled.loc["demo-model-b", "Overall"] - scaled.loc["demo-model-a", "Overall"]
    )
    assert any(c.startswith("Δ ") and c != "Δ Overall" for c in deltas.columns)  # per domain

    # Re-running the same command submits no cell again (only the report job).
    again = run_sweep(path, out=str(out), jobs=jobs, poll_s=0.001)
    assert again.statuses == outcome.statuses and len(jobs.submitted) == 4
    assert jobs.submitted[3].startswith(f"wbray-{key}-report-")


def test_a_failed_cell_is_resubmitted_alone_as_its_next_attempt(tmp_path: Path) -> None:
    path = _example_sweep(tmp_path, max_concurrent=2)
    out = tmp_path / "sweep"
    jobs = ScriptedJobs({"demo-model-b--j": ["die"]})
    first = run_sweep(path, out=str(out), jobs=jobs, poll_s=0.001)
    key = sweep_key("demo", str(out))
    assert first.statuses == {"demo-model-a--j": "succeeded", "demo-model-b--j": "failed"}
    assert "exit code -9" in first.failed["demo-model-b--j"]
    assert jobs.most_in_flight == 2
    # The leaderboard holds what succeeded so far.
    assert pd.read_csv(out / "reports" / "j" / "leaderboard.csv")["Model"].tolist() == ["demo-model-a"]

    before = list(jobs.submitted)
    second = run_sweep(path, out=str(out), jobs=jobs, poll_s=0.001)
    new = [s for s in jobs.submitted if s not in before]
    assert new[0] == submission_id(key, "demo-model-b--j", 2) and new[1].startswith(f"wbray-{key}-report-")
    assert len(new) == 2
    assert second.statuses == dict.fromkeys(second.statuses, "succeeded")
    state = read_state(SweepLayout.at(str(out)), "demo-model-b--j")
    assert state is not None and state.attempt == 2
    assert [(h.attempt, h.status) for h in state.history] == [(1, "failed")]
    assert pd.read_csv(out / "reports" / "j" / "deltas.csv")["Model"].tolist() == [
        "demo-model-a",
        "demo-model-b",
    ]


def test_a_killed_sweep_command_is_resumed_without_double_submission(tmp_path: Path) -> None:
    path = _example_sweep(tmp_path, max_concurrent=2)
    out = tmp_path / "sweep"
    layout = SweepLayout.at(str(out))
    jobs = ScriptedJobs()
    key = sweep_key("demo", str(out))
    a, b = "demo-model-a--j", "demo-model-b--j"
    # As a command killed mid-way leaves it: a's job submitted and running; b recorded as
    # submitted, but the command died before the jobs API got the request.
    sid_a, sid_b = submission_id(key, a, 1), submission_id(key, b, 1)
    sweep = load_sweep(path)
    hashes = write_sweep(layout, sweep, expand(sweep), key)
    for cell, sid in ((a, sid_a), (b, sid_b)):
        write_state(
            layout,
            start_attempt(None, cell, 1, submission=sid, address=jobs.address, config_hash=hashes[cell]),
        )
    jobs.submit(_request(layout, a, sid_a))
    jobs.view(sid_a)  # running

    outcome = run_sweep(path, out=str(out), jobs=jobs, poll_s=0.001)
    assert outcome.statuses == {a: "succeeded", b: "succeeded"}
    # a was followed, b submitted under the same id it was recorded with: one job per cell.
    assert [s for s in jobs.submitted if "report" not in s] == [sid_a, sid_b]


def test_a_stopped_cell_whose_job_is_still_ending_is_resubmitted_once_it_has_ended(tmp_path: Path) -> None:
    # A stopped job records "failed" at once, then takes seconds to end: the next attempt waits for
    # it, since two attempts writing at once could store a row twice.
    path = _example_sweep(tmp_path)
    out = tmp_path / "sweep"
    layout = SweepLayout.at(str(out))
    key = sweep_key("demo", str(out))
    a, b = "demo-model-a--j", "demo-model-b--j"
    jobs = ScriptedJobs({a: ["hang"]})
    sweep = load_sweep(path)
    hashes = write_sweep(layout, sweep, expand(sweep), key)
    sid = submission_id(key, a, 1)
    write_state(
        layout, start_attempt(None, a, 1, submission=sid, address=jobs.address, config_hash=hashes[a])
    )
    jobs.submit(_request(layout, a, sid))
    jobs.view(sid)
    stopping = read_state(layout, a)
    assert stopping is not None
    write_state(layout, stopping.updated(status="failed", reason="stopped (SIGTERM: ray job stop)"))
    original = jobs.view

    def view(job_id: str) -> JobView | None:
        if job_id == sid and jobs.jobs[sid]["status"] == "RUNNING" and jobs.jobs[sid]["looks"] >= 3:
            jobs.stop(sid)  # its driver is gone now
        return original(job_id)

    jobs.view = view  # type: ignore[method-assign]
    lines: list[str] = []
    outcome = run_sweep(path, out=str(out), jobs=jobs, say=lines.append, poll_s=0.001)
    assert outcome.statuses == {a: "succeeded", b: "succeeded"}
    cells = [s for s in jobs.submitted if "-report-" not in s]
    assert cells == [sid, submission_id(key, a, 2), submission_id(key, b, 1)]
    assert f"{a}: waiting for job {sid} to end, then resubmitting" in lines
    assert any(line.startswith(f"{a}: resubmitting (attempt 1 failed: stopped") for line in lines), lines


def _request(layout: SweepLayout, cell: str, sid: str) -> JobRequest:
    return JobRequest(
        submission_id=sid,
        entrypoint="python -m wbray.sweeps.cell",
        runtime_env={},
        num_cpus=0.1,
        num_gpus=0,
        memory_mb=None,
        metadata={"wbray_cell": cell, "wbray_attempt": "1", "wbray_out": layout.root, "wbray_sweep": "demo"},
    )


def test_cancel_stops_jobs_in_flight_and_status_shows_the_grid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _example_sweep(tmp_path, max_concurrent=2)
    out = tmp_path / "sweep"
    a, b = "demo-model-a--j", "demo-model-b--j"
    jobs = ScriptedJobs({b: ["hang"]})

    # Cancel from "another terminal" while b hangs: the follower sees the mark and b's job stop.
    original = jobs.view

    def view(sid: str) -> JobView | None:
        result = original(sid)
        if b in sid and jobs.jobs[sid]["looks"] == 3 and not jobs.stopped:
            assert cancel_sweep(str(out), jobs=jobs) == [sid]
        return result

    jobs.view = view  # type: ignore[method-assign]
    outcome = run_sweep(path, out=str(out), jobs=jobs, poll_s=0.001)
    assert outcome.cancelled and outcome.statuses == {a: "succeeded", b: "failed"}
    assert outcome.failed[b] == "cancelled (wbray sweep cancel)"
    assert jobs.stopped == [submission_id(sweep_key("demo", str(out)), b, 1)]
    assert not any("report" in s for s in jobs.submitted)  # a cancelled sweep writes no leaderboard

    _, record, rows = sweep_status(str(out))
    assert record is not None and record.address == jobs.address and record.cancelled_at is not None
    assert [(r.cell, r.status, r.attempt) for r in rows] == [(a, "succeeded", 1), (b, "failed", 1)]
    assert main(["sweep", "status", str(out)]) == 0
    shown = capsys.readouterr().out
    assert a in shown and "cancelled (wbray sweep cancel)" in shown and "1 failed, 1 succeeded" in shown


def test_baseline_deltas_overall_and_per_domain() -> None:
    table = pd.DataFrame(
        {
            "Model": ["base", "m"],
            "Overall": [50.0, 55.5],
            "Count": [3, 3],
            "Domain1_Academic & Engineering": [40.0, 45.0],
            "Domain1_Finance & Business": [60.0, None],
        }
    )
    d = baseline_deltas(table, "base").set_index("Model")
    assert d.loc["m", "Δ Overall"] == pytest.approx(5.5) and d.loc["base", "Δ Overall"] == 0
    assert d.loc["m", "Δ Academic & Engineering"] == pytest.approx(5.0)
    assert pd.isna(d.loc["m", "Δ Finance & Business"])  # nothing to compare: empty, not 0
    with pytest.raises(WbrayError, match="baseline 'zz' is not on the leaderboard"):
        baseline_deltas(table, "zz")


def test_a_stopped_cell_job_records_its_stop_first(tmp_path: Path) -> None:
    import os
    import signal

    from wbray.sweeps._cell import CellStopped, StateWriter
    from wbray.sweeps.cell import _StopRecorder

    layout = SweepLayout.at(str(tmp_path))
    state = start_attempt(None, "c", 1, submission="sid", address=None, config_hash="h")
    write_state(layout, state)
    original = signal.getsignal(signal.SIGTERM)
    try:
        # Before the run connects to Ray: the recorder is the only handler. (Earlier tests in this
        # process may have left Ray's own; ignoring is the safe baseline if the recorder is missing.)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop = _StopRecorder()
        stop.attach(StateWriter(layout, state.updated(status="running")))
        with pytest.raises(CellStopped):
            os.kill(os.getpid(), signal.SIGTERM)
        recorded = read_state(layout, "c")
        assert recorded is not None and recorded.status == "failed"
        assert recorded.reason == "stopped (SIGTERM: ray job stop or wbray sweep cancel)"

        # After ray.init installed its own handler (SystemExit): the next line puts the recorder in
        # front of it, and Ray's handler still runs.
        write_state(layout, state)
        stop = _StopRecorder()
        stop.attach(StateWriter(layout, state.updated(status="running")))

        def rays(signum: int, _frame: object) -> None:
            raise SystemExit(signum)

        signal.signal(signal.SIGTERM, rays)
        stop.say("plan: 2 answers and 10 verdicts to compute")
        with pytest.raises(SystemExit):
            os.kill(os.getpid(), signal.SIGTERM)
        recorded = read_state(layout, "c")
        assert recorded is not None and recorded.status == "failed" and "SIGTERM" in (recorded.reason or "")
    finally:
        signal.signal(signal.SIGTERM, original)


class _RefusingClient:
    """A jobs client whose head has no job agent for the first ``refusals`` submissions."""

    def __init__(self, refusals: int, error: str) -> None:
        self.refusals = refusals
        self.error = error
        self.submitted: list[str] = []

    def submit_job(self, *, submission_id: str, **_kwargs: Any) -> str:
        if self.refusals:
            self.refusals -= 1
            raise RuntimeError(self.error)
        self.submitted.append(submission_id)
        return submission_id


def _job_request() -> Any:
    from wbray.sweeps._jobs import JobRequest

    return JobRequest("wbray-x-c-1", "python -m wbray.sweeps.cell", {}, 1.0, 0.0, None, {})


def test_a_submission_the_head_refuses_for_now_is_tried_again() -> None:
    from wbray.sweeps._jobs import RayJobs

    no_agent = (
        "Request failed with status code 500: No available agent to submit job, please try again later.."
    )
    waits: list[float] = []
    client = _RefusingClient(2, no_agent)
    jobs = RayJobs("http://head:8265", retry_delays_s=(1, 2, 4), client=client, sleep=waits.append)
    assert jobs.submit(_job_request()) is True
    assert client.submitted == ["wbray-x-c-1"] and waits == [1, 2]

    # Refused past the last wait: one line naming the API and Ray's reason.
    client = _RefusingClient(5, no_agent)
    jobs = RayJobs("http://head:8265", retry_delays_s=(1, 2), client=client, sleep=waits.append)
    with pytest.raises(WbrayError, match=r"^Ray jobs API at http://head:8265: the head's job agent") as info:
        jobs.submit(_job_request())
    assert "No available agent" in str(info.value) and "--dashboard-agent-listen-port" in str(info.value)
    assert "\n" not in str(info.value) and client.submitted == []

    # Any other error is not waited on.
    waits.clear()
    client = _RefusingClient(1, "Request failed with status code 400: bad runtime_env")
    jobs = RayJobs("http://head:8265", retry_delays_s=(1, 2), client=client, sleep=waits.append)
    with pytest.raises(WbrayError, match="bad runtime_env"):
        jobs.submit(_job_request())
    assert waits == []
