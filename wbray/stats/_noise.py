"""How much of the score spread is the judge's own noise (needs repeats > 1)."""

from __future__ import annotations

import math

import pandas as pd

from wbray.stats._units import model_order, ok_rows

#: Output columns of :func:`judge_noise`.
NOISE_COLUMNS: tuple[str, ...] = (
    "model",
    "cells",
    "repeats",
    "within_var",
    "within_sd",
    "between_var",
    "noise_var",
    "reliability",
)
#: The pooled row's model name.
ALL_MODELS = "(all)"


def judge_noise(evaluations: pd.DataFrame) -> pd.DataFrame:
    """Judge noise (repeated judge calls) against the spread of query scores, per model and pooled.

    Definitions (1-10 scale, ok rows only):

    - A *cell* is one (model, query, criterion) judged at least twice successfully.
    - ``within_var``: the pooled within-cell variance of the repeated scores,
      ``sum_c sum_r (x_cr - mean_c)^2 / sum_c (n_c - 1)`` — the variance of one judge call around
      the judge's own average for that cell. ``within_sd`` is its square root.
    - ``between_var``: the sample variance (ddof 1) of the query scores across queries (a query's
      score = the mean of its ok evaluations); for the pooled row, deviations are taken from each
      model's own mean and pooled the same way.
    - ``noise_var``: the part of a query score's variance due to the judge,
      ``within_var / k`` with ``k`` the mean number of ok evaluations per query (criteria x repeats),
      assuming judge errors are independent across calls.
    - ``reliability``: ``1 - noise_var / between_var``, the share of the query-score spread that is
      not judge noise (1 = noiseless; near 0 or negative = the ranking of queries is mostly noise).
      It is an estimate and can fall below 0 when noise dominates.

    Args:
        evaluations: The long evaluations table with a ``repeat`` column.

    Returns:
        One row per model (first-appearance order) and a last row ``(all)`` pooling every model;
        columns ``model, cells, repeats, within_var, within_sd, between_var, noise_var, reliability``
        (``repeats``: mean ok repeats per cell). Values are NaN where no cell has two ok repeats or
        a model has fewer than two scored queries.
    """
    ok = ok_rows(evaluations)
    models = model_order(evaluations)
    keys = ["model", "index", "criterion"]
    # Squared deviations from each cell's mean, vectorised (no Python call per cell).
    dev2 = (ok["score"] - ok.groupby(keys, sort=False)["score"].transform("mean")) ** 2
    cells = ok.assign(dev2=dev2).groupby(keys, sort=False)["dev2"].agg(n="size", ss="sum")
    cells = cells[cells["n"] >= 2].reset_index()
    queries = ok.groupby(["model", "index"], sort=False)["score"].agg(score="mean", k="size").reset_index()

    def row(name: str, c: pd.DataFrame, q: pd.DataFrame) -> dict[str, object]:
        df_within = float((c["n"] - 1).sum())
        within = float(c["ss"].sum()) / df_within if df_within > 0 else math.nan
        dev = q["score"] - q.groupby("model", sort=False)["score"].transform("mean")
        df_between = len(q) - q["model"].nunique()
        between = float((dev**2).sum()) / df_between if df_between > 0 else math.nan
        noise = within / float(q["k"].mean()) if len(q) else math.nan
        reliability = 1.0 - noise / between if between and not math.isnan(between) else math.nan
        return {
            "model": name,
            "cells": len(c),
            "repeats": float(c["n"].mean()) if len(c) else math.nan,
            "within_var": within,
            "within_sd": math.sqrt(within) if not math.isnan(within) else math.nan,
            "between_var": between,
            "noise_var": noise,
            "reliability": reliability,
        }

    rows = [row(m, cells[cells["model"] == m], queries[queries["model"] == m]) for m in models]
    rows.append(row(ALL_MODELS, cells, queries))
    return pd.DataFrame(rows, columns=list(NOISE_COLUMNS))
