"""``wbray criteria`` / ``wbray curate`` argument and input errors: one line, exit 1, before any Ray work."""

from __future__ import annotations

from pathlib import Path

import pytest

from wbray.cli import main


def _cfg(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


ENGINE = "{backend: openai, base_url: 'http://127.0.0.1:9/v1', model: m}"


def test_curate_needs_exactly_one_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["curate", "in.jsonl", "--out", str(tmp_path), "--config", "c.yaml"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert (
        exc.value.code == 2
        and "one of the arguments --keep --min-score is required" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        main([*args, "--keep", "0.5", "--min-score", "7"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_bad_pair_file_is_one_line_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "p", "response": "r"}\n{"prompt": "p"}\n{"prompt": "p", "answer": 3}\n')
    cfg = _cfg(tmp_path, f"judge:\n  engine: {ENGINE}\n")
    code = main(["curate", str(pairs), "--out", str(tmp_path / "o"), "--config", str(cfg), "--keep", "0.5"])
    err = capsys.readouterr().err
    assert code == 1
    assert (
        err == f"wbray: error: bad pair file: {pairs}:2: response: expected a string, got null (and 1 more)\n"
    )
    assert not (tmp_path / "o").exists()  # nothing written before the input is known good


@pytest.mark.parametrize(
    ("verb", "config", "message"),
    [
        ("criteria", "criteria: {}\n", "criteria.engine is not set"),
        ("curate", f"criteria: {{engine: {ENGINE}}}\n", "judge.engine is not set"),
        ("criteria", f"criteria: {{engine: {ENGINE}, max_reask: 1}}\n", "unknown key 'criteria.max_reask'"),
        ("curate", f"judge: {{engine: {ENGINE}, cache: /tmp/c}}\n", "judge.cache: wbray curate"),
    ],
)
def test_config_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], verb: str, config: str, message: str
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"query": "q", "prompt": "q", "response": "r"}\n')
    rule = ["--keep", "0.5"] if verb == "curate" else []
    code = main(
        [verb, str(source), "--out", str(tmp_path / "o"), "--config", str(_cfg(tmp_path, config)), *rule]
    )
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("\n") == 1


def test_criteria_rows_without_a_writer_are_refused_by_curate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "pairs.jsonl"
    source.write_text('{"prompt": "q", "response": "r"}\n')
    cfg = _cfg(tmp_path, f"judge:\n  engine: {ENGINE}\n")
    code = main(
        ["curate", str(source), "--out", str(tmp_path / "o"), "--config", str(cfg), "--min-score", "5"]
    )
    assert code == 1
    assert "criteria.engine is not set, but 1 pair(s) bring no checklist" in capsys.readouterr().err
