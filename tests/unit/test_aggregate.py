"""Aggregation: every number checked against values computed independently in the test."""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from wbray.aggregate import (
    aggregate,
    read_score_inputs,
    read_upstream_scores,
    to_markdown,
    write_csv,
    write_upstream_scores,
    write_xlsx,
)
from wbray.errors import DataError, WbrayError
from wbray.records import DOMAIN1_ORDER, EVAL_COLUMNS, Criterion, Query, RequirementSubset


def _q(index: int, d1: str, d2: str, lang: str, names: list[str]) -> Query:
    crits = tuple(Criterion(n, {"name": n, "criteria_description": "d"}) for n in names)
    return Query(index=index, domain1=d1, domain2=d2, query=f"q{index}", checklist=crits, lang=lang)


AE, FB = "Academic & Engineering", "Finance & Business"
QUERIES = [
    _q(1, AE, "Paper Outline", "en", ["a", "b", "c"]),
    _q(2, AE, "Abstract", "zh", ["a", "b"]),
    _q(3, FB, "Market Report", "en", ["x", "y"]),
    _q(4, FB, "Market Report", "zh", ["x", "y"]),
]
REQS = {
    "style": RequirementSubset("style", (1, 3), {1: ("b",), 3: ("y",)}),
    "format": RequirementSubset("format", (2,), {2: ("a",)}),
    "length": RequirementSubset("length", (4,), {4: ("x",)}),
}


def _ev(model: str, index: int, crit: str, score: float | None, repeat: int = 0) -> dict[str, object]:
    return {
        "model": model,
        "index": index,
        "criterion": crit,
        "repeat": repeat,
        "score": score,
        "reason": "r" if score is not None else "garbage reply",
        "status": "ok" if score is not None else "failed",
        "error": None if score is not None else "no_json_object",
    }


@pytest.fixture()
def evaluations() -> pd.DataFrame:
    rows = [
        # model A: everything scored, criterion 1/b judged twice (repeats)
        _ev("A", 1, "a", 8),
        _ev("A", 1, "b", 6),
        _ev("A", 1, "b", 7, repeat=1),
        _ev("A", 1, "c", 9),
        _ev("A", 2, "a", 5),
        _ev("A", 2, "b", 4),
        _ev("A", 3, "x", 10),
        _ev("A", 3, "y", 2),
        _ev("A", 4, "x", 3),
        _ev("A", 4, "y", 3),
        # model B: query 2 missing; on query 3 criterion y failed (its C criterion); query 4 failed entirely
        _ev("B", 1, "a", 4),
        _ev("B", 1, "b", 5),
        _ev("B", 1, "c", 6),
        _ev("B", 3, "x", 7),
        _ev("B", 3, "y", None),
        _ev("B", 4, "x", None),
        _ev("B", 4, "y", None),
    ]
    return pd.DataFrame(rows, columns=list(EVAL_COLUMNS))


def test_model_a_numbers(evaluations: pd.DataFrame) -> None:
    board = aggregate(evaluations, QUERIES, REQS)
    a = board.official.set_index("Model").loc["A"]
    # Query scores are means of ALL evaluations (the repeated criterion counts twice).
    q1, q2, q3, q4 = (8 + 6 + 7 + 9) / 4, (5 + 4) / 2, (10 + 2) / 2, 3.0
    all_scores = [8, 6, 7, 9, 5, 4, 10, 2, 3, 3]
    assert a["Overall"] == pytest.approx(sum(all_scores) / len(all_scores))  # micro, not mean of queries
    assert a["Count"] == 4
    assert a[f"Domain1_{AE}"] == pytest.approx((q1 + q2) / 2)
    assert a[f"Domain1_{FB}"] == pytest.approx((q3 + q4) / 2)
    assert a["Domain2_Market Report"] == pytest.approx((q3 + q4) / 2)
    assert a["Domain2_Paper Outline"] == pytest.approx(q1)
    assert a["style_R"] == pytest.approx((q1 + q3) / 2)
    # C uses criterion means: 1/b is the mean of its two repeats.
    assert a["style_C"] == pytest.approx(((6 + 7) / 2 + 2) / 2)
    assert a["format_R"] == pytest.approx(q2)
    assert a["format_C"] == pytest.approx(5)
    assert a["length_R"] == pytest.approx(q4) and a["length_C"] == pytest.approx(3)
    langs = board.languages.set_index("Model").loc["A"]
    assert langs["en"] == pytest.approx((q1 + q3) / 2)
    assert langs["zh"] == pytest.approx((q2 + q4) / 2)


