"""Statistics: every number checked against a separate plain-Python computation in the test.

The only thing shared with the code under test is the documented draw (numpy's ``default_rng``
seeded as ``group_seed`` says, ``integers(0, n, size=(B, n))``); per-query sums, ratios, quantiles,
sign-flip enumerations and variances are recomputed here from the rows, loop by loop.
"""

from __future__ import annotations

import itertools
import math
import statistics
import zlib
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from wbray.aggregate import aggregate
from wbray.errors import WbrayError
from wbray.records import Criterion, Query, RequirementSubset
from wbray.stats import (
    bootstrap_cis,
    compare_models,
    comparisons_table,
    format_ci,
    judge_noise,
    paired_difference,
    query_scores,
    resample_counts,
    sign_flip_p_value,
)

AE, ED = "Academic & Engineering", "Education"


def _q(index: int, d1: str, d2: str, lang: str, names: list[str]) -> Query:
    crits = tuple(Criterion(n, {"name": n, "criteria_description": "d"}) for n in names)
    return Query(index=index, domain1=d1, domain2=d2, query=f"q{index}", checklist=crits, lang=lang)


QUERIES = [
    _q(1, AE, "Abstract", "en", ["a", "b", "c"]),
    _q(2, AE, "Abstract", "zh", ["a", "b"]),
    _q(3, ED, "Lesson Plan", "en", ["x", "y"]),
    _q(4, ED, "Lesson Plan", "zh", ["x", "y", "z"]),
    _q(5, ED, "Feedback", "en", ["p", "q"]),
    _q(6, AE, "Report", "zh", ["r", "s"]),
]
REQS = {
    "style": RequirementSubset("style", (1, 3, 4), {1: ("b",), 3: ("y",), 4: ("x", "z")}),
    "format": RequirementSubset("format", (2, 5), {2: ("a",)}),
}


def _row(model: str, index: int, crit: str, score: float | None, repeat: int = 0) -> dict[str, object]:
    ok = score is not None
    return {
        "model": model,
        "index": index,
        "criterion": crit,
        "repeat": repeat,
        "score": score,
        "reason": "r" if ok else "raw",
        "status": "ok" if ok else "failed",
        "error": None if ok else "no_json_object",
    }


def _table() -> pd.DataFrame:
    """Two models, uneven criteria, one failed row, one fully failed query, one missing query."""
    rows = []
    a = {
        1: {"a": 8, "b": 6, "c": 7},
        2: {"a": 5, "b": 9},
        3: {"x": 4, "y": 6},
        4: {"x": 7, "y": 7, "z": 10},
        5: {"p": 3, "q": 8},
        6: {"r": 9, "s": 2},
    }
    b = {
        1: {"a": 6, "b": None, "c": 5},  # one failed evaluation
        2: {"a": 4, "b": 4},
        3: {"x": None, "y": None},  # the whole query failed
        4: {"x": 6, "y": 8, "z": 7},
        6: {"r": 5, "s": 5},
    }  # query 5 missing
    for model, scores in (("A", a), ("B", b)):
        for index, crits in scores.items():
            for crit, score in crits.items():
                rows.append(_row(model, index, crit, score))
    return pd.DataFrame(rows)


def _units_by_hand(table: pd.DataFrame, model: str, members: list[int], kind: str) -> tuple[list, list]:
    """Per member query: (numerator, denominator) of the statistic, from the rows, loop by loop."""
    ok = [r for r in table.to_dict("records") if r["status"] == "ok" and r["model"] == model]
    sums, counts = [], []
    for i in members:
        scores = [float(r["score"]) for r in ok if r["index"] == i]
        if kind == "micro":
            sums.append(sum(scores))
            counts.append(len(scores))
        else:  # mean of query scores
            sums.append(sum(scores) / len(scores) if scores else 0.0)
            counts.append(1 if scores else 0)
    return sums, counts


def _percentile(values: list[float], p: float) -> float:
    """Linear-interpolation percentile (numpy's default method), written out."""
    xs = sorted(values)
    h = (len(xs) - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def _bootstrap_by_hand(
    sums: list[float], counts: list[int], seed: int, key: str, b: int, conf: float
) -> tuple[float, float, float]:
    n = len(sums)
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(key.encode())]))
    draws = rng.integers(0, n, size=(b, n)).tolist()
    stats = []
    for row in draws:
        num = sum(sums[i] for i in row)
        den = sum(counts[i] for i in row)
        if den:
            stats.append(num / den)
    alpha = (1 - conf) / 2
    return sum(sums) / sum(counts), _percentile(stats, alpha), _percentile(stats, 1 - alpha)


