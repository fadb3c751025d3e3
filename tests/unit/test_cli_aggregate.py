"""`wbray aggregate` end to end on files, and response-file interop."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from wbray.aggregate import read_upstream_responses, write_upstream_responses
from wbray.cli import main
from wbray.errors import DataError


def test_aggregate_example_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    xlsx, md, csv = tmp_path / "b.xlsx", tmp_path / "b.md", tmp_path / "b.csv"
    code = main(
        [
            "aggregate",
            "example",
            "--data-dir",
            "example",
            "--xlsx",
            str(xlsx),
            "--md",
            str(md),
            "--csv",
            str(csv),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "demo-model-a" in out and "demo-model-b" in out
    sheet = openpyxl.load_workbook(xlsx).worksheets[0]
    header = [c.value for c in sheet[1]]
    assert header[:9] == [
        "Model",
        "Overall",
        "Count",
        "Domain1_Academic & Engineering",
        "Domain1_Finance & Business",
        "Domain1_Politics & Law",
        "Domain1_Literature & Arts",
        "Domain1_Education",
        "Domain1_Advertising & Marketing",
    ]
    assert header[-6:] == ["style_R", "style_C", "format_R", "format_C", "length_R", "length_C"]
    counts = {row[0].value: row[2].value for row in sheet.iter_rows(min_row=2)}
    assert counts == {"demo-model-a": 12, "demo-model-b": 11}  # b lacks query 12
    assert list(pd.read_csv(csv).columns) == header
    assert md.read_text().startswith("# WritingBench leaderboard")


def test_aggregate_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aggregate", "example", "--data-dir", "example"]) == 1
    assert "give at least one output" in capsys.readouterr().err
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"index": 1, "scores": {"nope": [{"score": 3, "reason": ""}]}}\n')
    assert main(["aggregate", str(bad), "--data-dir", "example", "--csv", str(tmp_path / "x.csv")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'nope' for query 1" in err
    assert not (tmp_path / "x.csv").exists()


def test_response_files_round_trip(tmp_path: Path) -> None:
    responses = pd.DataFrame(
        [
            {"model": "m", "index": 2, "response": "第二个回答", "status": "ok", "error": None},
            {"model": "m", "index": 1, "response": "first\nanswer", "status": "ok", "error": None},
            {"model": "m", "index": 3, "response": None, "status": "failed", "error": "timeout after 60 s"},
        ]
    )
    (path,) = write_upstream_responses(responses, tmp_path)
    assert path == tmp_path / "responses" / "m.jsonl"
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert lines == [{"index": 1, "response": "first\nanswer"}, {"index": 2, "response": "第二个回答"}]
    back = read_upstream_responses(path).sort_values("index").reset_index(drop=True)
    assert list(back["status"]) == ["ok", "ok", "failed"]
    assert back.loc[2, "error"] == "timeout after 60 s"
    path.write_text('{"index": 1, "response": 5}\n')
    with pytest.raises(DataError, match=r"m\.jsonl:1: response: must be a string"):
        read_upstream_responses(path)
