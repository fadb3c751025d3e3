"""Pure curation arithmetic: a pair's score, which pairs are kept, and the score histogram.

- A pair's score is the mean of its ok verdicts (every criterion and repeat); failed verdicts are
  left out explicitly, never counted as zero. A pair with no ok verdict is unscored.
- ``keep=F`` keeps the ``floor(F × n)`` best of the ``n`` scored pairs (F read as a decimal, so
  0.29 × 100 is 29, not 28). Ties are broken by input order: of equal scores, the earlier row wins.
- ``min_score=S`` keeps every scored pair whose score is at least ``S`` (within 1e-9, so a mean
  such as 20/3 meets a threshold written 6.666666667).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from wbray.errors import WbrayError

#: Slack of the threshold comparison (means of integers are not exact in binary).
THRESHOLD_EPS: Final[float] = 1e-9
#: Histogram bin edges over the 1-10 scale: nine bins, the last closed (10 falls in 9-10).
EDGES: Final[tuple[float, ...]] = tuple(float(x) for x in range(1, 11))


@dataclass(frozen=True)
class PairScore:
    """A pair's verdicts folded into its score.

    Attributes:
        score: Mean of the ok verdicts, None when there is none.
        n_ok: Ok verdicts.
        n_failed: Failed verdicts (excluded from the mean).
        entries: One dict per verdict: criterion, repeat, score, reason, status, error; in
            checklist order, then repeat.
    """

    score: float | None
    n_ok: int
    n_failed: int
    entries: tuple[dict[str, Any], ...]


def pair_score(verdicts: Sequence[Mapping[str, Any]], order: Sequence[str]) -> PairScore:
    """Fold one pair's verdict rows (scoring-step rows) into its :class:`PairScore`.

    Args:
        verdicts: The pair's rows with ``criterion``, ``repeat``, ``score``, ``reason``, ``status``,
            ``error``.
        order: The criterion names in checklist order (the entries' order).
    """
    rank = {name: i for i, name in enumerate(order)}
    rows = sorted(verdicts, key=lambda r: (rank.get(str(r["criterion"]), len(rank)), int(r["repeat"])))
    entries = []
    ok_scores = []
    for r in rows:
        ok = r["status"] == "ok" and r["score"] is not None
        if ok:
            ok_scores.append(float(r["score"]))
        entries.append(
            {
                "criterion": str(r["criterion"]),
                "repeat": int(r["repeat"]),
                "score": float(r["score"]) if ok else None,
                "reason": r.get("reason") if ok else None,
                "status": "ok" if ok else "failed",
                "error": None if ok else (r.get("error") or "failed"),
            }
        )
    score = sum(ok_scores) / len(ok_scores) if ok_scores else None
    return PairScore(score, len(ok_scores), len(entries) - len(ok_scores), tuple(entries))


@dataclass(frozen=True)
class Selection:
    """Which scored pairs are kept.

    Attributes:
        kept: Kept keys, in input order.
        dropped: Dropped keys, in input order.
        rule: The rule in words, e.g. ``"keep the top 0.5 (2 of 4 scored pairs)"``.
        cut: The lowest kept score (None when nothing is kept).
        tied_at_cut: Pairs whose score equals the cut, and how many of them were kept
            (``keep`` only; both 0 otherwise).
    """

    kept: tuple[Any, ...]
    dropped: tuple[Any, ...]
    rule: str
    cut: float | None = None
    tied_at_cut: tuple[int, int] = (0, 0)


def check_rule(keep: float | None, min_score: float | None) -> None:
    """Exactly one rule, in range.

    Raises:
        WbrayError: both or neither given, ``keep`` outside (0, 1], ``min_score`` outside [1, 10].
    """
    if (keep is None) == (min_score is None):
        raise WbrayError("give exactly one selection rule: keep (a fraction) or min_score (a threshold)")
    if keep is not None and not 0 < keep <= 1:  # NaN fails the comparison too
        raise WbrayError(f"keep must be a fraction in (0, 1], got {keep}")
    if min_score is not None and not (1 <= min_score <= 10):
        raise WbrayError(f"min_score must be between 1 and 10 (the judge's scale), got {min_score}")


def select(
    scored: Sequence[tuple[Any, float]], *, keep: float | None = None, min_score: float | None = None
) -> Selection:
    """Select among scored pairs (see the module docstring for the rules and the tie break).

    Args:
        scored: ``(key, score)`` of every scored pair, in input order.
        keep: Keep this fraction of the best pairs.
        min_score: Keep pairs scoring at least this.
    """
    check_rule(keep, min_score)
    n = len(scored)
    if keep is not None:
        count = int(Decimal(str(keep)) * n)  # int() of a non-negative Decimal rounds down
        ranked = sorted(range(n), key=lambda i: (-scored[i][1], i))
        chosen = set(ranked[:count])
        rule = f"keep the top {keep:g} ({count} of {n} scored pairs, rounded down; ties: earlier row first)"
    else:
        assert min_score is not None
        chosen = {i for i in range(n) if scored[i][1] >= min_score - THRESHOLD_EPS}
        rule = f"keep scores >= {min_score:g} ({len(chosen)} of {n} scored pairs)"
    kept = tuple(scored[i][0] for i in range(n) if i in chosen)
    dropped = tuple(scored[i][0] for i in range(n) if i not in chosen)
    cut = min((scored[i][1] for i in chosen), default=None)
    tied = (0, 0)
    if keep is not None and cut is not None:
        same = [i for i in range(n) if scored[i][1] == cut]
        tied = (len(same), sum(1 for i in same if i in chosen))
    return Selection(kept, dropped, rule, cut, tied)


@dataclass(frozen=True)
class Bin:
    """One histogram bin ``[lo, hi)`` (the last one ``[lo, hi]``) with its kept pairs."""

    lo: float
    hi: float
    count: int
    kept: int


@dataclass(frozen=True)
class Histogram:
    """Scores binned over the 1-10 scale, kept pairs counted per bin."""

    bins: tuple[Bin, ...]
    stats: Mapping[str, float | None] = field(default_factory=dict)


def histogram(scores: Sequence[float], kept: Sequence[bool], edges: Sequence[float] = EDGES) -> Histogram:
    """Bin scores (``kept[i]`` says whether score ``i`` was kept).

    Raises:
        ValueError: a score outside the edges, or lengths that differ.
    """
    if len(scores) != len(kept):
        raise ValueError(f"{len(scores)} scores but {len(kept)} kept flags")
    counts = [0] * (len(edges) - 1)
    kept_counts = [0] * (len(edges) - 1)
    for score, k in zip(scores, kept, strict=True):
        if not edges[0] <= score <= edges[-1]:
            raise ValueError(f"score {score} outside [{edges[0]}, {edges[-1]}]")
        b = next(i for i in range(len(edges) - 1) if score < edges[i + 1] or i == len(edges) - 2)
        counts[b] += 1
        kept_counts[b] += int(k)
    bins = tuple(Bin(edges[i], edges[i + 1], counts[i], kept_counts[i]) for i in range(len(edges) - 1))
    ordered = sorted(scores)
    n = len(ordered)
    median = None
    if n:
        median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    stats = {
        "n": float(n),
        "mean": sum(ordered) / n if n else None,
        "median": median,
        "min": ordered[0] if n else None,
        "max": ordered[-1] if n else None,
    }
    return Histogram(bins, stats)
