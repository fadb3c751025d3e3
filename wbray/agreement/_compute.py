"""Judge-human agreement as a pure function of the human labels and the judge's scores.

Definition (following WritingBench, arXiv 2503.05244, section on human consistency): for each pair of
responses to one query that humans compared, the judge prefers the response with the higher judge
score — the mean of its criterion scores, the same definition as a query score — and the agreement
rate is the share of pairs where the judge's preference equals the humans'. The paper reports this
one percentage per judge and criteria mode and does not say how ties are counted, so wbray reports:

- ``rate`` — over *decisive* pairs (the humans preferred one side) where the judge scored both
  responses; a judge tie counts as a disagreement (conservative: a judge that cannot separate two
  responses did not agree with a human who could);
- ``rate_with_ties`` — over every scored pair, a three-way exact match (a, b or tie on both sides).

Pairs where the judge could not score a response (every judge call failed) are left out of both
rates and counted, never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pandas as pd

from wbray.agreement._human import TIE_TOLERANCE, HumanJudgments
from wbray.errors import WbrayError

#: The criteria modes, in report order.
MODES: Final[tuple[str, ...]] = ("global", "domain", "query")
#: The summary row covering every domain.
ALL_DOMAINS: Final[str] = "(all)"
#: Summary columns.
SUMMARY_COLUMNS: Final[tuple[str, ...]] = (
    "mode",
    "domain1",
    "pairs",
    "scored",
    "decisive",
    "agree",
    "judge_ties",
    "rate",
    "exact",
    "rate_with_ties",
)
#: Per-pair columns.
DETAIL_COLUMNS: Final[tuple[str, ...]] = (
    "mode",
    "pair_id",
    "line",
    "domain1",
    "human",
    "judge",
    "score_a",
    "score_b",
    "agree",
)


@dataclass(frozen=True)
class AgreementReport:
    """Agreement of a judge with human judgments under one or more criteria modes.

    Attributes:
        kind: ``"pairwise"`` or ``"scores"`` (the human file's kind).
        summary: One row per mode and domain (``(all)`` first), columns :data:`SUMMARY_COLUMNS`.
        details: One row per mode and pair, columns :data:`DETAIL_COLUMNS`; ``judge`` is None and
            ``agree`` is None when the judge could not score a response of the pair.
        correlations: Scores files only: per mode, ``n`` responses, ``pearson`` and ``spearman``
            between human and judge scores (empty for pairwise files).
        judging: Per mode, judge ``calls``, ``ok`` and ``failed`` (empty when scores were supplied).
        meta: Free-form facts for the report (judge name, template and rubric versions).
    """

    kind: str
    summary: pd.DataFrame
    details: pd.DataFrame
    correlations: pd.DataFrame
    judging: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["mode", "calls", "ok", "failed"])
    )
    meta: dict[str, Any] = field(default_factory=dict)

    def rate(self, mode: str, domain1: str = ALL_DOMAINS) -> float | None:
        """The agreement rate of one mode (and domain)."""
        sel = self.summary[(self.summary["mode"] == mode) & (self.summary["domain1"] == domain1)]
        if sel.empty:
            raise WbrayError(f"no agreement row for mode {mode!r}, domain {domain1!r}")
        value = sel.iloc[0]["rate"]
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able content (NaN as null)."""

        def records(df: pd.DataFrame) -> list[dict[str, Any]]:
            return [
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                for r in df.astype(object).where(df.notna(), None).to_dict("records")
            ]

        return {
            "kind": self.kind,
            "meta": self.meta,
            "summary": records(self.summary),
            "correlations": records(self.correlations),
            "judging": records(self.judging),
            "pairs": records(self.details),
        }


def _preference(sa: float, sb: float) -> str:
    if abs(sa - sb) <= TIE_TOLERANCE:
        return "tie"
    return "a" if sa > sb else "b"


def _summary_row(mode: str, domain: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [r for r in rows if r["judge"] is not None]
    decisive = [r for r in scored if r["human"] != "tie"]
    agree = sum(1 for r in decisive if r["judge"] == r["human"])
    exact = sum(1 for r in scored if r["judge"] == r["human"])
    return {
        "mode": mode,
        "domain1": domain,
        "pairs": len(rows),
        "scored": len(scored),
        "decisive": len(decisive),
        "agree": agree,
        "judge_ties": sum(1 for r in decisive if r["judge"] == "tie"),
        "rate": agree / len(decisive) if decisive else math.nan,
        "exact": exact,
        "rate_with_ties": exact / len(scored) if scored else math.nan,
    }


def agreement_rates(
    human: HumanJudgments, judge_scores: pd.DataFrame, modes: Sequence[str] | None = None
) -> AgreementReport:
    """Compute agreement rates from human labels and judge scores (no judge call here).

    Args:
        human: The loaded human judgments.
        judge_scores: Columns ``mode``, ``key`` (a :class:`~wbray.agreement.HumanResponse` key) and
            ``score`` (the response's judge score under that mode: the mean of its ok criterion
            scores). A response missing for a mode, or with a NaN score, is unscored.
        modes: The modes to report (default: those present in ``judge_scores``, in :data:`MODES`
            order).

    Returns:
        The report; see the module docstring for the definitions.

    Raises:
        WbrayError: a required column is missing or a mode is unknown.
    """
    missing = [c for c in ("mode", "key", "score") if c not in judge_scores.columns]
    if missing:
        raise WbrayError(f"judge scores lack columns {missing} (need mode, key, score)")
    present = list(dict.fromkeys(map(str, judge_scores["mode"])))
    wanted = list(modes) if modes is not None else [m for m in MODES if m in present]
    unknown = [m for m in wanted if m not in MODES]
    if unknown:
        raise WbrayError(f"unknown criteria mode(s) {unknown}; allowed: {', '.join(MODES)}")
    lookup = {
        (str(m), str(k)): float(s)
        for m, k, s in zip(judge_scores["mode"], judge_scores["key"], judge_scores["score"], strict=True)
        if s is not None and not (isinstance(s, float) and math.isnan(s))
    }
    details: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    correlations: list[dict[str, Any]] = []
    for mode in wanted:
        rows = []
        for pair in human.pairs:
            sa, sb = lookup.get((mode, pair.a)), lookup.get((mode, pair.b))
            judge = _preference(sa, sb) if sa is not None and sb is not None else None
            rows.append(
                {
                    "mode": mode,
                    "pair_id": pair.pair_id,
                    "line": pair.line,
                    "domain1": pair.domain1,
                    "human": pair.preferred,
                    "judge": judge,
                    "score_a": sa,
                    "score_b": sb,
                    "agree": None if judge is None or pair.preferred == "tie" else judge == pair.preferred,
                }
            )
        details += rows
        summary.append(_summary_row(mode, ALL_DOMAINS, rows))
        for domain in dict.fromkeys(p.domain1 for p in human.pairs if p.domain1 is not None):
            summary.append(_summary_row(mode, domain, [r for r in rows if r["domain1"] == domain]))
        if human.kind == "scores":
            keys = [k for k in human.scores if (mode, k) in lookup]
            h = pd.Series([human.scores[k] for k in keys], dtype="float64")
            j = pd.Series([lookup[(mode, k)] for k in keys], dtype="float64")
            correlations.append(
                {
                    "mode": mode,
                    "n": len(keys),
                    "pearson": float(h.corr(j)) if len(keys) > 1 else math.nan,
                    "spearman": float(h.corr(j, method="spearman")) if len(keys) > 1 else math.nan,
                }
            )
    return AgreementReport(
        kind=human.kind,
        summary=pd.DataFrame(summary, columns=list(SUMMARY_COLUMNS)),
        details=pd.DataFrame(details, columns=list(DETAIL_COLUMNS)),
        correlations=pd.DataFrame(correlations, columns=["mode", "n", "pearson", "spearman"]),
    )
