"""Every kind of defect is reported with file:line and the field; nothing is skipped silently."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wbray.dataset import example_dir, load_benchmark, load_queries, load_requirements, validate_path
from wbray.errors import DataError, Defect


def _example_rows() -> list[dict[str, Any]]:
    with (example_dir() / "queries.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


ROWS = _example_rows()


def _line(row: dict[str, Any]) -> bytes:
    return json.dumps(row, ensure_ascii=False).encode("utf-8")


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def _row(number: int = 1, /, **changes: Any) -> dict[str, Any]:
    """Example row ``number`` (1-based) with some keys replaced."""
    row = copy.deepcopy(ROWS[number - 1])
    row.update(changes)
    return row


def _mutate(fn: Callable[[dict[str, Any]], None]) -> bytes:
    row = _row(2)
    fn(row)
    return _line(row)


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda row: row.pop(key)


def _drop_item_key(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda row: row["checklist"][1].pop(key)


def _dup_name(row: dict[str, Any]) -> None:
    row["checklist"][2]["name"] = row["checklist"][0]["name"]


def _extra_item_key(row: dict[str, Any]) -> None:
    row["checklist"][0]["weight"] = "2"


def _int_band(row: dict[str, Any]) -> None:
    row["checklist"][0]["1-2"] = 1


def _item_not_object(row: dict[str, Any]) -> None:
    row["checklist"][4] = "just a string"


# (second line of a three-line file, expected field, expected message fragment)
CASES: dict[str, tuple[bytes, str, str]] = {
    "malformed JSON": (b'{"index": 2, "domain1": ', "", "malformed JSON: Expecting value"),
    "not an object": (b"[1, 2]", "", "expected a JSON object, got array"),
    "missing key": (_mutate(_drop("domain2")), "domain2", "missing required key"),
    "missing checklist": (_mutate(_drop("checklist")), "checklist", "missing required key"),
    "missing lang": (_mutate(_drop("lang")), "lang", "missing required key"),
    "bad lang": (_line(_row(2, lang="fr")), "lang", "expected one of 'zh', 'en', got string 'fr'"),
    "string index": (_line(_row(2, index="2")), "index", "expected an integer, got string '2'"),
    "bool index": (_line(_row(2, index=True)), "index", "expected an integer, got boolean true"),
    "float index": (_line(_row(2, index=2.0)), "index", "expected an integer, got number 2.0"),
    "mistyped domain1": (_line(_row(2, domain1=None)), "domain1", "expected a string, got null"),
    "empty query": (_line(_row(2, query="  \n ")), "query", "empty query"),
    "checklist not a list": (_line(_row(2, checklist={})), "checklist", "expected an array of criteria"),
    "empty checklist": (_line(_row(2, checklist=[])), "checklist", "empty list"),
    "item lacks 9-10": (_mutate(_drop_item_key("9-10")), "checklist[1]", "missing key(s) '9-10'"),
    "item lacks name": (_mutate(_drop_item_key("name")), "checklist[1]", "missing key(s) 'name'"),
    "item extra key": (_mutate(_extra_item_key), "checklist[0]", "unknown key(s) 'weight'"),
    "item value type": (_mutate(_int_band), "checklist[0].1-2", "expected a string, got integer 1"),
    "item not object": (_mutate(_item_not_object), "checklist[4]", "expected an object"),
    "duplicate criterion name": (_mutate(_dup_name), "checklist[2].name", "duplicate criterion name"),
    "unknown row key": (_line(_row(2, source="web")), "source", "unknown key"),
    "non-UTF-8 bytes": (_line(_row(2)).replace("写".encode(), b"\xff\xfe", 1), "", "not valid UTF-8"),
    "blank line": (b"   ", "", "blank line"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_defect_names_file_line_and_field(case: str, tmp_path: Path) -> None:
    bad_line, field, fragment = CASES[case]
    path = _write(tmp_path / "queries.jsonl", [_line(_row(1)), bad_line, _line(_row(3))])
    defects = validate_path(path)
    assert defects, case
    matching = [d for d in defects if d.line == 2 and d.field == field and fragment in d.message]
    assert matching, f"{case}: {[str(d) for d in defects]}"
    prefix = f"{path}:2: {field}: " if field else f"{path}:2: "
    assert str(matching[0]).startswith(prefix)
    # The other lines are fine.
    assert {d.line for d in defects} == {2}
    with pytest.raises(DataError) as info:
        load_queries(path)
    assert info.value.defects == defects
    assert str(path) in str(info.value)


def test_duplicate_index_names_both_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "queries.jsonl", [_line(_row(1)), _line(_row(2)), _line(_row(3, index=1))])
    assert [str(d) for d in validate_path(path)] == [f"{path}:3: index: duplicate index 1 (also on line 1)"]


def test_all_defects_are_reported_at_once(tmp_path: Path) -> None:
    lines = [_line(_row(1)), b"", b"{oops", _line(_row(4, index="4", query="")), _line(_row(5, lang="de"))]
    path = _write(tmp_path / "queries.jsonl", lines)
    defects = validate_path(path)
    assert [(d.line, d.field) for d in defects] == [(2, ""), (3, ""), (4, "index"), (4, "query"), (5, "lang")]
    with pytest.raises(DataError, match=r"queries\.jsonl:2: blank line .*\(and 4 more\)"):
        load_queries(path)


def test_trailing_blank_line_is_a_defect(tmp_path: Path) -> None:
    path = tmp_path / "queries.jsonl"
    path.write_bytes(_line(_row(1)) + b"\n\n")
    assert [(d.line, d.message) for d in validate_path(path)] == [
        (2, "blank line (every line must hold one JSON object)")
    ]


def test_crlf_and_missing_final_newline_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "queries.jsonl"
    path.write_bytes(_line(_row(1)) + b"\r\n" + _line(_row(2)))
    assert validate_path(path) == []
    assert [q.index for q in load_queries(path)] == [1, 2]


def test_first_release_row_needs_no_lang(tmp_path: Path) -> None:
    row = _row(1)
    del row["lang"]
    row["criteria"] = row.pop("checklist")
    path = _write(tmp_path / "queries.jsonl", [_line(row)])
    assert validate_path(path) == []
    assert load_queries(path)[0].lang is None
    both = _row(1, criteria=[])
    bad = _write(tmp_path / "both.jsonl", [_line(both)])
    assert [d.field for d in validate_path(bad)] == ["criteria"]


def test_first_release_defects_use_its_key(tmp_path: Path) -> None:
    row = _row(1)
    del row["lang"]
    row["criteria"] = row.pop("checklist")
    row["criteria"][3].pop("7-8")
    path = _write(tmp_path / "queries.jsonl", [_line(row)])
    assert [d.field for d in validate_path(path)] == ["criteria[3]"]


def test_subset_files_need_no_lang(tmp_path: Path) -> None:
    row = _row(1)
    del row["lang"]
    assert validate_path(_write(tmp_path / "R.jsonl", [_line(row)])) == []
    assert validate_path(_write(tmp_path / "style_subset_C.jsonl", [_line(row)])) == []
    assert [d.field for d in validate_path(_write(tmp_path / "other.jsonl", [_line(row)]))] == ["lang"]


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    assert [d.message for d in validate_path(tmp_path / "nope")] == ["no such file or directory"]
    (tmp_path / "empty").mkdir()
    [defect] = validate_path(tmp_path / "empty")
    assert "no WritingBench data found" in defect.message


# --- whole directories ---------------------------------------------------------------------------


def test_official_mirror_has_no_defects(official_dir: Path) -> None:
    assert validate_path(official_dir) == []


def test_example_has_no_defects() -> None:
    assert validate_path(example_dir()) == []


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(example_dir(), root)
    return root


def _rewrite(path: Path, fn: Callable[[list[dict[str, Any]]], object]) -> None:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    fn(rows)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _messages(defects: list[Defect]) -> list[str]:
    return [str(d) for d in defects]


def test_cross_file_unknown_index(data_dir: Path) -> None:
    r_path = data_dir / "requirement/style/R.jsonl"
    c_path = data_dir / "requirement/style/C.jsonl"

    def renumber(rows: list[dict[str, Any]]) -> None:
        rows[0]["index"] = 99

    _rewrite(r_path, renumber)
    _rewrite(c_path, renumber)
    defects = validate_path(data_dir)
    assert _messages(defects) == [f"{r_path}:1: index: index 99 is not in {data_dir / 'queries.jsonl'}"]
    with pytest.raises(DataError) as info:
        load_benchmark(data_dir)
    assert info.value.defects == defects


def test_cross_file_query_text_differs(data_dir: Path) -> None:
    r_path = data_dir / "requirement/length/R.jsonl"

    def edit(rows: list[dict[str, Any]]) -> None:
        rows[1]["query"] += " (edited)"

    _rewrite(r_path, edit)
    assert [(d.path, d.line, d.field) for d in validate_path(data_dir)] == [(str(r_path), 2, "query")]


def test_cross_file_unknown_criterion(data_dir: Path) -> None:
    c_path = data_dir / "requirement/format/C.jsonl"

    def rename(rows: list[dict[str, Any]]) -> None:
        rows[2]["checklist"][0]["name"] = "Invented Criterion"

    _rewrite(c_path, rename)
    [defect] = validate_path(data_dir)
    assert (defect.path, defect.line, defect.field) == (str(c_path), 3, "checklist[0].name")
    assert "criterion 'Invented Criterion' is not in query 7's checklist" in defect.message
    # Without the query file the R file's checklist is the reference.
    (data_dir / "queries.jsonl").unlink()
    with pytest.raises(DataError) as info:
        load_requirements(data_dir)
    assert [(d.path, d.field) for d in info.value.defects] == [(str(c_path), "checklist[0].name")]


def test_cross_file_r_and_c_indices_differ(data_dir: Path) -> None:
    r_path = data_dir / "requirement/length/R.jsonl"
    c_path = data_dir / "requirement/length/C.jsonl"

    def drop_last(rows: list[dict[str, Any]]) -> None:
        rows.pop()

    _rewrite(c_path, drop_last)
    assert _messages(validate_path(data_dir)) == [f"{r_path}:4: index: index 11 has no row in {c_path}"]
    _rewrite(r_path, lambda rows: rows.pop(0))
    assert _messages(validate_path(data_dir)) == [
        f"{r_path}:3: index: index 11 has no row in {c_path}",
        f"{c_path}:1: index: index 1 has no row in {r_path}",
    ]


def test_missing_subset_file(data_dir: Path) -> None:
    c_path = data_dir / "requirement/style/C.jsonl"
    c_path.unlink()
    [defect] = validate_path(data_dir)
    assert defect.path == str(c_path) and defect.line == 0
    assert "requirement 'style' needs both its R and C files" in defect.message
    with pytest.raises(DataError):
        load_requirements(data_dir)


def test_row_defects_in_a_directory_fail_the_load(data_dir: Path) -> None:
    path = data_dir / "requirement/format/R.jsonl"
    with path.open("ab") as fh:
        fh.write(b"\n")
    defects = validate_path(data_dir)
    assert _messages(defects) == [f"{path}:6: blank line (every line must hold one JSON object)"]
    with pytest.raises(DataError, match="blank line"):
        load_benchmark(data_dir)


def test_nested_data_roots_are_validated(tmp_path: Path) -> None:
    outer = tmp_path / "mirror"
    nested = outer / "v1" / "benchmark_query" / "requirement" / "style"
    nested.mkdir(parents=True)
    row = _row(1)
    del row["lang"]
    _write(nested / "style_subset.jsonl", [_line(row)])
    # The C file is missing and so are format/length: every absent file is named.
    defects = validate_path(outer)
    assert len(defects) == 5
    assert all(d.line == 0 and "needs both its R and C files" in d.message for d in defects)
