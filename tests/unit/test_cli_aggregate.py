"""`wbray aggregate` end to end on files, and response-file interop."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from wbray.aggregate import read_upstream_responses, write_upstream_responses
from wbray.cli import main
from wbray.dataset import example_dir, load_benchmark
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


# --- coverage on every report (issue 10, item 3) ---------------------------------------------------


def test_coverage_on_every_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = {k: tmp_path / f"b.{k}" for k in ("xlsx", "md", "html", "csv")}
    args = ["aggregate", "example", "--data-dir", "example"]
    assert main([*args, *(x for k, p in out.items() for x in (f"--{k}", str(p)))]) == 0
    term = capsys.readouterr().out
    # demo-model-b has no score for query 12: 11 of the 12 selected queries.
    assert "demo-model-b (incomplete)" in term and "91.7%" in term and "Incomplete: demo-model-b" in term
    md = out["md"].read_text()
    assert "| demo-model-b (incomplete) |" in md and "| 11/12 (91.7%) |" in md and "| 12/12 (100.0%) |" in md
    assert "Incomplete: demo-model-b 11/12 (91.7%)" in out["html"].read_text()
    wb = openpyxl.load_workbook(out["xlsx"])
    assert wb.sheetnames == [
        "Leaderboard",
        "Leaderboard x10",
        "Languages",
        "Coverage",
        "Failures",
        "Intervals",
        "Comparisons",
    ]
    # Upstream's sheet keeps upstream's columns exactly; the extra sheets carry coverage and status.
    assert [c.value for c in wb["Leaderboard"][1]] == list(pd.read_csv(out["csv"]).columns)
    for name in ("Leaderboard x10", "Languages"):
        rows = {r[0]: r for r in wb[name].iter_rows(min_row=2, values_only=True)}
        assert [c.value for c in wb[name][1]][-2:] == ["Coverage", "Status"]
        assert rows["demo-model-b"][-2:] == ("11/12 (91.7%)", "incomplete")
        assert rows["demo-model-a"][-1] == "complete"
    cover = {r[0]: r for r in wb["Coverage"].iter_rows(min_row=2, values_only=True)}
    assert cover["demo-model-b"][1:3] == (12, 11) and cover["demo-model-b"][-1] == "incomplete"
    # The per-query table goes beside the workbook: 2 models x 12 queries, the missing one included.
    per_query = pd.read_parquet(tmp_path / "b.per_query.parquet")
    assert len(per_query) == 24
    missing = per_query[per_query["status"] == "missing"]
    assert missing[["model", "index"]].values.tolist() == [["demo-model-b", 12]]


def test_require_complete_fails_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    xlsx = tmp_path / "b.xlsx"
    code = main(["aggregate", "example", "--data-dir", "example", "--xlsx", str(xlsx), "--require-complete"])
    assert code == 1
    err = capsys.readouterr().err
    assert err == (
        "wbray: error: --require-complete: incomplete models (queries scored/selected): "
        "demo-model-b 11/12 (91.7%)\n"
    )
    assert not list(tmp_path.iterdir())
    complete = tmp_path / "a"
    complete.mkdir()
    (complete / "demo-model-a.jsonl").write_bytes(
        (example_dir() / "results" / "demo-model-a.jsonl").read_bytes()
    )
    assert (
        main(
            [
                "aggregate",
                str(complete),
                "--data-dir",
                "example",
                "--md",
                str(tmp_path / "a.md"),
                "--require-complete",
            ]
        )
        == 0
    )


def test_per_query_outputs(tmp_path: Path) -> None:
    csv = tmp_path / "pq.csv"
    assert main(["aggregate", "example", "--data-dir", "example", "--per-query", str(csv)]) == 0
    table = pd.read_csv(csv)
    assert list(table.columns) == [
        "model",
        "index",
        "domain1",
        "domain2",
        "lang",
        "score",
        "n_ok",
        "n_failed",
        "status",
    ]
    xlsx = tmp_path / "b.xlsx"
    assert (
        main(["aggregate", "example", "--data-dir", "example", "--xlsx", str(xlsx), "--per-query-sheet"]) == 0
    )
    sheet = openpyxl.load_workbook(xlsx)["Per query"]
    assert sheet.max_row == 1 + len(table)
    assert (
        main(["aggregate", "example", "--data-dir", "example", "--per-query", str(tmp_path / "x.txt")]) == 1
    )


# --- repeated indices (issue 10, item 7) -------------------------------------------------------------


def test_repeated_index_is_read_as_upstream_and_noted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = (example_dir() / "results" / "demo-model-a.jsonl").read_text(encoding="utf-8").splitlines()
    # The official evaluation's resume re-scores the last saved query: line 13 repeats line 12.
    again = json.loads(src[-1])
    again["scores"] = {k: [{"score": 1, "reason": "re-scored"}] for k in again["scores"]}
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join([*src, json.dumps(again)]) + "\n", encoding="utf-8")
    csv = tmp_path / "b.csv"
    assert main(["aggregate", str(path), "--data-dir", "example", "--csv", str(csv)]) == 0
    err = capsys.readouterr().err
    assert (
        f"note: {path}:13: index: index 12 repeats line 12: upstream's calculate_scores.py counts both" in err
    )
    row = pd.read_csv(csv).iloc[0]
    assert row["Count"] == 13  # upstream counts lines
    assert main(["aggregate", str(path), "--data-dir", "example", "--csv", str(csv), "--dedupe"]) == 0
    assert "kept only the last line of this index (--dedupe)" in capsys.readouterr().err
    deduped = pd.read_csv(csv).iloc[0]
    assert deduped["Count"] == 12 and deduped["Overall"] < row["Overall"]


# --- the benchmark of a run, from its manifest (issue 10, item 8) ------------------------------------


def _write_run(
    root: str, data: dict[str, object], bench_dir: str = "example", failed_index: int | None = None
) -> str:
    """A committed run of model "m" scored by judge "j" on the first 3 queries, written through the
    storage helpers exactly as the pipeline writes one (no Ray)."""
    from wbray.storage import RunLayout, commit_stage, write_manifest, write_scores

    bench = load_benchmark(bench_dir)
    layout = RunLayout.at(root)
    rows = [
        {
            "row_id": f"m-{q.index}-{c.name}",
            "model": "m",
            "judge": "j",
            "index": q.index,
            "criterion": c.name,
            "repeat": 0,
            "score": None if q.index == failed_index else float(1 + (q.index + len(c.name)) % 10),
            "status": "failed" if q.index == failed_index else "ok",
            "error": "no_json_object" if q.index == failed_index else None,
        }
        for q in bench.queries[:3]
        for c in q.checklist
    ]
    write_scores(layout, "j", "m", rows)
    commit_stage(layout.scores("j", "m"))
    write_manifest(layout, {"data": data, "config": {"data": {"data_dir": bench_dir, "limit": 3}}})
    return root


def test_run_finds_its_benchmark_in_the_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    version = load_benchmark("example").data_version
    run = _write_run(
        str(tmp_path / "run"), {"source": "example", "data_version": version, "queries": 3}, failed_index=2
    )
    md = tmp_path / "b.md"
    assert main(["aggregate", run, "--md", str(md)]) == 0  # no --data-dir
    # Coverage counts against the run's own selection (limit 3), not the whole benchmark.
    assert "| m (incomplete) |" in md.read_text() and "| 2/3 (66.7%) |" in md.read_text()
    capsys.readouterr()
    assert main(["aggregate", run, "--md", str(md), "--require-complete"]) == 1
    assert capsys.readouterr().err.endswith("m 2/3 (66.7%)\n")


def test_recorded_data_not_available(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gone = str(tmp_path / "moved-away")
    run = _write_run(str(tmp_path / "run"), {"source": gone, "data_version": "0123456789ab", "queries": 3})
    assert main(["aggregate", run, "--md", str(tmp_path / "b.md")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"made on WritingBench data '{gone}' version 0123456789ab, which is not available here" in err
    assert "pass --data-dir DIR holding that version" in err
    # A recorded directory that now holds other data is not used either.
    copy = tmp_path / "copy"
    shutil.copytree(example_dir(), copy)
    run2 = _write_run(str(tmp_path / "run2"), {"source": str(copy), "data_version": "0123456789ab"})
    assert main(["aggregate", run2, "--md", str(tmp_path / "b.md")]) == 1
    assert f"{copy} holds {load_benchmark('example').data_version}" in capsys.readouterr().err
    # --data-dir overrides what was recorded, with a note.
    assert main(["aggregate", run2, "--data-dir", "example", "--md", str(tmp_path / "b.md")]) == 0
    assert "made on data version 0123456789ab; --data-dir holds" in capsys.readouterr().err


def test_run_recorded_directory_and_download_cache(official_dir: Path, tmp_path: Path) -> None:
    from wbray.dataset import PINNED_FILES
    from wbray.dataset._download import DATA_FILES, default_download_dir

    copy = tmp_path / "copy"
    shutil.copytree(example_dir(), copy)
    version = load_benchmark("example").data_version
    run = _write_run(str(tmp_path / "run"), {"source": str(copy), "data_version": version})
    assert main(["aggregate", run, "--csv", str(tmp_path / "a.csv")]) == 0
    # A run made on the pinned download, on another machine: found in this machine's download cache.
    cache = default_download_dir()
    for rel in DATA_FILES:
        (cache / rel).parent.mkdir(parents=True, exist_ok=True)
        (cache / rel).symlink_to(official_dir / rel)
    pinned = PINNED_FILES["benchmark_query/benchmark_all.jsonl"][:12]
    run2 = _write_run(
        str(tmp_path / "run2"),
        {"source": "/elsewhere/wb", "data_version": pinned},
        bench_dir=str(official_dir),
    )
    assert main(["aggregate", run2, "--csv", str(tmp_path / "b.csv")]) == 0
    assert pd.read_csv(tmp_path / "b.csv")["Count"].tolist() == [3]


def test_s3_run_of_the_example_needs_no_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="runs")
        version = load_benchmark("example").data_version
        _write_run("s3://runs/sweep/r1", {"source": "example", "data_version": version, "queries": 3})
        csv = tmp_path / "s3.csv"
        assert main(["aggregate", "s3://runs/sweep/", "--csv", str(csv), "--require-complete"]) == 0
        assert pd.read_csv(csv)["Count"].tolist() == [3]
    finally:
        server.stop()
