"""Leaderboard arithmetic, exactly as upstream ``calculate_scores.py`` does it, plus what it lacks.

Input is the long "evaluations" table (one row per judge call, columns ``wbray.records.EVAL_COLUMNS``;
optionally ``line``, the source line of a row read from an upstream score file).

Upstream's definitions, kept bit for bit (function names are those of ``calculate_scores.py``):
- criterion score = mean over its repeats (``read_scores_file``: ``scores_data_details``);
- query score = mean of ALL the query's evaluations (not of criterion means);
- ``Overall`` = sum of every evaluation / their number (micro average); ``Count`` = lines read;
- ``Domain1_<d>`` / ``Domain2_<d>`` = mean of query scores (``calculate_domain_scores``);
- ``<req>_R`` = mean of query scores over the R indices; ``<req>_C`` = mean, over those queries, of
  the criterion scores of only the C-named criteria; 0 when there is nothing to average
  (``calculate_requirement_scores``: ``... if len(score_R) else 0``);
- a repeated index (upstream's resume re-scores the last saved query): every line counts in
  ``Overall`` and ``Count``; the last line replaces the earlier ones everywhere else, while the
  query keeps the place of its first line (``scores_data[index] = ...`` on a dict);
- Domain2 columns are grouped by Domain1 (upstream order) and, within a group, sorted by the mean of
  that subdomain's score across models, best first (a stable sort: ties keep first-seen order).

"Bit for bit" is meant literally: upstream adds floats left to right in a fixed order (query scores
in file order, R and C in requirement-file order), and float addition is not associative. Every sum
here is ``np.bincount(groups, weights)``, which adds each group's weights in array order, over
arrays laid out in upstream's order, so the results are the same floats, not merely close. (Python
3.11's ``sum()`` adds left to right; from 3.12 on it compensates, which can move R/C in the last bit.)

What wbray adds: failed evaluations are excluded from every mean and counted per level (evaluation,
criterion, query), never zero-filled; coverage (queries scored / selected) per model; per-language
means; the x10 leaderboard scale; other views show an empty R/C as empty rather than upstream's 0.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd

from wbray.aggregate._keys import BenchKeys, IntArray, Ints
from wbray.errors import WbrayError
from wbray.records import DOMAIN1_ORDER, EVAL_COLUMNS, LANGS, REQUIREMENTS, Query, RequirementSubset

#: Leaderboard scale: upstream scores are 1-10, the published leaderboard shows x10.
LEADERBOARD_SCALE = 10

FloatArray = npt.NDArray[np.float64]
Int32Array = npt.NDArray[np.int32]
BoolArray = npt.NDArray[np.bool_]

#: Status of a (model, query) in the per-query table.
QUERY_SCORED, QUERY_FAILED, QUERY_MISSING = "scored", "failed", "missing"


@dataclass(frozen=True)
class Leaderboard:
    """Aggregated results for one or more models.

    Attributes:
        official: One row per model with exactly upstream's columns and order, 1-10 scale, and
            upstream's values (an R/C subset with nothing to average is 0, as upstream writes it).
        languages: Model, and the mean query score per language (``zh``, ``en``), 1-10 scale.
        failures: Per model: evaluations ok/failed, criteria failed (every repeat failed),
            queries failed (no evaluation succeeded), queries missing (selected, no evaluation at all).
        per_query: One row per (model, query) that was selected or evaluated: score, domain1,
            domain2, lang, ok and failed counts, status (scored / failed / missing).
        coverage: Per model: queries selected, queries scored (among those), their ratio, and
            whether the model is complete (every selected query scored).
        no_data: (model, column) cells of ``official`` that had nothing to average but hold 0
            because upstream writes 0 there; every other view shows them empty.
        notes: Sentences every report shows above the tables (e.g. that the judge prompt is not
            the official one, judge-cache hits, flagged answers).
        intervals: Bootstrap confidence intervals (``wbray.stats.bootstrap_cis``: model, scope,
            group, estimate, low, high, n_queries; 1-10 scale); reports then show ``score ± half-width``.
        comparisons: Paired comparisons of every model with a reference model (the leader, or a
            named baseline) on the queries both have (``wbray.stats.comparisons_table``; 1-10 scale).
        noise: Judge noise per model and pooled, when the judge was asked more than once per
            criterion (``wbray.stats.judge_noise``).
    """

    official: pd.DataFrame
    languages: pd.DataFrame
    failures: pd.DataFrame
    per_query: pd.DataFrame
    coverage: pd.DataFrame
    no_data: frozenset[tuple[str, str]] = frozenset()
    notes: tuple[str, ...] = ()
    intervals: pd.DataFrame | None = None
    comparisons: pd.DataFrame | None = None
    noise: pd.DataFrame | None = None

    def half_width(self, model: str, scope: str, group: str) -> float | None:
        """The interval's half-width for one leaderboard cell (1-10 scale), when known."""
        table = self._interval_index
        hit = table.get((model, scope, group))
        if hit is None:
            return None
        low, high = hit
        if low != low or high != high:  # NaN: too few queries to resample
            return None
        return (high - low) / 2.0

    @cached_property
    def _interval_index(self) -> dict[tuple[str, str, str], tuple[float, float]]:
        if self.intervals is None or self.intervals.empty:
            return {}
        t = self.intervals
        return {
            (str(m), str(s), str(g)): (float(lo), float(hi))
            for m, s, g, lo, hi in zip(t["model"], t["scope"], t["group"], t["low"], t["high"], strict=True)
        }

    @property
    def models(self) -> list[str]:
        return [str(m) for m in self.official["Model"]]

    @property
    def incomplete(self) -> list[str]:
        """Models scored on fewer queries than were selected for them."""
        return [
            str(m) for m, ok in zip(self.coverage["Model"], self.coverage["complete"], strict=True) if not ok
        ]

    @cached_property
    def _coverage_texts(self) -> dict[str, str]:
        c = self.coverage
        return {
            str(m): f"{scored}/{selected} ({100 * ratio:.1f}%)"
            for m, scored, selected, ratio in zip(
                c["Model"], c["queries_scored"], c["queries_selected"], c["coverage"], strict=True
            )
        }

    def coverage_text(self, model: str) -> str:
        """``"998/1000 (99.8%)"``: queries scored / selected for one model."""
        return self._coverage_texts[model]

    def scaled(self) -> pd.DataFrame:
        """The official table on the leaderboard scale (x10), empty R/C cells empty (not upstream's 0);
        ``Count`` is left as is."""
        out = self.official.copy()
        score_cols = [c for c in out.columns if c not in ("Model", "Count")]
        out[score_cols] = out[score_cols] * LEADERBOARD_SCALE
        if self.no_data:
            rows = {m: i for i, m in enumerate(self.models)}
            for model, col in self.no_data:
                out.loc[out.index[rows[model]], col] = np.nan
        return out


