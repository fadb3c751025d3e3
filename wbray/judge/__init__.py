"""Judge replies: strict parsing of a judge model's text into a verdict or a typed failure."""

from __future__ import annotations

from ._parse import FailureCode, JudgeParseFailure, JudgeVerdict, parse_judge_reply

__all__ = ["FailureCode", "JudgeParseFailure", "JudgeVerdict", "parse_judge_reply"]