def test_failures_excluded_and_counted_never_zero(evaluations: pd.DataFrame) -> None:
    board = aggregate(evaluations, QUERIES, REQS)
    b = board.official.set_index("Model").loc["B"]
    assert b["Overall"] == pytest.approx((4 + 5 + 6 + 7) / 4)
    assert b["Count"] == 2  # query 2 missing, query 4 failed entirely
    assert b[f"Domain1_{FB}"] == pytest.approx(7)  # only query 3, and only its successful criterion
    assert b["style_R"] == pytest.approx(((4 + 5 + 6) / 3 + 7) / 2)
    assert b["style_C"] == pytest.approx(5)  # 3/y failed: excluded, not zero
    # Nothing to average: upstream's sheet holds 0 there (calculate_requirement_scores:
    # `sum(score_R) / len(score_R) if len(score_R) else 0`), every other view shows it empty.
    for col in ("format_R", "format_C", "length_R", "length_C"):
        assert b[col] == 0 and ("B", col) in board.no_data
        assert math.isnan(board.scaled().set_index("Model").loc["B", col])
    assert not {c for m, c in board.no_data if m == "A"}
    fails = board.failures.set_index("Model")
    assert fails.loc["B"].to_dict() == {
        "evaluations_ok": 4,
        "evaluations_failed": 3,
        "criteria_failed": 3,
        "queries_failed": 1,
        "queries_missing": 1,
    }
    assert fails.loc["A", "evaluations_failed"] == 0
    per_q = board.per_query.set_index(["model", "index"])
    assert per_q.loc[("B", 4), "n_failed"] == 2 and math.isnan(per_q.loc[("B", 4), "score"])
    assert per_q.loc[("B", 4), "status"] == "failed" and per_q.loc[("B", 2), "status"] == "missing"
    assert per_q.loc[("B", 1), "status"] == "scored" and len(board.per_query) == 8  # 2 models x 4 queries
    cover = board.coverage.set_index("Model")
    assert cover.loc["B", ["queries_selected", "queries_scored"]].tolist() == [4, 2]
    assert cover.loc["B", "coverage"] == 0.5 and not cover.loc["B", "complete"] and cover.loc["A", "complete"]
    assert board.incomplete == ["B"] and board.coverage_text("B") == "2/4 (50.0%)"


def test_official_columns_and_subdomain_order(evaluations: pd.DataFrame) -> None:
    board = aggregate(evaluations, QUERIES, REQS)
    cols = list(board.official.columns)
    assert cols[:3] == ["Model", "Overall", "Count"]
    assert cols[3:9] == [f"Domain1_{d}" for d in DOMAIN1_ORDER]
    # Within Academic & Engineering: Paper Outline (mean over models (8.5+5)/2) before Abstract (4.5).
    assert cols[9:12] == ["Domain2_Paper Outline", "Domain2_Abstract", "Domain2_Market Report"]
    assert cols[12:] == ["style_R", "style_C", "format_R", "format_C", "length_R", "length_C"]
    scaled = board.scaled().set_index("Model")
    assert scaled.loc["A", "Overall"] == pytest.approx(
        10 * board.official.set_index("Model").loc["A", "Overall"]
    )
    assert scaled.loc["A", "Count"] == 4


