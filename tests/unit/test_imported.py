"""Answers generated elsewhere: upstream response files become generation rows named by their text."""

from __future__ import annotations

import json

import pytest

from wbray.config import load_config
from wbray.dataset import load_benchmark
from wbray.errors import DataError
from wbray.steps.imported import import_responses

FULL = load_benchmark("example")
BENCH = FULL.select(indices=[1, 2, 3])


def _file(*lines: object) -> bytes:
    return b"".join(
        (json.dumps(x, ensure_ascii=False) if not isinstance(x, str) else x).encode() + b"\n" for x in lines
    )


def _import(data: bytes, **kw: object):  # type: ignore[no-untyped-def]
    return import_responses(data, "resp/m.jsonl", "m", BENCH.queries, FULL.by_index, BENCH.data_version, **kw)  # type: ignore[arg-type]


def test_lines_become_rows_named_by_their_text() -> None:
    data = _file(
        {"index": 3, "response": "third"},
        {"index": 1, "response": ""},  # an empty answer is an answer: it is judged, as upstream does
        {"index": 2, "response": "second", "extra": "ignored"},
        {"index": 7, "response": "not selected in this run"},
    )
    got = _import(data)
    assert [r["index"] for r in got.rows] == [3, 1, 2] and got.missing == ()
    assert [r["response"] for r in got.rows] == ["third", "", "second"]
    assert all(r["status"] == "ok" and r["sample"] == 0 and r["model"] == "m" for r in got.rows)
    assert json.loads(got.rows[0]["messages_json"]) == [{"role": "user", "content": BENCH.get(3).query}]
    # Same text, same id; a changed line changes that row's id only.
    again = _import(data)
    assert [r["row_id"] for r in again.rows] == [r["row_id"] for r in got.rows]
    edited = _import(data.replace(b'"third"', b'"third, revised"'))
    assert edited.rows[0]["row_id"] != got.rows[0]["row_id"]
    assert [r["row_id"] for r in edited.rows[1:]] == [r["row_id"] for r in got.rows[1:]]
    # The same text under another model name is another model's answer.
    other = import_responses(data, "x", "other", BENCH.queries, FULL.by_index, BENCH.data_version)
    assert other.rows[0]["row_id"] != got.rows[0]["row_id"]


def test_every_defect_names_file_line_and_field() -> None:
    data = _file(
        {"index": 1, "response": "a"},
        {"index": 1, "response": "again"},
        {"index": 999, "response": "?"},
        {"index": "2", "response": "b"},
        {"index": 3, "response": None},
        "{not json",
        [1, 2],
    )
    with pytest.raises(DataError) as info:
        _import(data)
    lines = [str(d) for d in info.value.defects]
    assert lines[0].startswith("resp/m.jsonl:2: index: duplicate index 1 (also on line 1)")
    assert any(x.startswith("resp/m.jsonl:3: index: unknown query index 999") for x in lines)
    assert any(x.startswith("resp/m.jsonl:4: index: must be an integer, got '2'") for x in lines)
    assert any(x.startswith("resp/m.jsonl:5: response: must be a string, got null") for x in lines)
    assert any(x.startswith("resp/m.jsonl:6: malformed JSON") for x in lines)
    assert any(x.startswith("resp/m.jsonl:7: expected a JSON object, got list") for x in lines)


def test_missing_queries_fail_unless_allowed() -> None:
    data = _file({"index": 2, "response": "only this one"})
    with pytest.raises(
        DataError, match=r"no response for 2 of the 3 selected queries \(indices 1, 3\).*--allow-missing"
    ):
        _import(data)
    got = _import(data, allow_missing=True)
    assert [r["index"] for r in got.rows] == [2] and got.missing == (1, 3)
    with pytest.raises(DataError, match="empty file"):
        _import(b"")


def test_a_candidate_is_an_engine_or_a_file() -> None:
    cfg = load_config(None, ["candidates=[{name: ext, responses: s3://bucket/responses/}]"])
    assert cfg.candidates[0].engine is None and cfg.candidates[0].responses == "s3://bucket/responses/"
    from wbray.errors import ConfigError

    with pytest.raises(ConfigError, match="exactly one of `engine`"):
        load_config(None, ["candidates=[{name: ext}]"])
    with pytest.raises(ConfigError, match="exactly one of `engine`"):
        load_config(None, ["candidates=[{name: ext, responses: r.jsonl, engine: {backend: transformers}}]"])
