"""Per-batch work of each pipeline stage, as plain (async) functions over an engine.

No Ray here: ``wbray.pipelines`` wraps these in Ray Data stages, and tests call them directly.
"""

from wbray.steps.generation import (
    GENERATION_INPUT,
    GENERATION_OUTPUT,
    candidate_sampling,
    generate_batch,
    generation_rows,
)
from wbray.steps.scoring import SCORING_INPUT, SCORING_OUTPUT, judge_identity, score_batch, scoring_rows

__all__ = [
    "GENERATION_INPUT",
    "GENERATION_OUTPUT",
    "SCORING_INPUT",
    "SCORING_OUTPUT",
    "candidate_sampling",
    "generate_batch",
    "generation_rows",
    "judge_identity",
    "score_batch",
    "scoring_rows",
]
