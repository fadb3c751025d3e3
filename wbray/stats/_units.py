"""Per-query building blocks shared by every statistic: sums and counts of ok judge scores.

Every leaderboard number is a ratio ``sum / count`` over the queries it covers:

- ``Overall`` (upstream's micro average): per query, the sum of its ok evaluation scores and how many
  there are;
- domain, language and requirement-R means (means of query scores): per query, its score (the mean of its
  ok evaluations) and a count of 1;
- requirement-C means: per query, the sum of the criterion scores (each the mean of its ok repeats) of
  the C-named criteria, and how many there are.

Holding these as (query x model) matrices lets a bootstrap resample queries with one matrix product.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from wbray.errors import WbrayError
from wbray.records import EVAL_COLUMNS, Query

_NEEDED = ("model", "index", "criterion", "score", "status")


@dataclass(frozen=True)
class Units:
    """Per-query numerators and denominators of one statistic, for every model.

    Attributes:
        models: Column order of the matrices.
        indices: Row order (query indices).
        sums: ``len(indices) x len(models)``; 0 where a model has nothing for a query.
        counts: Same shape; 0 where a model has nothing for a query (so it drops out of the ratio).
    """

    models: list[str]
    indices: np.ndarray
    sums: np.ndarray
    counts: np.ndarray


def ok_rows(evaluations: pd.DataFrame) -> pd.DataFrame:
    """The ok evaluation rows, typed (model str, index int64, criterion str, score float64).

    Raises:
        WbrayError: a required column is missing, a status is unknown, or an ok row has no finite score.
    """
    missing = [c for c in _NEEDED if c not in evaluations.columns]
    if missing:
        raise WbrayError(f"evaluations table lacks columns {missing} (expected {list(EVAL_COLUMNS)})")
    bad = set(map(str, evaluations["status"].unique())) - {"ok", "failed"}
    if bad:
        raise WbrayError(f"evaluations table: unknown status values {sorted(bad)} (allowed: ok, failed)")
    cols = ["model", "index", "criterion", "score"] + (["repeat"] if "repeat" in evaluations.columns else [])
    ok = evaluations.loc[evaluations["status"] == "ok", cols].copy()
    ok["model"] = ok["model"].astype(str)
    ok["index"] = ok["index"].astype("int64")
    ok["criterion"] = ok["criterion"].astype(str)
    ok["score"] = pd.to_numeric(ok["score"], errors="coerce").astype("float64")
    if not np.isfinite(ok["score"].to_numpy()).all():
        bad_row = ok.index[~np.isfinite(ok["score"].to_numpy())][0]
        raise WbrayError(
            f"evaluations table: row {bad_row} has status 'ok' but no finite score "
            f"({evaluations.loc[bad_row, 'score']!r}); failed rows must say status 'failed'"
        )
    return ok


def model_order(evaluations: pd.DataFrame) -> list[str]:
    """Models in first-appearance order (the leaderboard's order)."""
    return [str(m) for m in evaluations["model"].astype(str).drop_duplicates()]


def query_scores(evaluations: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, index) with at least one ok evaluation.

    The score is the mean of the query's ok evaluations (all criteria and repeats together), the same
    definition as the leaderboard's; failed evaluations are left out, and a query none of whose
    evaluations succeeded has no row.

    Returns:
        Columns ``model``, ``index``, ``score``, ``n_ok``.
    """
    ok = ok_rows(evaluations)
    out = ok.groupby(["model", "index"], sort=False)["score"].agg(score="mean", n_ok="size").reset_index()
    return out


def check_indices(evaluations: pd.DataFrame, queries: Sequence[Query]) -> None:
    """Every scored index must be a benchmark query (the same check aggregation makes)."""
    known = {q.index for q in queries}
    unknown = sorted(set(evaluations["index"].astype("int64").unique()) - known)
    if unknown:
        shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
        raise WbrayError(
            f"{len(unknown)} scored query indices are not in the benchmark ({shown}); "
            "is --data-dir the benchmark version these scores were made on?"
        )


def _pivot(long: pd.DataFrame, value: str, models: list[str], indices: np.ndarray) -> np.ndarray:
    long = long.astype({value: "float64"})
    table = long.pivot_table(index="index", columns="model", values=value, aggfunc="sum", fill_value=0.0)
    table = table.reindex(index=indices, columns=models, fill_value=0.0)
    return np.ascontiguousarray(table.to_numpy(dtype="float64"))


def micro_units(ok: pd.DataFrame, models: list[str], indices: np.ndarray) -> Units:
    """``Overall``: per query, the sum and count of its ok evaluation scores."""
    per = ok.groupby(["model", "index"], sort=False)["score"].agg(s="sum", n="size").reset_index()
    return Units(models, indices, _pivot(per, "s", models, indices), _pivot(per, "n", models, indices))


def mean_units(qs: pd.DataFrame, models: list[str], indices: np.ndarray) -> Units:
    """Means of query scores: per query, its score with a count of 1."""
    per = qs.assign(n=1.0)
    return Units(models, indices, _pivot(per, "score", models, indices), _pivot(per, "n", models, indices))


def criterion_scores(ok: pd.DataFrame) -> pd.DataFrame:
    """Per (model, index, criterion): the criterion's score, the mean of its ok repeats."""
    return ok.groupby(["model", "index", "criterion"], sort=False)["score"].mean().reset_index()


def criterion_units(
    crit: pd.DataFrame, keep: Mapping[int, Sequence[str]], models: list[str], indices: np.ndarray
) -> Units:
    """Requirement C: per query, the sum and count of the kept criteria's scores.

    Args:
        crit: :func:`criterion_scores` of the ok rows.
        keep: Query index -> the C-named criteria.
        models: Column order.
        indices: Row order.
    """
    pairs = pd.DataFrame(
        [(i, n) for i, names in keep.items() for n in names], columns=["index", "criterion"]
    ).astype({"index": "int64", "criterion": str})
    kept = crit.merge(pairs, on=["index", "criterion"], how="inner")
    per = kept.groupby(["model", "index"], sort=False)["score"].agg(s="sum", n="size").reset_index()
    return Units(models, indices, _pivot(per, "s", models, indices), _pivot(per, "n", models, indices))