def test_unknown_index_or_criterion_is_an_error(evaluations: pd.DataFrame) -> None:
    bad = pd.concat([evaluations, pd.DataFrame([_ev("A", 99, "a", 5)])], ignore_index=True)
    with pytest.raises(WbrayError, match=r"not in the benchmark \(99\)"):
        aggregate(bad, QUERIES, REQS)
    bad = pd.concat([evaluations, pd.DataFrame([_ev("A", 1, "zzz", 5)])], ignore_index=True)
    with pytest.raises(WbrayError, match="'zzz' for query 1"):
        aggregate(bad, QUERIES, REQS)


def test_round_trip_through_upstream_files(evaluations: pd.DataFrame, tmp_path: Path) -> None:
    write_upstream_scores(evaluations, tmp_path)
    lines = (tmp_path / "scores" / "A.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {
        "index": 1,
        "scores": {
            "a": [{"score": 8, "reason": "r"}],
            "b": [{"score": 6, "reason": "r"}, {"score": 7, "reason": "r"}],
            "c": [{"score": 9, "reason": "r"}],
        },
    }
    # Failures go to a sidecar upstream never globs, and come back on read.
    assert (tmp_path / "failures" / "B.scores.jsonl").is_file()
    back = read_score_inputs([tmp_path])
    assert sorted(back["model"].unique()) == ["A", "B"]
    assert (back["status"] == "failed").sum() == 3
    before = aggregate(evaluations, QUERIES, REQS)
    after = aggregate(back, QUERIES, REQS)
    pd.testing.assert_frame_equal(
        before.official.set_index("Model").sort_index(), after.official.set_index("Model").sort_index()
    )
    pd.testing.assert_frame_equal(
        before.failures.set_index("Model").sort_index(), after.failures.set_index("Model").sort_index()
    )


def test_bad_score_file_names_file_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "m.jsonl"
    f.write_text(
        '{"index": 1, "scores": {"a": [{"score": 7, "reason": "ok"}]}}\n'
        "{not json\n"
        '{"index": 2, "scores": {"a": [{"score": 11, "reason": "too high"}]}}\n'
        '{"index": 3, "scores": {"a": [{"score": "7", "reason": "string"}]}}\n'
        '{"index": 4, "scores": {}}\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError) as info:
        read_upstream_scores(f)
    text = "\n".join(map(str, info.value.defects))
    assert f"{f}:2: malformed JSON" in text
    assert f"{f}:3: scores.a[0].score: must be an integer 1-10, got 11" in text
    assert f"{f}:4: scores.a[0].score: must be an integer 1-10, got '7'" in text
    # Upstream divides by the number of evaluations of a line: an empty one cannot be read.
    assert f"{f}:5: scores: must be a non-empty object" in text
    assert len(info.value.defects) == 4


def test_duplicate_model_names_rejected(tmp_path: Path) -> None:
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "m.jsonl").write_text('{"index": 1, "scores": {"a": [{"score": 1, "reason": ""}]}}\n')
    with pytest.raises(WbrayError, match="model 'm' appears twice"):
        read_score_inputs([tmp_path / "x", tmp_path / "y"])


def test_outputs(evaluations: pd.DataFrame, tmp_path: Path) -> None:
    board = aggregate(evaluations, QUERIES, REQS)
    xlsx = write_xlsx(board, tmp_path / "out" / "board.xlsx")
    wb = openpyxl.load_workbook(xlsx)
    assert wb.sheetnames[0] == "Leaderboard"
    first = [c.value for c in wb.worksheets[0][1]]
    assert first == list(board.official.columns)
    a_row = [c.value for c in wb.worksheets[0][2]]
    assert a_row[0] == "A" and a_row[1] == pytest.approx(board.official["Overall"].iloc[0])
    assert "Leaderboard x10" in wb.sheetnames and "Failures" in wb.sheetnames
    csv = pd.read_csv(write_csv(board, tmp_path / "board.csv"))
    assert list(csv.columns) == list(board.official.columns)
    md = to_markdown(board)
    a_overall = 10 * board.official.set_index("Model").loc["A", "Overall"]
    assert f"| A | {a_overall:.2f} |" in md
    assert "| B (incomplete) | " in md and "## Coverage and failures" in md
    assert "Incomplete: B 2/4 (50.0%)" in md