def _ci(out: pd.DataFrame, model: str, scope: str, group: str) -> pd.Series:
    sel = out[(out["model"] == model) & (out["scope"] == scope) & (out["group"] == group)]
    assert len(sel) == 1, (model, scope, group)
    return sel.iloc[0]


@pytest.mark.parametrize(
    ("scope", "group", "members", "kind"),
    [
        ("overall", "Overall", [1, 2, 3, 4, 5, 6], "micro"),
        ("domain1", ED, [3, 4, 5], "mean"),
        ("lang", "zh", [2, 4, 6], "mean"),
        ("requirement", "style_R", [1, 3, 4], "mean"),
    ],
)
@pytest.mark.parametrize("model", ["A", "B"])
def test_bootstrap_known_answer(scope: str, group: str, members: list[int], kind: str, model: str) -> None:
    table = _table()
    out = bootstrap_cis(table, QUERIES, REQS, resamples=400, confidence=0.9, seed=7)
    sums, counts = _units_by_hand(table, model, members, kind)
    est, low, high = _bootstrap_by_hand(sums, counts, 7, f"{scope}/{group}", 400, 0.9)
    got = _ci(out, model, scope, group)
    assert got["estimate"] == pytest.approx(est, abs=1e-12)
    assert got["low"] == pytest.approx(low, abs=1e-12)
    assert got["high"] == pytest.approx(high, abs=1e-12)
    assert got["low"] <= got["estimate"] <= got["high"]
    assert got["n_queries"] == sum(1 for c in counts if c)
    if got["n_queries"] > 2:  # spread in the data: a real interval, not a point
        assert got["low"] < got["high"]


def test_bootstrap_requirement_c_known_answer() -> None:
    table = _table()
    out = bootstrap_cis(table, QUERIES, REQS, resamples=300, seed=3)
    # style C: query 1 keeps b, 3 keeps y, 4 keeps x and z (criterion score = mean of its ok repeats).
    keep = {1: ["b"], 3: ["y"], 4: ["x", "z"]}
    ok = [r for r in table.to_dict("records") if r["status"] == "ok" and r["model"] == "A"]
    sums = [sum(float(r["score"]) for r in ok if r["index"] == i and r["criterion"] in keep[i]) for i in keep]
    counts = [sum(1 for r in ok if r["index"] == i and r["criterion"] in keep[i]) for i in keep]
    est, low, high = _bootstrap_by_hand(sums, counts, 3, "requirement/style_C", 300, 0.95)
    got = _ci(out, "A", "requirement", "style_C")
    assert (got["estimate"], got["low"], got["high"]) == pytest.approx((est, low, high), abs=1e-12)
    assert est == pytest.approx((6 + 6 + 7 + 10) / 4)


def test_estimates_equal_the_leaderboard() -> None:
    table = _table()
    out = bootstrap_cis(table, QUERIES, REQS, resamples=0)
    board = aggregate(table, QUERIES, REQS).official.set_index("Model")
    column = {"overall": "Overall", "domain1": "Domain1_{}", "domain2": "Domain2_{}", "requirement": "{}"}
    checked = 0
    for rec in out.to_dict("records"):
        if rec["scope"] == "lang":
            continue
        col = column[rec["scope"]].format(rec["group"])
        want = board.loc[rec["model"], col]
        if pd.isna(want):
            assert math.isnan(rec["estimate"])
        else:
            assert rec["estimate"] == pytest.approx(float(want), abs=1e-12), col
        assert math.isnan(rec["low"]) and math.isnan(rec["high"])
        checked += 1
    assert checked >= 2 * 9


def test_bootstrap_is_seeded_and_group_streams_are_independent() -> None:
    table = _table()
    one = bootstrap_cis(table, QUERIES, REQS, resamples=200, seed=1)
    again = bootstrap_cis(table, QUERIES, REQS, resamples=200, seed=1)
    other = bootstrap_cis(table, QUERIES, REQS, resamples=200, seed=2)
    only_overall = bootstrap_cis(table, QUERIES, REQS, resamples=200, seed=1, scopes=["overall"])
    pd.testing.assert_frame_equal(one, again)
    assert not one["low"].equals(other["low"])
    pd.testing.assert_frame_equal(only_overall, one[one["scope"] == "overall"].reset_index(drop=True))


