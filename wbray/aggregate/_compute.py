"""Leaderboard arithmetic, exactly as upstream ``calculate_scores.py`` does it, plus what it lacks.

Input is the long "evaluations" table (one row per judge call, columns ``wbray.records.EVAL_COLUMNS``).
Everything is vectorised pandas (group-bys and joins), so it stays fast at millions of rows.

Upstream's definitions, kept bit for bit:
- criterion score = mean over its repeats;
- query score = mean of ALL the query's evaluations (not of criterion means);
- ``Overall`` = mean over all evaluations of the model (micro average); ``Count`` = scored queries;
- ``Domain1_<d>`` / ``Domain2_<d>`` = mean of query scores;
- ``<req>_R`` = mean of query scores over the R indices; ``<req>_C`` = mean, over those queries, of the
  criterion scores of only the C-named criteria;
- Domain2 columns are grouped by Domain1 (upstream order) and, within a group, sorted by the mean of
  that subdomain's score across all models, best first.

What wbray adds: failed evaluations are excluded from every mean and counted per level (evaluation,
criterion, query), never zero-filled; a value with nothing to average is empty, not 0; per-language
means; the x10 leaderboard scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from wbray.errors import WbrayError
from wbray.records import DOMAIN1_ORDER, EVAL_COLUMNS, LANGS, REQUIREMENTS, Query, RequirementSubset

#: Leaderboard scale: upstream scores are 1-10, the published leaderboard shows x10.
LEADERBOARD_SCALE = 10


@dataclass(frozen=True)
class Leaderboard:
    """Aggregated results for one or more models.

    Attributes:
        official: One row per model with exactly upstream's columns and order, 1-10 scale.
        languages: Model, and the mean query score per language (``zh``, ``en``), 1-10 scale.
        failures: Per model: evaluations ok/failed, criteria failed (every repeat failed),
            queries failed (no evaluation succeeded), queries missing (no evaluation at all).
        per_query: One row per (model, index): score, domain1, domain2, lang, ok and failed counts.
    """

    official: pd.DataFrame
    languages: pd.DataFrame
    failures: pd.DataFrame
    per_query: pd.DataFrame

    @property
    def models(self) -> list[str]:
        return [str(m) for m in self.official["Model"]]

    def scaled(self) -> pd.DataFrame:
        """The official table on the leaderboard scale (x10); ``Count`` is left as is."""
        out = self.official.copy()
        score_cols = [c for c in out.columns if c not in ("Model", "Count")]
        out[score_cols] = out[score_cols] * LEADERBOARD_SCALE
        return out


def _check_columns(evaluations: pd.DataFrame) -> None:
    missing = [c for c in ("model", "index", "criterion", "score", "status") if c not in evaluations.columns]
    if missing:
        raise WbrayError(f"evaluations table lacks columns {missing} (expected {list(EVAL_COLUMNS)})")
    bad_status = set(evaluations["status"].unique()) - {"ok", "failed"}
    if bad_status:
        raise WbrayError(f"evaluations table: unknown status values {sorted(map(str, bad_status))}")


def _meta_frame(queries: Sequence[Query]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "index": [q.index for q in queries],
            "domain1": [q.domain1 for q in queries],
            "domain2": [q.domain2 for q in queries],
            "lang": [q.lang for q in queries],
        }
    )


def aggregate(
    evaluations: pd.DataFrame,
    queries: Sequence[Query],
    requirements: Mapping[str, RequirementSubset],
) -> Leaderboard:
    """Build the leaderboard from an evaluations table.

    Args:
        evaluations: Long table, columns as in ``wbray.records.EVAL_COLUMNS`` (``repeat``, ``reason``
            and ``error`` are optional). Rows with status "failed" must have a null score.
        queries: The benchmark queries the evaluations refer to (domain and language lookup; also
            the denominator of "queries missing").
        requirements: The R/C requirement subsets (empty mapping -> requirement columns empty).

    Returns:
        The leaderboard; models keep their first-appearance order.
    """
    _check_columns(evaluations)
    ev = evaluations[["model", "index", "criterion", "score", "status"]].copy()
    ev["model"] = pd.Categorical(ev["model"].astype(str))
    # Criterion names as integer codes: every group-by and join below keys on them, and
    # hashing ints is far cheaper than hashing a million strings again and again.
    codes, names = pd.factorize(ev["criterion"].astype(str))
    ev["criterion"] = codes
    crit_code = {str(n): i for i, n in enumerate(names)}
    ev["index"] = ev["index"].astype("int64")
    ev["score"] = pd.to_numeric(ev["score"], errors="raise").astype("float64")
    models = [str(m) for m in ev["model"].drop_duplicates()]  # first-appearance order, vectorised
    meta = _meta_frame(queries)
    unknown = sorted(set(ev["index"].unique()) - set(meta["index"]))
    if unknown:
        shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
        raise WbrayError(
            f"{len(unknown)} scored query indices are not in the benchmark ({shown}); "
            "is --data-dir the benchmark version these scores were made on?"
        )
    known = pd.DataFrame(
        [(q.index, crit_code[c.name]) for q in queries for c in q.checklist if c.name in crit_code],
        columns=["index", "criterion"],
    ).astype({"index": "int64", "criterion": "int64"})
    pairs = ev[["index", "criterion"]].drop_duplicates().merge(known, how="left", indicator=True)
    strangers = pairs[pairs["_merge"] == "left_only"]
    if len(strangers):
        first = strangers.iloc[0]
        raise WbrayError(
            f"{len(strangers)} scored criteria are not in their query's checklist, e.g. "
            f"{names[int(first['criterion'])]!r} for query {first['index']}; were these scores made on "
            "another benchmark version?"
        )
    ok = ev[ev["status"] == "ok"]
    if ok["score"].isna().any():
        raise WbrayError("evaluations table: a row with status 'ok' has no score")

    # --- per query and per criterion (the building blocks of every upstream number)
    crit = (
        ok.groupby(["model", "index", "criterion"], sort=False)["score"].mean().rename("score").reset_index()
    )
    qscore = ok.groupby(["model", "index"], sort=False)["score"].agg(score="mean", n_ok="size").reset_index()
    qscore = qscore.merge(meta, on="index", how="left")

    overall = ok.groupby("model", sort=False)["score"].mean()
    count = qscore.groupby("model", sort=False).size()

    d1 = qscore.groupby(["model", "domain1"], sort=False)["score"].mean()
    d2 = qscore.groupby(["model", "domain2"], sort=False)["score"].mean()

    rows: dict[str, dict[str, object]] = {
        m: {"Model": m, "Overall": overall.get(m), "Count": int(count.get(m, 0))} for m in models
    }
    for (m, d), v in d1.items():
        rows[m][f"Domain1_{d}"] = v
    for (m, d), v in d2.items():
        rows[m][f"Domain2_{d}"] = v

    # --- requirement subsets
    req_values: dict[str, pd.Series] = {}
    for req in REQUIREMENTS:
        subset = requirements.get(req)
        if subset is None:
            continue
        r_idx = pd.Index(subset.r_indices, dtype="int64")
        r_set = set(subset.r_indices)
        req_values[f"{req}_R"] = (
            qscore[qscore["index"].isin(r_idx)].groupby("model", sort=False)["score"].mean()
        )
        pairs = pd.DataFrame(
            [
                (i, crit_code[n])
                for i, ns in subset.c_criteria.items()
                if i in r_set
                for n in ns
                if n in crit_code
            ],
            columns=["index", "criterion"],
        ).astype({"index": "int64", "criterion": "int64"})
        c_scores = crit.merge(pairs, on=["index", "criterion"], how="inner")
        req_values[f"{req}_C"] = c_scores.groupby("model", sort=False)["score"].mean()
    for col, series in req_values.items():
        for m, v in series.items():
            rows[str(m)][col] = v

    columns = _official_columns(d2, queries)
    official = pd.DataFrame([rows[m] for m in models], columns=columns)
    official["Count"] = official["Count"].astype("int64")

    # --- languages
    lang_means = qscore.groupby(["model", "lang"], sort=False)["score"].mean()
    languages = pd.DataFrame(
        [{"Model": m, **{lang: lang_means.get((m, lang)) for lang in LANGS}} for m in models],
        columns=["Model", *LANGS],
    )

    failures = _failures(ev, models, meta)
    per_query = _per_query(ev, qscore, meta)
    return Leaderboard(official=official, languages=languages, failures=failures, per_query=per_query)


def _official_columns(d2: pd.Series, queries: Sequence[Query]) -> list[str]:
    """Upstream's column order: Model, Overall, Count, Domain1_* (fixed order), Domain2_* grouped
    by domain1 and sorted by the cross-model mean (best first), then style/format/length R and C."""
    d2_to_d1: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for pos, q in enumerate(queries):
        d2_to_d1.setdefault(q.domain2, q.domain1)
        first_seen.setdefault(q.domain2, pos)
    cross_mean = d2.groupby(level=1, sort=False).mean() if len(d2) else pd.Series(dtype="float64")
    cols = ["Model", "Overall", "Count"] + [f"Domain1_{d}" for d in DOMAIN1_ORDER]
    for d1 in DOMAIN1_ORDER:
        members = [d for d in cross_mean.index if d2_to_d1.get(str(d)) == d1]
        members.sort(key=lambda d: (-float(cross_mean[d]), first_seen.get(str(d), 0)))
        cols += [f"Domain2_{d}" for d in members]
    for req in REQUIREMENTS:
        cols += [f"{req}_R", f"{req}_C"]
    return cols


def _failures(ev: pd.DataFrame, models: list[str], meta: pd.DataFrame) -> pd.DataFrame:
    is_ok = ev["status"] == "ok"
    ev = ev.assign(ok=is_ok.astype("int64"), failed=(~is_ok).astype("int64"))
    per_eval = ev.groupby("model", sort=False)[["ok", "failed"]].sum()
    per_crit = ev.groupby(["model", "index", "criterion"], sort=False)["ok"].sum()
    crit_failed = (per_crit == 0).groupby(level=0, sort=False).sum()
    per_query = ev.groupby(["model", "index"], sort=False)["ok"].sum()
    query_failed = (per_query == 0).groupby(level=0, sort=False).sum()
    seen = ev.groupby("model", sort=False)["index"].nunique()
    n_bench = len(meta)
    out = pd.DataFrame(
        {
            "Model": models,
            "evaluations_ok": [int(per_eval.loc[m, "ok"]) for m in models],
            "evaluations_failed": [int(per_eval.loc[m, "failed"]) for m in models],
            "criteria_failed": [int(crit_failed.get(m, 0)) for m in models],
            "queries_failed": [int(query_failed.get(m, 0)) for m in models],
            "queries_missing": [max(n_bench - int(seen.get(m, 0)), 0) for m in models],
        }
    )
    return out


def _per_query(ev: pd.DataFrame, qscore: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    counts = (
        ev.assign(failed=(ev["status"] != "ok").astype("int64"))
        .groupby(["model", "index"], sort=False)["failed"]
        .sum()
        .rename("n_failed")
        .reset_index()
    )
    out = counts.merge(qscore[["model", "index", "score", "n_ok"]], on=["model", "index"], how="left")
    out = out.merge(meta, on="index", how="left")
    out["n_ok"] = out["n_ok"].fillna(0).astype("int64")
    out["model"] = out["model"].astype(str)
    return out[["model", "index", "domain1", "domain2", "lang", "score", "n_ok", "n_failed"]]
