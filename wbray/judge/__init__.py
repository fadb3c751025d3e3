"""Judge replies: strict parsing of a judge model's text into a verdict or a typed failure, and the
probability-weighted score from a judge's token logprobs."""

from __future__ import annotations

from ._expected import ScoreDistribution, TokenLogprobs, expected_score, score_distribution
from ._parse import FailureCode, JudgeParseFailure, JudgeVerdict, parse_judge_reply

__all__ = [
    "FailureCode",
    "JudgeParseFailure",
    "JudgeVerdict",
    "ScoreDistribution",
    "TokenLogprobs",
    "expected_score",
    "parse_judge_reply",
    "score_distribution",
]