def _check_columns(evaluations: pd.DataFrame) -> None:
    missing = [c for c in ("model", "index", "criterion", "score", "status") if c not in evaluations.columns]
    if missing:
        raise WbrayError(f"evaluations table lacks columns {missing} (expected {list(EVAL_COLUMNS)})")


def _status_ok(status: pd.Series) -> BoolArray:
    codes, names = _factorize(status)
    bad = sorted(set(names) - {"ok", "failed"})
    if bad or (codes < 0).any():
        raise WbrayError(f"evaluations table: unknown status values {bad or ['<missing>']}")
    ok = names.index("ok") if "ok" in names else -2
    return np.equal(codes, ok)


def _seq_sum(groups: Ints, weights: FloatArray, n: int) -> FloatArray:
    """Per-group sums, each group's values added left to right in array order (upstream's order)."""
    return np.bincount(groups, weights=weights, minlength=n).astype(np.float64, copy=False)


def _count(groups: Ints, n: int) -> IntArray:
    return np.bincount(groups, minlength=n).astype(np.int64, copy=False)


def _key(major: Ints, n_minor: int, minor: Ints) -> IntArray:
    """One 64-bit id per (major, minor) pair: ``major * n_minor + minor``."""
    return major.astype(np.int64) * n_minor + minor