def test_bootstrap_rejects_bad_input() -> None:
    table = _table()
    with pytest.raises(WbrayError, match="not in the benchmark"):
        bootstrap_cis(table.assign(index=table["index"] + 100), QUERIES, REQS)
    with pytest.raises(WbrayError, match="lacks columns"):
        bootstrap_cis(table.drop(columns=["status"]), QUERIES)
    with pytest.raises(WbrayError, match="confidence"):
        bootstrap_cis(table, QUERIES, confidence=1.5)
    bad = table.copy()
    bad.loc[0, "score"] = None
    with pytest.raises(WbrayError, match="row 0 has status 'ok' but no finite score"):
        bootstrap_cis(bad, QUERIES)
    with pytest.raises(WbrayError, match="unknown scope"):
        bootstrap_cis(table, QUERIES, scopes=["domain3"])


def test_resample_counts_counts_the_documented_draws() -> None:
    counts = resample_counts(5, 50, 11)
    draws = np.random.default_rng(11).integers(0, 5, size=(50, 5))
    for b in range(50):
        assert counts[b].tolist() == [float((draws[b] == i).sum()) for i in range(5)]


def _paired_table(a: dict[int, float], b: dict[int, float]) -> pd.DataFrame:
    rows = []
    for model, scores in (("A", a), ("B", b)):
        for index, score in scores.items():
            # Two criteria whose mean is the query score.
            rows.append(_row(model, index, "c1", score - 1))
            rows.append(_row(model, index, "c2", score + 1))
    return pd.DataFrame(rows)


def test_paired_constant_difference_is_exact() -> None:
    a = {i: 5.0 + (i % 4) for i in range(1, 11)}
    b = {i: v - 0.5 for i, v in a.items()}
    b[99] = 3.0  # only B has it: not paired
    a[98] = 9.0  # only A has it: not paired
    result = compare_models(_paired_table(a, b), "A", "B", resamples=500)
    assert result.n_queries == 10
    assert result.difference == pytest.approx(0.5)
    assert (result.low, result.high) == pytest.approx((0.5, 0.5))
    # Of the 2**10 sign patterns only "all +" and "all -" reach |mean| = 0.5.
    assert result.p_value == pytest.approx(2 / 2**10)
    assert result.test == "exact sign-flip"


def test_paired_exact_p_value_and_interval_by_hand() -> None:
    d = [1.5, -0.5, 2.0, 0.0, 1.0, -1.0, 0.5, 3.0, -0.5]
    a = [6.0 + x for x in d]
    b = [6.0] * len(d)
    result = paired_difference(np.array(a), np.array(b), resamples=300, confidence=0.9, seed=5)
    observed = abs(sum(d) / len(d))
    patterns = list(itertools.product((1, -1), repeat=len(d)))
    hits = sum(
        1 for s in patterns if abs(sum(si * di for si, di in zip(s, d, strict=True)) / len(d)) >= observed
    )
    assert result.p_value == pytest.approx(hits / len(patterns))
    assert result.difference == pytest.approx(sum(d) / len(d))
    draws = np.random.default_rng(5).integers(0, len(d), size=(300, len(d))).tolist()
    boot = [sum(d[i] for i in row) / len(d) for row in draws]
    assert result.low == pytest.approx(_percentile(boot, 0.05), abs=1e-12)
    assert result.high == pytest.approx(_percentile(boot, 0.95), abs=1e-12)


def test_sign_flip_monte_carlo_bounds() -> None:
    rng = np.random.default_rng(0)
    big = rng.normal(2.0, 0.5, size=40)  # a large, consistent effect
    p, test = sign_flip_p_value(big, permutations=999, seed=1)
    assert p == pytest.approx(1 / 1000) and test == "sign-flip, 999 random patterns"
    symmetric = np.concatenate([big, -big])  # mean exactly 0: every pattern is at least as extreme
    p0, _ = sign_flip_p_value(symmetric, permutations=999, seed=1)
    assert p0 == pytest.approx(1.0)


def test_compare_unknown_model_names_the_models() -> None:
    with pytest.raises(WbrayError, match=r"model 'C' has no ok evaluation.*A, B"):
        compare_models(_paired_table({1: 5.0}, {1: 4.0}), "A", "C")


