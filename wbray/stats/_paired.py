"""Paired comparison of two models on the queries both have.

Pairing by query removes the query-difficulty variance that dominates WritingBench scores: two models
a point apart overall can be clearly different when compared query by query, and the reverse.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from wbray.errors import WbrayError
from wbray.stats._bootstrap import resample_counts
from wbray.stats._units import model_order, query_scores

#: Up to this many paired queries the sign-flip test enumerates every sign pattern (2**16 = 65,536).
EXACT_MAX_N = 16
# Float sums of the same values in another order differ in the last bits; a flipped mean counts as
# "at least as extreme" within this relative tolerance.
_TIE_RTOL = 1e-9
# Monte Carlo sign patterns evaluated per block (bounds memory at 1,000 queries).
_BLOCK = 2000


@dataclass(frozen=True)
class PairedComparison:
    """Model A minus model B on the queries both have a score for (1-10 scale).

    Attributes:
        model_a: The first model.
        model_b: The second model.
        n_queries: Queries with a score from both models.
        mean_a: Mean query score of A on those queries.
        mean_b: Mean query score of B on those queries.
        difference: ``mean_a - mean_b`` (= the mean of the per-query differences).
        low: Lower bound of the bootstrap percentile interval of ``difference``.
        high: Upper bound.
        p_value: Two-sided p-value of the paired sign-flip test of "no difference".
        test: ``"exact sign-flip"`` or ``"sign-flip, N random patterns"``.
        confidence: Coverage of the interval.
        resamples: Bootstrap resamples behind the interval.
    """

    model_a: str
    model_b: str
    n_queries: int
    mean_a: float
    mean_b: float
    difference: float
    low: float
    high: float
    p_value: float
    test: str
    confidence: float
    resamples: int


def sign_flip_p_value(diffs: np.ndarray, *, permutations: int = 10000, seed: int = 0) -> tuple[float, str]:
    """Two-sided paired sign-flip (randomisation) test of a zero mean difference.

    Under the null hypothesis that the two models are interchangeable on every query, each per-query
    difference is as likely to have either sign. The p-value is the share of sign patterns whose mean
    is at least as far from 0 as the observed mean. With at most :data:`EXACT_MAX_N` differences every
    pattern is enumerated (an exact test); otherwise ``permutations`` random patterns are drawn and
    ``p = (1 + hits) / (1 + permutations)``, which never reports 0.

    Args:
        diffs: Per-query differences (A - B).
        permutations: Random patterns drawn when the test is not exact.
        seed: Seed of those patterns.

    Returns:
        ``(p_value, description of the test)``.
    """
    d = np.asarray(diffs, dtype=np.float64)
    n = d.size
    if n == 0:
        return math.nan, "no paired queries"
    observed = abs(d.mean())
    tol = _TIE_RTOL * max(1.0, float(np.abs(d).max()))
    if n <= EXACT_MAX_N:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        means = np.abs(signs @ d) / n
        return float((means >= observed - tol).sum() / len(signs)), "exact sign-flip"
    rng = np.random.default_rng(seed)
    hits = 0
    done = 0
    while done < permutations:
        k = min(_BLOCK, permutations - done)
        signs = rng.integers(0, 2, size=(k, n), dtype=np.int8) * 2 - 1
        means = np.abs(signs.astype(np.float64) @ d) / n
        hits += int((means >= observed - tol).sum())
        done += k
    return (1 + hits) / (1 + permutations), f"sign-flip, {permutations} random patterns"


def paired_difference(
    a: np.ndarray,
    b: np.ndarray,
    *,
    model_a: str = "A",
    model_b: str = "B",
    resamples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
    draws: np.ndarray | None = None,
) -> PairedComparison:
    """Compare two aligned arrays of per-query scores (same query at the same position).

    ``draws`` may pass ``resample_counts(len(a), resamples, seed)`` computed once for many
    comparisons of the same size (it is most of a comparison's cost).

    The interval is a percentile bootstrap over queries (the draws of
    :func:`~wbray.stats.resample_counts` with ``seed``); the p-value comes from
    :func:`sign_flip_p_value` with ``seed + 1``.

    Raises:
        WbrayError: the arrays differ in length or hold non-finite values.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise WbrayError(f"paired scores must be two 1-D arrays of one length, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise WbrayError("paired scores must be finite numbers")
    if not 0 < confidence < 1:
        raise WbrayError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    n = a.size
    if n == 0:
        nan = math.nan
        return PairedComparison(
            model_a, model_b, 0, nan, nan, nan, nan, nan, nan, "no paired queries", confidence, resamples
        )
    d = a - b
    low = high = math.nan
    if resamples > 0:
        if draws is None:
            draws = resample_counts(n, resamples, seed)
        boot = (draws @ d) / n
        alpha = (1.0 - confidence) / 2.0
        low, high = (float(v) for v in np.quantile(boot, [alpha, 1.0 - alpha]))
    p, test = sign_flip_p_value(d, permutations=max(resamples, 1000), seed=seed + 1)
    return PairedComparison(
        model_a=model_a,
        model_b=model_b,
        n_queries=n,
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        difference=float(d.mean()),
        low=low,
        high=high,
        p_value=p,
        test=test,
        confidence=confidence,
        resamples=resamples,
    )


def compare_models(
    evaluations: pd.DataFrame,
    model_a: str,
    model_b: str,
    *,
    resamples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compare two models of an evaluations table on the queries both have a score for.

    A query's score is the mean of its ok evaluations (failures excluded); queries where either model
    has no ok evaluation are left out, so ``mean_a`` / ``mean_b`` are means over the common queries and
    may differ from the leaderboard's ``Overall``. Why a sign-flip test for the p-value: it assumes
    only that, under "no difference", each query's difference is equally likely to be positive or
    negative — no normality, valid for the few dozen queries of a domain — and it is exact for small
    samples; the bootstrap interval says how large the difference plausibly is.

    Args:
        evaluations: The long evaluations table.
        model_a: First model (the difference is A - B).
        model_b: Second model.
        resamples: Bootstrap resamples (and at least 1,000 random sign patterns when not exact).
        confidence: Interval coverage.
        seed: Seed of the bootstrap (and ``seed + 1`` of the sign patterns).

    Raises:
        WbrayError: a model is not in the table (the message lists the models).
    """
    qs = query_scores(evaluations)
    known = list(dict.fromkeys(qs["model"]))
    for m in (model_a, model_b):
        if m not in known:
            raise WbrayError(f"model {m!r} has no ok evaluation in the table (models: {', '.join(known)})")
    a = qs[qs["model"] == model_a].set_index("index")["score"]
    b = qs[qs["model"] == model_b].set_index("index")["score"]
    common = a.index.intersection(b.index).sort_values()
    return paired_difference(
        a.loc[common].to_numpy(),
        b.loc[common].to_numpy(),
        model_a=model_a,
        model_b=model_b,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )


#: Columns of :func:`comparisons_table` (1-10 scale).
COMPARISON_COLUMNS: tuple[str, ...] = (
    "model",
    "reference",
    "n_queries",
    "mean",
    "reference_mean",
    "difference",
    "low",
    "high",
    "p_value",
    "test",
)


def comparisons_table(
    evaluations: pd.DataFrame,
    reference: str,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Every other model against ``reference`` (model minus reference), each on the queries both
    have a score for: what a report shows under its leaderboard.

    One model against one reference, not all pairs: N - 1 comparisons stay cheap at hundreds of
    models, and the question a leaderboard reader asks is "is this gap to the top (or to my
    baseline) real?". Query scores are computed once for all comparisons.

    Returns:
        One row per other model (first-appearance order), :data:`COMPARISON_COLUMNS`; empty when the
        reference has no ok evaluation.
    """
    qs = query_scores(evaluations)
    by_model = {str(m): g.set_index("index")["score"] for m, g in qs.groupby("model", sort=False)}
    rows = []
    ref = by_model.get(reference)
    draws: dict[int, np.ndarray] = {}  # by number of common queries: usually one size for all
    if ref is not None:
        for model in model_order(evaluations):
            if model == reference or model not in by_model:
                continue
            mine = by_model[model]
            common = mine.index.intersection(ref.index).sort_values()
            n = len(common)
            if resamples > 0 and n and n not in draws:
                draws[n] = resample_counts(n, resamples, seed)
            c = paired_difference(
                mine.loc[common].to_numpy(),
                ref.loc[common].to_numpy(),
                model_a=model,
                model_b=reference,
                resamples=resamples,
                confidence=confidence,
                seed=seed,
                draws=draws.get(n),
            )
            rows.append(
                (
                    model,
                    reference,
                    c.n_queries,
                    c.mean_a,
                    c.mean_b,
                    c.difference,
                    c.low,
                    c.high,
                    c.p_value,
                    c.test,
                )
            )
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