def _mean(total: FloatArray, n: IntArray) -> FloatArray:
    out = np.full(len(total), np.nan)
    np.divide(total, n, out=out, where=n > 0)
    return out


def _codes(values: Sequence[str | None]) -> tuple[IntArray, list[str]]:
    """Codes in first-seen order; None -> -1."""
    names: dict[str, int] = {}
    out = [-1 if v is None else names.setdefault(v, len(names)) for v in values]
    return np.array(out, dtype=np.int64), list(names)


@dataclass(frozen=True)
class _Rows:
    """The evaluations table as integer arrays (one entry per row)."""

    model: Int32Array
    position: Int32Array
    pair: Int32Array
    score: FloatArray
    ok: BoolArray
    occurrence: Int32Array  # source line, or -1 when the row has none (runs)


def _factorize(column: pd.Series) -> tuple[Int32Array, list[str]]:
    """Codes (-1 for missing) and names in first-appearance order. A categorical column (what the
    score-file reader builds) is recoded from its small codes instead of being hashed again."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        used = pd.unique(codes[codes >= 0])  # first-appearance order
        lut = np.full(len(column.cat.categories) + 1, -1, dtype=np.int32)  # last slot: code -1
        lut[used] = np.arange(len(used), dtype=np.int32)
        categories = column.cat.categories
        return lut[codes], [str(categories[c]) for c in used]
    codes64, uniques = pd.factorize(column)
    return codes64.astype(np.int32), [str(u) for u in uniques]


def _rows(evaluations: pd.DataFrame, keys: BenchKeys) -> tuple[_Rows, list[str]]:
    # Every array here is 32-bit: a million rows of each are held through the whole aggregation
    # (peak memory); keys combining two ids are 64-bit (_key).
    model, models = _factorize(evaluations["model"])
    if (model < 0).any():
        raise WbrayError("evaluations table: a row has no model")
    index = pd.to_numeric(evaluations["index"], errors="raise").to_numpy()
    position = keys.position(index).astype(np.int32)
    if (position < 0).any():
        unknown = sorted(set(index[position < 0].tolist()))
        shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
        raise WbrayError(
            f"{len(unknown)} scored query indices are not in the benchmark ({shown}); "
            "is --data-dir the benchmark version these scores were made on?"
        )
    crit_codes, crit_names = _factorize(evaluations["criterion"])
    name_code = np.append(keys.name_codes(crit_names), -1).astype(np.int32)  # last slot: code -1
    pair = keys.pair(position, name_code[crit_codes]).astype(np.int32)
    if (pair < 0).any():
        bad_rows = np.flatnonzero(pair < 0)
        distinct = np.unique(_key(position[bad_rows], max(len(crit_names), 1), crit_codes[bad_rows]))
        first = int(bad_rows[0])
        raise WbrayError(
            f"{len(distinct)} scored criteria are not in their query's checklist, e.g. "
            f"{crit_names[crit_codes[first]]!r} for query {int(index[first])}; were these scores "
            "made on another benchmark version?"
        )
    del index, crit_codes
    score = pd.to_numeric(evaluations["score"], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    ok = _status_ok(evaluations["status"])
    if np.isnan(score[ok]).any():
        raise WbrayError("evaluations table: a row with status 'ok' has no score")
    occurrence = np.full(len(score), -1, dtype=np.int32)
    if "line" in evaluations.columns:
        line = evaluations["line"]
        values = (
            line.to_numpy()
            if pd.api.types.is_integer_dtype(line.dtype)
            else line.to_numpy(np.float64, na_value=0)
        )
        np.copyto(occurrence, values, where=values > 0, casting="unsafe")
    return _Rows(model, position, pair, score, ok, occurrence), models


def _selection(
    models: list[str], keys: BenchKeys, selected: Mapping[str, Collection[int]] | None
) -> BoolArray:
    """(models x queries) mask of the queries selected for each model (default: all)."""
    mask = np.ones((len(models), keys.n_queries), dtype=bool)
    for m, name in enumerate(models):
        if selected is not None and name in selected:
            mask[m] = False
            pos = keys.position(np.fromiter(selected[name], dtype=np.int64))
            mask[m, pos[pos >= 0]] = True
    return mask


def aggregate(
    evaluations: pd.DataFrame,
    queries: Sequence[Query],
    requirements: Mapping[str, RequirementSubset],
    *,
    selected: Mapping[str, Collection[int]] | None = None,
) -> Leaderboard:
    """Build the leaderboard from an evaluations table.

    Args:
        evaluations: Long table, columns as in ``wbray.records.EVAL_COLUMNS`` (``repeat``, ``reason``
            and ``error`` are optional), plus optionally ``line``: the source line of rows read from an
            upstream score file (it decides what a repeated index counts for, and the order of sums).
            Rows with status "failed" must have a null score.
        queries: The benchmark queries the evaluations refer to (domain and language lookup).
        requirements: The R/C requirement subsets (empty mapping -> requirement columns 0, as upstream).
        selected: Per model, the query indices it was meant to be scored on (a run's selection); models
            not named here were meant to be scored on every query in ``queries``. Coverage and
            "queries missing" count against this.

    Returns:
        The leaderboard; models keep their first-appearance order.

    Raises:
        WbrayError: a column is missing, a status is unknown, an ok row has no score, or an index or
            criterion is not in the benchmark.
    """
    _check_columns(evaluations)
    keys = BenchKeys.of(queries)
    rows, models = _rows(evaluations, keys)
    n_m, n_q, n_p = len(models), keys.n_queries, keys.n_pairs
    meta = _QueryMeta.of(queries)
    sel_mask = _selection(models, keys, selected)

    ok = rows.ok
    everything_ok = bool(ok.all())  # the usual case: no copies
    m, q, p, s, occ = (
        (rows.model, rows.position, rows.pair, rows.score, rows.occurrence)
        if everything_ok
        else (rows.model[ok], rows.position[ok], rows.pair[ok], rows.score[ok], rows.occurrence[ok])
    )
    mq = _key(m, n_q, q)
    # Which line of a repeated index is current (the last), and where the query sits (its first line).
    if occ.size == 0 or occ.min() == occ.max():
        # Runs (and files without repeated indices read as one occurrence): nothing to resolve,
        # and the ufunc.at passes below are the slowest lines of this function.
        first = np.full(n_m * n_q, occ[0] if occ.size else 0, dtype=np.int64)
        repeated = np.zeros(mq.size, dtype=bool)
    else:
        # One plain scatter keeps an arbitrary row's line per key; if every row then finds its own
        # line there, no key spans two lines (upstream files without repeated indices) and the
        # ufunc.at passes (~0.05 s each per million rows) are not needed.
        first = np.full(n_m * n_q, np.iinfo(np.int64).max, dtype=np.int64)
        first[mq] = occ
        if (first[mq] == occ).all():
            repeated = np.zeros(mq.size, dtype=bool)
        else:
            last = np.full(n_m * n_q, np.iinfo(np.int64).min, dtype=np.int64)
            np.maximum.at(last, mq, occ)
            first.fill(np.iinfo(np.int64).max)
            np.minimum.at(first, mq, occ)
            repeated = (first != last)[mq]
    if repeated.any():
        cur = ~repeated | (occ == last[mq])
        mq_cur, p_cur, s_cur, m_cur = mq[cur], p[cur], s[cur], m[cur]
    else:
        mq_cur, p_cur, s_cur, m_cur = mq, p, s, m

    overall = _mean(_seq_sum(m, s, n_m), _count(m, n_m))
    q_sum = _seq_sum(mq_cur, s_cur, n_m * n_q)
    q_n = _count(mq_cur, n_m * n_q)
    scored = q_n > 0
    q_mean = _mean(q_sum, q_n)
    # Criterion means are only needed for the C criteria of the requirement subsets.
    req_keys = {req: _requirement_keys(requirements.get(req), keys) for req in REQUIREMENTS}
    c_all = np.unique(np.concatenate([c for _, c in req_keys.values()]))
    c_slot = np.full(n_p, -1, dtype=np.int64)
    c_slot[c_all] = np.arange(len(c_all))
    in_c = c_slot[p_cur] >= 0
    mc = _key(m_cur[in_c], len(c_all), c_slot[p_cur[in_c]])
    c_mean_2d = _mean(_seq_sum(mc, s_cur[in_c], n_m * len(c_all)), _count(mc, n_m * len(c_all)))
    c_mean_2d = c_mean_2d.reshape(n_m, len(c_all))
    del mc, in_c, mq_cur, p_cur, s_cur, m_cur

    # Count = lines read: the scored queries, plus every earlier line of a repeated index.
    count = _count(np.flatnonzero(scored) // n_q, n_m)
    if repeated.any():
        occurrences = np.unique(np.stack([mq[repeated], occ[repeated]]), axis=1)
        extra_mq, extra_n = np.unique(occurrences[0], return_counts=True)
        np.add.at(count, extra_mq // n_q, extra_n - 1)

    # Scored queries in upstream's order: model by model, each query at its first line (runs: by index).
    sel = np.flatnonzero(scored)
    sel = sel[np.lexsort((keys.indices[sel % n_q], first[sel], sel // n_q))]
    sm, sq, sv = sel // n_q, sel % n_q, q_mean[sel]

    columns: dict[str, FloatArray] = {"Overall": overall}
    d1_mean = _group_means(sm, meta.domain1[sq], sv, n_m, len(meta.domain1_names))
    for j, d in enumerate(meta.domain1_names):
        columns[f"Domain1_{d}"] = d1_mean[:, j]
    d2_mean = _group_means(sm, meta.domain2[sq], sv, n_m, len(meta.domain2_names))
    d2_order = _domain2_order(d2_mean, meta, sm, meta.domain2[sq])
    for j in d2_order:
        columns[f"Domain2_{meta.domain2_names[j]}"] = d2_mean[:, j]

    no_data: set[tuple[str, str]] = set()
    q_mean_2d, scored_2d = q_mean.reshape(n_m, n_q), scored.reshape(n_m, n_q)
    for req in REQUIREMENTS:
        r_pos, c_pairs = req_keys[req]
        c_cols = c_slot[c_pairs]
        for col, values, have in (
            (f"{req}_R", q_mean_2d[:, r_pos], scored_2d[:, r_pos]),
            (f"{req}_C", c_mean_2d[:, c_cols], ~np.isnan(c_mean_2d[:, c_cols])),
        ):
            # nonzero() walks row by row: each model's values in requirement-file order.
            rm, rc = np.nonzero(have)
            n = _count(rm, n_m)
            columns[col] = np.where(n > 0, _mean(_seq_sum(rm, values[rm, rc], n_m), n), 0.0)
            no_data |= {(models[i], col) for i in np.flatnonzero(n == 0)}

    official = _official_table(models, columns, count, meta, d2_order)
    lang_mean = _group_means(sm, meta.lang[sq], sv, n_m, len(LANGS))
    languages = pd.DataFrame({"Model": models, **{lang: lang_mean[:, j] for j, lang in enumerate(LANGS)}})

    mq_all = mq if everything_ok else _key(rows.model, n_q, rows.position)
    del m, q, p, s, occ, mq
    failures, per_query, coverage = _bookkeeping(
        rows, mq_all, models, keys, meta, sel_mask, scored, q_mean, q_n
    )
    return Leaderboard(
        official=official,
        languages=languages,
        failures=failures,
        per_query=per_query,
        coverage=coverage,
        no_data=frozenset(no_data),
    )


@dataclass(frozen=True)
class _QueryMeta:
    """Per query position: codes of domain1, domain2 and language (-1 = none)."""

    domain1: IntArray
    domain1_names: list[str]
    domain2: IntArray
    domain2_names: list[str]
    domain2_parent: list[str]
    lang: IntArray

    @classmethod
    def of(cls, queries: Sequence[Query]) -> _QueryMeta:
        d1_names = list(DOMAIN1_ORDER) + sorted({q.domain1 for q in queries} - set(DOMAIN1_ORDER))
        d1_code = {d: i for i, d in enumerate(d1_names)}
        d2, d2_names = _codes([q.domain2 for q in queries])
        parent: dict[str, str] = {}
        for q in queries:
            parent[q.domain2] = q.domain1  # the last one wins, as in upstream's domain2_to_domain1
        lang_code = {lang: i for i, lang in enumerate(LANGS)}
        return cls(
            domain1=np.array([d1_code[q.domain1] for q in queries], dtype=np.int64),
            domain1_names=d1_names,
            domain2=d2,
            domain2_names=d2_names,
            domain2_parent=[parent[d] for d in d2_names],
            lang=np.array([lang_code.get(q.lang or "", -1) for q in queries], dtype=np.int64),
        )


def _group_means(model: IntArray, group: IntArray, values: FloatArray, n_m: int, n_g: int) -> FloatArray:
    """(models x groups) means of ``values``, summed in array order; NaN where a group is empty."""
    keep = group >= 0
    g = model[keep] * n_g + group[keep]
    return _mean(_seq_sum(g, values[keep], n_m * n_g), _count(g, n_m * n_g)).reshape(n_m, n_g)


def _domain2_order(d2_mean: FloatArray, meta: _QueryMeta, model: IntArray, d2: IntArray) -> list[int]:
    """Upstream's Domain2 column order: by Domain1 (upstream order), then by the cross-model mean of
    the subdomain score, best first; ties keep the order subdomains were first met in (model by
    model, query by query), as upstream's stable sort over its insertion-ordered dict does."""
    # The arrays are model-major in upstream's query order, so first occurrences give first-met order.
    _, first_at = np.unique(d2, return_index=True)
    seen_order = [int(j) for j in d2[np.sort(first_at)]]
    has = ~np.isnan(d2_mean)
    cross: dict[int, float] = {}
    for j in seen_order:
        values = d2_mean[has[:, j], j]
        cross[j] = float(_seq_sum(np.zeros(len(values), dtype=np.int64), values, 1)[0]) / len(values)
    order: list[int] = []
    for d1 in DOMAIN1_ORDER:
        members = [j for j in seen_order if meta.domain2_parent[j] == d1]
        order += sorted(members, key=lambda j: cross[j], reverse=True)
    return order


def _requirement_keys(subset: RequirementSubset | None, keys: BenchKeys) -> tuple[IntArray, IntArray]:
    """Query positions of the R indices and pair ids of their C criteria, in requirement-file order."""
    if subset is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    r_pos = keys.position(np.array(subset.r_indices, dtype=np.int64))
    c_q: list[int] = []
    c_names: list[str] = []
    for i, pos in zip(subset.r_indices, r_pos.tolist(), strict=True):
        for name in subset.c_criteria.get(i, ()):
            c_q.append(pos)
            c_names.append(name)
    c_pairs = keys.pair(np.array(c_q, dtype=np.int64), keys.name_codes(c_names))
    return r_pos[r_pos >= 0], c_pairs[c_pairs >= 0]


def _official_table(
    models: list[str], columns: dict[str, FloatArray], count: IntArray, meta: _QueryMeta, d2_order: list[int]
) -> pd.DataFrame:
    order = ["Overall", *(f"Domain1_{d}" for d in DOMAIN1_ORDER)]
    order += [f"Domain2_{meta.domain2_names[j]}" for j in d2_order if meta.domain2_parent[j] in DOMAIN1_ORDER]
    order += [f"{req}_{k}" for req in REQUIREMENTS for k in ("R", "C")]
    data: dict[str, object] = {"Model": models, "Overall": columns["Overall"], "Count": count}
    data.update({c: columns[c] for c in order[1:]})
    return pd.DataFrame(data, columns=["Model", "Overall", "Count", *order[1:]])


def _bookkeeping(
    rows: _Rows,
    mq_all: IntArray,
    models: list[str],
    keys: BenchKeys,
    meta: _QueryMeta,
    sel_mask: BoolArray,
    scored: BoolArray,
    q_mean: FloatArray,
    q_n: IntArray,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Failures, per-query table and coverage: what upstream's sheet cannot show."""
    n_m, n_q, n_p = len(models), keys.n_queries, keys.n_pairs
    ok = rows.ok
    failed = ~ok
    n_all = _count(rows.model, n_m)
    n_ok = n_all - _count(rows.model[failed], n_m)
    seen = _count(mq_all, n_m * n_q) > 0
    # A criterion failed when none of its rows is ok: only criteria with a failed row can be.
    crit_failed = np.zeros(n_m, dtype=np.int64)
    if failed.any():
        crit_bad = _count(_key(rows.model[failed], n_p, rows.pair[failed]), n_m * n_p) > 0
        crit_bad &= ~(_count(_key(rows.model[ok], n_p, rows.pair[ok]), n_m * n_p) > 0)
        crit_failed = _count(np.flatnonzero(crit_bad) // n_p, n_m)
    q_failed = seen & ~scored
    sel_flat = sel_mask.ravel()
    failures = pd.DataFrame(
        {
            "Model": models,
            "evaluations_ok": n_ok,
            "evaluations_failed": n_all - n_ok,
            "criteria_failed": crit_failed,
            "queries_failed": _count(np.flatnonzero(q_failed) // n_q, n_m),
            "queries_missing": _count(np.flatnonzero(sel_flat & ~seen) // n_q, n_m),
        }
    )
    n_sel = sel_mask.sum(axis=1).astype(np.int64)
    n_scored = _count(np.flatnonzero(scored & sel_flat) // n_q, n_m)
    coverage = pd.DataFrame(
        {
            "Model": models,
            "queries_selected": n_sel,
            "queries_scored": n_scored,
            "coverage": _mean(n_scored.astype(np.float64), n_sel),
            "complete": n_scored >= n_sel,
        }
    )
    listed = np.flatnonzero(seen | sel_flat)
    pm, pq = listed // n_q, listed % n_q
    failed_n = _count(mq_all[failed], n_m * n_q)[listed] if failed.any() else np.zeros(len(listed), np.int64)
    status = np.where(scored[listed], 0, np.where(seen[listed], 1, 2))
    per_query = pd.DataFrame(
        {
            "model": pd.Categorical.from_codes(pm, categories=models),
            "index": keys.indices[pq],
            "domain1": pd.Categorical.from_codes(meta.domain1[pq], categories=meta.domain1_names),
            "domain2": pd.Categorical.from_codes(meta.domain2[pq], categories=meta.domain2_names),
            "lang": pd.Categorical.from_codes(meta.lang[pq], categories=list(LANGS)),
            "score": q_mean[listed],
            "n_ok": q_n[listed],
            "n_failed": failed_n,
            "status": pd.Categorical.from_codes(
                status, categories=[QUERY_SCORED, QUERY_FAILED, QUERY_MISSING]
            ),
        }
    )
    return failures, per_query, coverage