def test_judge_noise_on_constructed_repeats() -> None:
    rows = []
    repeats = {
        ("A", 1, "a"): [4, 6, 5],
        ("A", 1, "b"): [7, 7],
        ("A", 2, "a"): [2, 4],
        ("A", 2, "b"): [9, 9, 6],
        ("A", 3, "a"): [5],  # one repeat: no within-cell information, but it counts in the query score
        ("A", 3, "b"): [8, None],  # the failed repeat is excluded
        ("B", 1, "a"): [3, 3],
        ("B", 2, "a"): [6, 6],
    }
    for (model, index, crit), scores in repeats.items():
        for r, s in enumerate(scores):
            rows.append(_row(model, index, crit, s, repeat=r))
    out = judge_noise(pd.DataFrame(rows)).set_index("model")

    def expected(keys: list[tuple[str, int, str]]) -> tuple[float, float, float, int]:
        cells = [[s for s in repeats[k] if s is not None] for k in keys]
        cells = [c for c in cells if len(c) >= 2]
        within = sum((len(c) - 1) * statistics.variance(c) for c in cells) / sum(len(c) - 1 for c in cells)
        by_model_query: dict[tuple[str, int], list[float]] = defaultdict(list)
        for m, i, c in keys:
            by_model_query[(m, i)] += [s for s in repeats[(m, i, c)] if s is not None]
        qscores: dict[str, list[float]] = defaultdict(list)
        for (m, _), v in by_model_query.items():
            qscores[m].append(sum(v) / len(v))
        ss = sum(sum((x - statistics.mean(v)) ** 2 for x in v) for v in qscores.values())
        between = ss / sum(len(v) - 1 for v in qscores.values())
        k = statistics.mean(len(v) for v in by_model_query.values())
        return within, between, within / k, len(cells)

    for name, keys in (("A", [k for k in repeats if k[0] == "A"]), ("(all)", list(repeats))):
        within, between, noise, cells = expected(keys)
        got = out.loc[name]
        assert got["cells"] == cells
        assert got["within_var"] == pytest.approx(within)
        assert got["within_sd"] == pytest.approx(math.sqrt(within))
        assert got["between_var"] == pytest.approx(between)
        assert got["noise_var"] == pytest.approx(noise)
        assert got["reliability"] == pytest.approx(1 - noise / between)
    # B's judge never disagrees with itself.
    assert out.loc["B", "within_var"] == 0.0 and out.loc["B", "reliability"] == pytest.approx(1.0)


def test_judge_noise_without_repeats_is_nan() -> None:
    out = judge_noise(_table())
    assert (out["cells"] == 0).all()
    assert out["within_var"].isna().all() and out["reliability"].isna().all()


def test_query_scores_exclude_failures() -> None:
    qs = query_scores(_table()).set_index(["model", "index"])["score"]
    assert qs[("B", 1)] == pytest.approx((6 + 5) / 2)
    assert ("B", 3) not in qs.index  # every evaluation failed: no score, not a zero


@pytest.mark.parametrize(
    ("args", "kwargs", "text"),
    [
        ((7.231, 7.1, 7.34), {"scale": 10}, "72.31 ± 1.20"),
        ((5.0, 4.5, 5.7), {"digits": 1}, "5.0 ± 0.6"),
        ((5.0, float("nan"), float("nan")), {}, "5.00"),
        ((5.0,), {}, "5.00"),
        ((float("nan"), 1.0, 2.0), {}, "n/a"),
        ((None,), {}, "n/a"),
    ],
)
def test_format_ci(args: tuple, kwargs: dict, text: str) -> None:
    assert format_ci(*args, **kwargs) == text


def test_every_model_against_one_equals_comparing_each_pair() -> None:
    """The report's table (draws shared between comparisons of one size) gives exactly what
    comparing each pair on its own gives."""
    rng = np.random.default_rng(4)
    rows = []
    for model in ("ref", "x", "y"):
        for index in range(1, 41):
            if model == "y" and index == 7:
                continue  # y misses a query: compared on 39
            rows.append(_row(model, index, "c1", float(rng.integers(1, 11))))
    table = pd.DataFrame(rows)
    out = comparisons_table(table, "ref", resamples=300, seed=5).set_index("model")
    assert list(out.index) == ["x", "y"] and set(out["reference"]) == {"ref"}
    for model in ("x", "y"):
        alone = compare_models(table, model, "ref", resamples=300, seed=5)
        got = out.loc[model]
        assert got["n_queries"] == alone.n_queries == (40 if model == "x" else 39)
        assert (got["difference"], got["low"], got["high"], got["p_value"]) == (
            alone.difference,
            alone.low,
            alone.high,
            alone.p_value,
        )
    assert comparisons_table(table, "nobody", resamples=10).empty