# --- parity with upstream's algorithm on the real benchmark -------------------------------------


def _reference_upstream(score_lines: list[dict], bench: list[dict], req_r: dict, req_c: dict) -> dict:
    """An independent plain-Python rendition of upstream calculate_scores.py's arithmetic."""
    domains = {b["index"]: (b["domain1"], b["domain2"]) for b in bench}
    q_mean, details, total, n = {}, {}, 0.0, 0
    for rec in score_lines:
        vals = []
        details[rec["index"]] = {}
        for name, evs in rec["scores"].items():
            ss = [e["score"] for e in evs]
            vals += ss
            details[rec["index"]][name] = sum(ss) / len(ss)
        q_mean[rec["index"]] = sum(vals) / len(vals)
        total += sum(vals)
        n += len(vals)
    out = {"Overall": total / n, "Count": len(score_lines)}
    d1s, d2s = defaultdict(list), defaultdict(list)
    for i, s in q_mean.items():
        d1s[domains[i][0]].append(s)
        d2s[domains[i][1]].append(s)
    out.update({f"Domain1_{k}": sum(v) / len(v) for k, v in d1s.items()})
    out.update({f"Domain2_{k}": sum(v) / len(v) for k, v in d2s.items()})
    for req in ("style", "format", "length"):
        r_scores = [q_mean[i] for i in req_r[req] if i in q_mean]
        c_scores = [details[i][nm] for i in req_r[req] if i in q_mean for nm in req_c[req][i]]
        out[f"{req}_R"] = sum(r_scores) / len(r_scores)
        out[f"{req}_C"] = sum(c_scores) / len(c_scores)
    return out


def test_parity_with_upstream_arithmetic_on_real_benchmark(official_dir: Path, tmp_path: Path) -> None:
    from wbray.dataset import load_benchmark

    bench_rows = [json.loads(x) for x in (official_dir / "benchmark_query" / "benchmark_all.jsonl").open()]
    req_dir = official_dir / "benchmark_query" / "requirement"
    req_r = {r: [json.loads(x)["index"] for x in (req_dir / r / f"{r}_subset.jsonl").open()] for r in REQS}
    req_c = {
        r: {
            (o := json.loads(x))["index"]: [c["name"] for c in o["checklist"]]
            for x in (req_dir / r / f"{r}_subset_C.jsonl").open()
        }
        for r in REQS
    }
    rng = random.Random(7)
    expected = {}
    for model, keep in (("model-full", 1.0), ("model-partial", 0.8)):
        lines = []
        for b in bench_rows:
            if rng.random() > keep:
                continue  # a missing query
            reps = rng.choice([1, 1, 2])
            lines.append(
                {
                    "index": b["index"],
                    "scores": {
                        c["name"]: [{"score": rng.randint(1, 10), "reason": "r"} for _ in range(reps)]
                        for c in b["checklist"]
                    },
                }
            )
        (tmp_path / f"{model}.jsonl").write_text(
            "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n"
        )
        expected[model] = _reference_upstream(lines, bench_rows, req_r, req_c)

    bench = load_benchmark(official_dir)
    board = aggregate(read_score_inputs([tmp_path]), bench.queries, bench.requirements)
    got = board.official.set_index("Model")
    for model, exp in expected.items():
        for col, value in exp.items():
            assert got.loc[model, col] == pytest.approx(value, rel=1e-12, abs=1e-12), (model, col)
    d2_cols = [c for c in got.columns if c.startswith("Domain2_")]
    assert len(d2_cols) == 100


def test_public_names_all_resolve() -> None:
    import wbray.aggregate as agg

    assert sorted(agg._WHERE) == sorted(agg.__all__)
    for name in agg.__all__:
        assert getattr(agg, name) is not None
