"""SFT curation without Ray or a model: pair scores, selection and ties, the histogram and its
renderings, the pair-file checks and the row reader/writer (constructed inputs, known answers)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from wbray._rows import SourceRow, read_rows, write_rows
from wbray.curate import (
    Bin,
    check_pair_rows,
    check_rule,
    histogram,
    histogram_html,
    histogram_text,
    load_pairs,
    pair_score,
    select,
)
from wbray.errors import DataError, WbrayError
from wbray.storage import DEFAULT_STORAGE

# -- pair scores -----------------------------------------------------------------------------------


def verdict(
    criterion: str, score: float | None, status: str = "ok", repeat: int = 0, **kw: Any
) -> dict[str, Any]:
    return {
        "criterion": criterion,
        "repeat": repeat,
        "score": score,
        "reason": f"r-{criterion}",
        "status": status,
        "error": kw.get("error"),
    }


def test_a_pair_score_is_the_mean_of_its_ok_verdicts() -> None:
    ps = pair_score(
        [
            verdict("B", 4),
            verdict("A", 8),
            verdict("C", None, "failed", error="unparseable reply"),
            verdict("A", 9, repeat=1),
        ],
        order=["A", "B", "C"],
    )
    assert ps.score == pytest.approx((8 + 9 + 4) / 3)  # the failure is left out, not a zero
    assert (ps.n_ok, ps.n_failed) == (3, 1)
    assert [(e["criterion"], e["repeat"]) for e in ps.entries] == [("A", 0), ("A", 1), ("B", 0), ("C", 0)]
    assert ps.entries[3] == {
        "criterion": "C",
        "repeat": 0,
        "score": None,
        "reason": None,
        "status": "failed",
        "error": "unparseable reply",
    }


def test_a_pair_without_ok_verdicts_has_no_score() -> None:
    ps = pair_score([verdict("A", None, "failed", error="engine: timeout")], order=["A"])
    assert ps.score is None and (ps.n_ok, ps.n_failed) == (0, 1)


# -- selection -------------------------------------------------------------------------------------


def test_keep_half_keeps_exactly_half_breaking_ties_by_input_order() -> None:
    scored = [("a", 5.0), ("b", 7.0), ("c", 5.0), ("d", 9.0), ("e", 5.0), ("f", 1.0)]
    sel = select(scored, keep=0.5)
    # Best first: d 9, b 7, then three 5s of which only the earliest (a) fits.
    assert sel.kept == ("a", "b", "d")  # in input order
    assert sel.dropped == ("c", "e", "f")
    assert sel.cut == 5.0 and sel.tied_at_cut == (3, 1)
    assert "3 of 6 scored pairs" in sel.rule and "ties: earlier row first" in sel.rule


@pytest.mark.parametrize(
    ("keep", "n", "kept"),
    [(0.5, 5, 2), (0.5, 1, 0), (1.0, 3, 3), (0.29, 100, 29), (0.7, 10, 7), (0.01, 50, 0)],
)
def test_keep_rounds_down_exactly(keep: float, n: int, kept: int) -> None:
    # 0.29 * 100 is 28.999999999999996 in binary floating point; the decimal reading keeps 29.
    assert len(select([(i, 5.0) for i in range(n)], keep=keep).kept) == kept


def test_min_score_keeps_scores_at_or_above_the_threshold() -> None:
    scored = [("a", 20 / 3), ("b", 6.5), ("c", 7.0), ("d", 6.666)]
    sel = select(scored, min_score=6.666666667)
    assert sel.kept == ("a", "c") and sel.dropped == ("b", "d")
    assert sel.cut == pytest.approx(20 / 3) and sel.tied_at_cut == (0, 0)
    assert select(scored, min_score=10).kept == () and select(scored, min_score=10).cut is None


@pytest.mark.parametrize(
    ("keep", "min_score", "message"),
    [
        (None, None, "exactly one selection rule"),
        (0.5, 7.0, "exactly one selection rule"),
        (0.0, None, r"keep must be a fraction in \(0, 1\], got 0.0"),
        (1.5, None, "keep must be a fraction"),
        (float("nan"), None, "keep must be a fraction"),
        (None, 0.5, "min_score must be between 1 and 10"),
        (None, 11.0, "min_score must be between 1 and 10"),
    ],
)
def test_bad_rules_are_refused(keep: float | None, min_score: float | None, message: str) -> None:
    with pytest.raises(WbrayError, match=message):
        check_rule(keep, min_score)


# -- histogram -------------------------------------------------------------------------------------


def test_the_histogram_bins_scores_over_the_scale() -> None:
    scores = [1.0, 1.99, 2.0, 5.5, 9.0, 9.99, 10.0]
    kept = [False, False, False, True, True, True, True]
    hist = histogram(scores, kept)
    assert len(hist.bins) == 9
    assert hist.bins[0] == Bin(1.0, 2.0, 2, 0)
    assert hist.bins[1] == Bin(2.0, 3.0, 1, 0)
    assert hist.bins[4] == Bin(5.0, 6.0, 1, 1)
    assert hist.bins[8] == Bin(9.0, 10.0, 3, 3)  # the last bin is closed: 10 lands in 9-10
    assert sum(b.count for b in hist.bins) == len(scores)
    assert hist.stats["median"] == 5.5 and hist.stats["min"] == 1.0 and hist.stats["max"] == 10.0
    assert hist.stats["mean"] == pytest.approx(sum(scores) / 7)


def test_the_histogram_refuses_scores_off_the_scale() -> None:
    with pytest.raises(ValueError, match="outside"):
        histogram([0.5], [False])
    with pytest.raises(ValueError, match="2 scores but 1 kept flags"):
        histogram([1.0, 2.0], [True])


def test_an_empty_histogram_has_no_statistics() -> None:
    hist = histogram([], [])
    assert (
        all(b.count == 0 for b in hist.bins) and hist.stats["mean"] is None and hist.stats["median"] is None
    )
    assert histogram_text(hist).splitlines()[-1].split() == ["all", "0", "0"]


def test_the_text_table() -> None:
    hist = histogram([2.5, 2.5, 2.5, 2.5, 8.0, 8.0], [False, False, False, False, True, False])
    lines = histogram_text(hist).splitlines()
    assert lines[0].startswith("score   pairs  kept")
    assert lines[2] == "2-3         4     0  " + "░" * 40  # the tallest bar is 40 wide
    assert lines[8] == "8-9         2     1  " + "█" * 10 + "░" * 10
    assert lines[-1] == "all         6     1"


def test_the_html_page_is_self_contained() -> None:
    hist = histogram([2.5, 8.0, 8.0], [False, True, True])
    page = histogram_html(
        hist, {"input": "<pairs>.jsonl", "rule": "keep", "counts": {"pairs": 3}, "cut_score": 8.0}
    )
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "</svg>" in page
    assert "&lt;pairs&gt;.jsonl" in page  # text from the user's data is escaped
    assert "<script" not in page
    # No external resource: the only URL is the SVG namespace.
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"]
    assert "lowest kept score 8" in page and 'stroke-dasharray="4 3"' in page


# -- pair files ------------------------------------------------------------------------------------


def checklist(*names: str) -> list[dict[str, str]]:
    return [
        {"name": n, "criteria_description": "d", "1-2": "a", "3-4": "b", "5-6": "c", "7-8": "d", "9-10": "e"}
        for n in names
    ]


def src(*values: Any) -> list[SourceRow]:
    return [SourceRow(i, v) for i, v in enumerate(values, start=1)]


def test_pairs_keep_every_column_and_default_their_ids() -> None:
    pairs, defects = check_pair_rows(
        src(
            {"prompt": "Write a toast.", "response": "Cheers!", "source": "forum", "turns": 1},
            {"query": "Write a memo.", "response": "", "checklist": checklist("A", "B")},
        ),
        "p.jsonl",
    )
    assert defects == []
    assert [(p.id, p.prompt, p.response) for p in pairs] == [
        (1, "Write a toast.", "Cheers!"),
        (2, "Write a memo.", ""),
    ]
    assert pairs[0].row["source"] == "forum" and pairs[0].checklist is None
    assert pairs[1].checklist is not None and [c["name"] for c in pairs[1].checklist] == ["A", "B"]


def test_every_pair_defect_is_named_by_line_and_field() -> None:
    _, defects = check_pair_rows(
        src(
            {"id": "x", "prompt": "p", "response": "r"},
            {"id": "x", "prompt": "p", "response": "r"},
            {"prompt": "p", "query": "q", "response": "r", "id": "y"},
            {"id": "z", "response": "r"},
            {"id": "w", "prompt": "p"},
            {"id": "v", "prompt": "p", "response": "r", "score": 3},
            {"id": "u", "prompt": "p", "response": "r", "checklist": checklist("A", "a")},
            {"prompt": "p", "response": "r"},
            {"id": 1.5, "prompt": "p", "response": "r", "lang": "de"},
        ),
        "p.jsonl",
    )
    assert [str(d) for d in defects] == [
        "p.jsonl:2: id: duplicate id 'x' (also on line 1)",
        "p.jsonl:3: prompt: give 'prompt' or 'query', not both",
        "p.jsonl:4: prompt: missing required key (the instruction, as 'prompt' or 'query')",
        "p.jsonl:5: response: expected a string, got null",
        "p.jsonl:6: score: the curation writes this column: rename it in the input",
        "p.jsonl:7: checklist[1].name: 'a' repeats checklist[0]'s name",
        "p.jsonl:8: id: missing, while other rows give one (give every row an id, or none)",
        "p.jsonl:9: id: expected a string or an integer, got float",
        "p.jsonl:9: lang: expected one of 'zh', 'en', got 'de'",
    ]


def test_a_bad_pair_file_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "p", "response": "r"}\n\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^bad pair file: {re.escape(str(path))}:2: blank line"):
        load_pairs(str(path))


def test_rows_round_trip_in_both_formats(tmp_path: Path) -> None:
    rows = [
        {
            "prompt": "p1",
            "response": "r1",
            "score": 7.5,
            "criteria_scores": [{"criterion": "A", "score": 7.5}],
        },
        {"prompt": "p2", "response": "r2", "score": None, "criteria_scores": []},
    ]
    for name in ("out.jsonl", "out.parquet"):
        uri = str(tmp_path / name)
        write_rows(uri, rows, "jsonl" if name.endswith("jsonl") else "parquet", DEFAULT_STORAGE)
        back = read_rows(uri)
        assert back.defects == [] and [r.line for r in back.rows] == [1, 2]
        assert back.rows[0].value["criteria_scores"] == [{"criterion": "A", "score": 7.5}]
        assert back.rows[1].value["score"] is None
    first = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()[0]
    assert json.loads(first)["prompt"] == "p1"


def test_an_empty_or_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert [str(d) for d in read_rows(str(tmp_path / "empty.jsonl")).defects] == [
        f"{tmp_path / 'empty.jsonl'}: no rows (expected one JSON object per line, or a Parquet table)"
    ]
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(WbrayError, match="not a readable Parquet file"):
        read_rows(str(tmp_path / "bad.parquet"))
    with pytest.raises(WbrayError, match="not found"):
        read_rows(str(tmp_path / "missing.jsonl"))
