"""Bootstrap confidence intervals clustered by query, for every leaderboard number.

The unit of resampling is the query: a query's evaluations (every criterion and repeat) stay together,
because they share the query's difficulty and are far from independent. One resample draws as many
queries as the group holds, with replacement, and recomputes the statistic exactly as the leaderboard
defines it (a ratio of per-query sums to per-query counts, see ``_units``). The interval is the
percentile interval of the resampled statistics.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from wbray.errors import WbrayError
from wbray.records import DOMAIN1_ORDER, LANGS, REQUIREMENTS, Query, RequirementSubset
from wbray.stats._units import (
    Units,
    check_indices,
    criterion_scores,
    criterion_units,
    mean_units,
    micro_units,
    model_order,
    ok_rows,
    query_scores,
)

#: Scopes :func:`bootstrap_cis` reports, in output order.
SCOPES: tuple[str, ...] = ("overall", "domain1", "domain2", "lang", "requirement")
#: Bootstrap output columns.
CI_COLUMNS: tuple[str, ...] = ("model", "scope", "group", "estimate", "low", "high", "n_queries")


def group_seed(seed: int, scope: str, group: str) -> np.random.SeedSequence:
    """The seed of one group's resamples: ``SeedSequence([seed, crc32(f"{scope}/{group}")])``.

    Each group draws from its own stream, so a group's interval does not change when other groups or
    models are added to the table.
    """
    return np.random.SeedSequence([seed, zlib.crc32(f"{scope}/{group}".encode())])


def resample_counts(n: int, resamples: int, seed: int | np.random.SeedSequence) -> np.ndarray:
    """How often each of ``n`` units is drawn in each resample: a ``resamples x n`` float matrix.

    The draws are ``numpy.random.default_rng(seed).integers(0, n, size=(resamples, n))``: resample
    ``b`` holds the units ``draws[b]``. Counting them turns every resampled sum into one matrix
    product, which is what makes 200 models x 1,000 resamples cheap.
    """
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    # Offsetting row b by b*n makes one bincount count every row at once.
    flat = (draws + (np.arange(resamples, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def cluster_bootstrap(
    sums: np.ndarray,
    counts: np.ndarray,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.SeedSequence = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile bootstrap of ``sum(sums) / sum(counts)`` over clusters (rows), for each column.

    Args:
        sums: ``clusters x columns`` numerators (one row per query, one column per model).
        counts: Same shape; a 0 count means the column has nothing for that cluster.
        resamples: Number of bootstrap resamples; 0 gives the estimate with NaN bounds.
        confidence: Coverage of the interval, e.g. 0.95.
        seed: Seed of the draws (see :func:`resample_counts` for the exact draw).

    Returns:
        ``(estimate, low, high)``, each of length ``columns``. A resample that draws no cluster with a
        nonzero count for a column has no value and is left out of that column's quantiles; a column
        without any count has NaN everywhere.
    """
    if not 0 < confidence < 1:
        raise WbrayError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    if resamples < 0:
        raise WbrayError(f"resamples must be 0 or more, got {resamples}")
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    n_cols = sums.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = sums.sum(axis=0) / counts.sum(axis=0)
    low = np.full(n_cols, np.nan)
    high = np.full(n_cols, np.nan)
    if resamples == 0 or sums.shape[0] == 0:
        return estimate, low, high
    draws = resample_counts(sums.shape[0], resamples, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        stats = (draws @ sums) / (draws @ counts)
    alpha = (1.0 - confidence) / 2.0
    finite = np.isfinite(stats)
    # np.quantile is vectorised over columns; nanquantile loops over them in Python, so it is kept
    # for the rare columns (a model missing queries) whose resamples can come out empty.
    full = finite.all(axis=0)
    partial = finite.any(axis=0) & ~full
    for cols, quantile in ((full, np.quantile), (partial, np.nanquantile)):
        if cols.any():
            qs = quantile(np.where(finite[:, cols], stats[:, cols], np.nan), [alpha, 1.0 - alpha], axis=0)
            low[cols], high[cols] = qs[0], qs[1]
    return estimate, low, high


def _groups(
    queries: Sequence[Query], requirements: Mapping[str, RequirementSubset], present: set[int]
) -> list[tuple[str, str, list[int], Mapping[int, Sequence[str]] | None]]:
    """(scope, group, query indices, C criteria or None) for every group, leaderboard order."""
    qs = [q for q in queries if q.index in present]
    out: list[tuple[str, str, list[int], Mapping[int, Sequence[str]] | None]] = []
    out.append(("overall", "Overall", [q.index for q in qs], None))
    d1_names = [d for d in DOMAIN1_ORDER if any(q.domain1 == d for q in qs)]
    d1_names += sorted({q.domain1 for q in qs} - set(d1_names))
    for d in d1_names:
        out.append(("domain1", d, [q.index for q in qs if q.domain1 == d], None))
    for d in dict.fromkeys(q.domain2 for q in qs):
        out.append(("domain2", d, [q.index for q in qs if q.domain2 == d], None))
    for lang in LANGS:
        members = [q.index for q in qs if q.lang == lang]
        if members:
            out.append(("lang", lang, members, None))
    for req in REQUIREMENTS:
        subset = requirements.get(req)
        if subset is None:
            continue
        r_set = set(subset.r_indices)
        r_members = [q.index for q in qs if q.index in r_set]
        out.append(("requirement", f"{req}_R", r_members, None))
        keep = {i: subset.c_criteria[i] for i in r_members if i in subset.c_criteria}
        out.append(("requirement", f"{req}_C", list(keep), keep))
    return out


def bootstrap_cis(
    evaluations: pd.DataFrame,
    queries: Sequence[Query],
    requirements: Mapping[str, RequirementSubset] | None = None,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    scopes: Sequence[str] = SCOPES,
) -> pd.DataFrame:
    """Confidence intervals, clustered by query, for every leaderboard number of every model.

    Estimates are the leaderboard's own numbers (1-10 scale): ``Overall`` is the mean of all ok
    evaluations (upstream's micro average); domain, language and requirement-R values are means of
    query scores (a query's score = the mean of its ok evaluations); requirement-C values are means of
    the C-named criteria's scores. Failed evaluations are excluded, never zero-filled.

    Each group (e.g. domain1 "Education") is resampled on its own: its queries (those any model has
    a row for, in benchmark order; for requirement C, those with C-named criteria) are drawn with
    replacement as many times as it has queries (:func:`resample_counts`), the same draws for every
    model (so models' intervals share their resamples), and the statistic is recomputed; the interval
    is the percentile interval. A model lacking some of the group's queries is resampled over the
    same draws, so its number of queries varies slightly between resamples. Group ``g`` of scope
    ``s`` draws with :func:`group_seed` ``(seed, s, g)``.

    Args:
        evaluations: The long evaluations table (``wbray.records.EVAL_COLUMNS``; ``reason`` and
            ``error`` are not needed).
        queries: The benchmark queries (domains and languages).
        requirements: The requirement subsets (None or empty: no requirement rows).
        resamples: Bootstrap resamples per group (0: estimates only, NaN bounds).
        confidence: Interval coverage.
        seed: Base seed; the same seed gives the same intervals.
        scopes: Which of ``overall``, ``domain1``, ``domain2``, ``lang``, ``requirement`` to report.

    Returns:
        Columns ``model, scope, group, estimate, low, high, n_queries`` (``n_queries``: the model's
        queries in the group with at least one ok value), one row per model and group, models in
        first-appearance order. Multiply by ``wbray.aggregate.LEADERBOARD_SCALE`` for the x10 scale.

    Raises:
        WbrayError: missing columns, unknown status, an ok row without a score, an index not in the
            benchmark, an unknown scope, or a bad ``confidence`` / ``resamples``.
    """
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise WbrayError(f"unknown scope(s) {unknown}; allowed: {', '.join(SCOPES)}")
    ok = ok_rows(evaluations)
    check_indices(evaluations, queries)
    models = model_order(evaluations)
    present = set(int(i) for i in evaluations["index"].astype("int64").unique())
    indices = np.array(sorted(present), dtype=np.int64)
    position = {int(i): p for p, i in enumerate(indices)}
    micro = micro_units(ok, models, indices)
    means = mean_units(query_scores(evaluations), models, indices)
    crit = criterion_scores(ok)

    rows: list[dict[str, object]] = []
    for scope, group, members, keep in _groups(queries, requirements or {}, present):
        if scope not in scopes:
            continue
        if keep is not None:
            base: Units = criterion_units(crit, keep, models, indices)
        else:
            base = micro if scope == "overall" else means
        take = np.array([position[i] for i in members], dtype=np.int64)
        sums, counts = base.sums[take], base.counts[take]
        est, low, high = cluster_bootstrap(
            sums,
            counts,
            resamples=resamples,
            confidence=confidence,
            seed=group_seed(seed, scope, group),
        )
        n_q = (counts > 0).sum(axis=0)
        for m, model in enumerate(models):
            rows.append(
                {
                    "model": model,
                    "scope": scope,
                    "group": group,
                    "estimate": float(est[m]),
                    "low": float(low[m]),
                    "high": float(high[m]),
                    "n_queries": int(n_q[m]),
                }
            )
    out = pd.DataFrame(rows, columns=list(CI_COLUMNS))
    order = {m: i for i, m in enumerate(models)}
    return out.sort_values("model", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
