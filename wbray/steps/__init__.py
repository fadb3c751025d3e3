"""Per-batch work of each pipeline stage, as plain (async) functions and tasks over an engine.

No Ray here: ``wbray.pipelines`` drives these tasks in Ray Data stages, ``wbray.serve`` in
deployments, and tests call them directly.
"""

from wbray.steps._task import BatchTask, run_task
from wbray.steps.generation import (
    GENERATION_INPUT,
    GENERATION_OUTPUT,
    GenerationTask,
    candidate_sampling,
    generate_batch,
    generation_identity,
    generation_rows,
)
from wbray.steps.scoring import (
    SCORING_INPUT,
    SCORING_OUTPUT,
    ScoringTask,
    judge_identity,
    score_batch,
    score_row_id,
    scoring_rows,
)

__all__ = [
    "GENERATION_INPUT",
    "GENERATION_OUTPUT",
    "SCORING_INPUT",
    "SCORING_OUTPUT",
    "BatchTask",
    "GenerationTask",
    "ScoringTask",
    "candidate_sampling",
    "generate_batch",
    "generation_identity",
    "generation_rows",
    "judge_identity",
    "run_task",
    "score_batch",
    "score_row_id",
    "scoring_rows",
]
