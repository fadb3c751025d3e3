"""Sweeps: a grid of evaluations (candidates x judges x subsets x samples), each cell a run.

The schema and grid expansion (:func:`load_sweep`, :func:`expand`) and the cell-state decisions
(:func:`decide`) are pure; :func:`run_sweep` submits cells through the Ray Job Submission API (or
runs them in this process) and writes one leaderboard per judge. ``import wbray.sweeps`` imports
no Ray.
"""

from wbray.sweeps._config import (
    CELL_SEPARATOR,
    Cell,
    JobOptions,
    Subset,
    SweepConfig,
    cell_name,
    expand,
    load_sweep,
    sweep_yaml,
)
from wbray.sweeps._jobs import JobRequest, Jobs, JobView, RayJobs
from wbray.sweeps._layout import SweepLayout
from wbray.sweeps._report import GroupReport, baseline_deltas, write_sweep_report
from wbray.sweeps._runner import (
    CellRow,
    SweepOutcome,
    cancel_sweep,
    cell_request,
    run_sweep,
    sweep_status,
)
from wbray.sweeps._state import CellState, CellStatus, Decision, decide, job_phase, submission_id, sweep_key
from wbray.sweeps._store import Grid, GridEntry, SweepRecord, read_grid, read_state

__all__ = [
    "CELL_SEPARATOR",
    "Cell",
    "CellRow",
    "CellState",
    "CellStatus",
    "Decision",
    "Grid",
    "GridEntry",
    "GroupReport",
    "JobOptions",
    "JobRequest",
    "JobView",
    "Jobs",
    "RayJobs",
    "Subset",
    "SweepConfig",
    "SweepLayout",
    "SweepOutcome",
    "SweepRecord",
    "baseline_deltas",
    "cancel_sweep",
    "cell_name",
    "cell_request",
    "decide",
    "expand",
    "job_phase",
    "load_sweep",
    "read_grid",
    "read_state",
    "run_sweep",
    "submission_id",
    "sweep_key",
    "sweep_status",
    "sweep_yaml",
    "write_sweep_report",
]
