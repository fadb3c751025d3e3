"""Judge-human agreement: how often a judge prefers the response humans preferred.

Three criteria modes, as in WritingBench's human-consistency study: one global rubric, one rubric
per primary domain, and each query's own criteria. Loading and the agreement arithmetic are pure; the
judge is any injected :class:`~wbray.engines.Engine`, called through the benchmark's scoring step.
"""

from pathlib import Path

from wbray.agreement._compute import (
    ALL_DOMAINS,
    DETAIL_COLUMNS,
    MODES,
    SUMMARY_COLUMNS,
    AgreementReport,
    agreement_rates,
)
from wbray.agreement._human import HumanJudgments, HumanPair, HumanResponse, load_human_judgments
from wbray.agreement._judge import agreement_rows, judge_agreement, response_scores
from wbray.agreement._rubrics import BUNDLED_RUBRICS, Rubrics, load_rubrics


def example_file() -> Path:
    """The bundled example of pairwise human judgments (on the bundled example benchmark)."""
    return Path(__file__).resolve().parent / "example" / "pairs.jsonl"


__all__ = [
    "ALL_DOMAINS",
    "BUNDLED_RUBRICS",
    "DETAIL_COLUMNS",
    "MODES",
    "SUMMARY_COLUMNS",
    "AgreementReport",
    "HumanJudgments",
    "HumanPair",
    "HumanResponse",
    "Rubrics",
    "agreement_rates",
    "agreement_rows",
    "example_file",
    "judge_agreement",
    "load_human_judgments",
    "load_rubrics",
    "response_scores",
]
