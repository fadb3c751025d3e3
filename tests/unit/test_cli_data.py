"""``wbray data download | validate | stats`` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_download import Upstream, mirror_files, serve_upstream
from wbray.cli import main
from wbray.dataset import UPSTREAM_COMMIT, example_dir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def upstream(official_dir: Path) -> Iterator[Upstream]:
    with serve_upstream(mirror_files(official_dir)) as state:
        yield state


def test_validate_official_ok(official_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "validate", str(official_dir)]) == 0
    out = capsys.readouterr().out
    assert out == f"OK: no defects in {official_dir}\n"


def test_validate_example_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "validate", "example"]) == 0
    assert capsys.readouterr().out.startswith("OK: no defects in ")


def test_validate_reports_every_defect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = (example_dir() / "queries.jsonl").read_bytes().splitlines()
    path = tmp_path / "queries.jsonl"
    path.write_bytes(b"\n".join([good[0], b"", b'{"index": "x"', good[1]]) + b"\n")
    assert main(["data", "validate", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{path}:2: blank line (every line must hold one JSON object)",
        f"{path}:3: malformed JSON: Expecting ',' delimiter (column 14)",
        f"2 defect(s) in 1 file(s) under {path}",
    ]


def test_stats_json(official_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", str(official_dir), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"] == 1000
    assert doc["data_version"] == "2d04c2d4c82f"
    assert doc["by_lang"] == {"zh": 445, "en": 555}
    assert len(doc["by_domain2"]) == 100
    assert doc["requirements"]["format"] == {"queries": 498, "criteria": 511}
    assert set(doc["query_length"]) == {"min", "p10", "p25", "median", "p75", "p90", "max", "mean"}


def test_stats_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", "--data-dir", "example"]) == 0
    out = capsys.readouterr().out
    for title in ("By domain1", "By domain2", "By language", "Query length", "Requirement subsets"):
        assert title in out
    assert "Advertising & Marketing" in out and "Lesson Plan" in out and "12 queries" in out


def test_stats_of_a_single_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", str(example_dir() / "queries.jsonl"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"] == 12 and doc["data_version"] is None and doc["requirements"] == {}


def test_stats_uses_env_data_dir(
    official_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WBRAY_DATA_DIR", str(example_dir()))
    assert main(["data", "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 12


def test_stats_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("wbray: error: no WritingBench data found") and "wbray data download" in err
    assert err.count("\n") == 1

    assert main(["data", "stats", "example", "--data-dir", "example"]) == 1
    assert "either PATH or --data-dir" in capsys.readouterr().err

    bad = tmp_path / "queries.jsonl"
    bad.write_text("{}\n", encoding="utf-8")
    assert main(["data", "stats", str(bad)]) == 1
    assert f"wbray: error: {bad}:1: index: missing required key (and " in capsys.readouterr().err


def test_download(upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "wb"
    assert main(["data", "download", "--dest", str(dest), "--base-url", upstream.url]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"WritingBench data (upstream commit {UPSTREAM_COMMIT[:12]}) verified in {dest}\n"
    assert "downloaded" in captured.err and "extracted" in captured.err
    assert main(["data", "validate", str(dest)]) == 0


def test_download_failure_is_one_line(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "download", "--dest", str(tmp_path), "--base-url", upstream.url + "/gone"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"wbray: error: download failed: {upstream.url}/gone/{UPSTREAM_COMMIT}/")
    assert "HTTP 404" in err


def test_module_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wbray.cli", "data", "validate", "example"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: no defects in ")
