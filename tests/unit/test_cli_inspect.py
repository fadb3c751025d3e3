"""``wbray inspect prompt``, run in-process through ``wbray.cli.main``."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from wbray.cli import main

INDEX = 178  # English row whose third criterion holds both quote kinds
RESPONSE = '<think>\nplan the essay\n</think>\n\nLi Bai\'s "Difficult Road to Shu" {criteria} 蜀道难。\r\n'


def _row(official_dir: Path, index: int) -> dict[str, Any]:
    with (official_dir / "benchmark_query" / "benchmark_all.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row: dict[str, Any] = json.loads(line)
            if row["index"] == index:
                return row
    raise AssertionError(f"index {index} not in the official data")


def _expected_messages(official_dir: Path, row: dict[str, Any], position: int, response: str) -> list[Any]:
    # Rendered independently, the way upstream does it.
    system = (official_dir / "prompts" / "judge_system.txt").read_bytes().decode("utf-8")
    user = (official_dir / "prompts" / "judge_user.txt").read_bytes().decode("utf-8")
    marker = "</think>\n\n"
    processed = response[response.find(marker) + len(marker) :] if marker in response else response
    content = user.format(query=row["query"], response=processed, criteria=row["checklist"][position - 1])
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["inspect", "prompt", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def response_file(tmp_path: Path) -> Path:
    path = tmp_path / "response.txt"
    path.write_bytes(RESPONSE.encode("utf-8"))
    return path


def test_official_prompt_by_position(
    official_dir: Path, response_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys, "--index", str(INDEX), "--criterion", "3", "--response-file", str(response_file),
        "--data-dir", str(official_dir),
    )  # fmt: skip
    assert code == 0, err
    assert err == ""
    got = json.loads(out)
    row = _row(official_dir, INDEX)
    assert got["messages"] == _expected_messages(official_dir, row, 3, RESPONSE)
    system = (official_dir / "prompts" / "judge_system.txt").read_bytes().decode("utf-8")
    user = (official_dir / "prompts" / "judge_user.txt").read_bytes().decode("utf-8")
    digest = hashlib.sha256(f"{system}\x00{user}".encode()).hexdigest()[:12]
    assert got["prompt_version"] == f"judge-{digest}"
    assert got["template_source"] == "official"
    assert got["template_origin"] == str(official_dir / "prompts")
    assert got["index"] == INDEX
    assert got["criterion"] == row["checklist"][2]["name"]
    assert isinstance(got["data_version"], str) and got["data_version"]
    assert set(got) == {
        "messages", "prompt_version", "template_source", "template_origin", "index", "criterion",
        "data_version",
    }  # fmt: skip


def test_criterion_by_name_equals_by_position(
    official_dir: Path, response_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _row(official_dir, 1)["checklist"][1]["name"]  # a Chinese criterion name
    common = ["--index", "1", "--response-file", str(response_file), "--data-dir", str(official_dir)]
    code_a, out_a, _ = _run(capsys, *common, "--criterion", name)
    code_b, out_b, _ = _run(capsys, *common, "--criterion", "2")
    assert code_a == code_b == 0
    assert out_a == out_b
    assert json.loads(out_a)["criterion"] == name
    assert name in out_a  # non-ASCII printed as is, not \u-escaped


def test_response_from_stdin(
    official_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(RESPONSE.encode("utf-8")), encoding="utf-8"))
    code, out, err = _run(
        capsys,
        "--index",
        str(INDEX),
        "--criterion",
        "1",
        "--response-file",
        "-",
        "--data-dir",
        str(official_dir),
    )
    assert code == 0, err
    expected = _expected_messages(official_dir, _row(official_dir, INDEX), 1, RESPONSE)
    assert json.loads(out)["messages"] == expected  # the \r\n survived: bytes, not text mode


@pytest.mark.parametrize("key", ["no such criterion", "0", "6", "99"])
def test_unknown_criterion_lists_the_choices(
    official_dir: Path, response_file: Path, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    code, out, err = _run(
        capsys, "--index", str(INDEX), "--criterion", key, "--response-file", str(response_file),
        "--data-dir", str(official_dir),
    )  # fmt: skip
    assert code == 1
    assert out == ""
    for criterion in _row(official_dir, INDEX)["checklist"]:
        assert criterion["name"] in err


def test_builtin_template_prints_a_notice(
    official_dir: Path, response_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys, "--index", str(INDEX), "--criterion", "1", "--response-file", str(response_file),
        "--data-dir", str(official_dir), "--template", "builtin",
    )  # fmt: skip
    assert code == 0
    got = json.loads(out)
    assert got["template_source"] == "builtin"
    assert got["template_origin"] == "wbray builtin"
    assert len(err.strip().splitlines()) == 1
    assert "builtin" in err


def _example_index() -> int:
    from wbray.dataset import resolve_data_dir

    root = resolve_data_dir("example")
    for path in sorted(root.rglob("*.jsonl")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        row = json.loads(first)
        if "checklist" in row:
            return int(row["index"])
    raise AssertionError(f"no benchmark rows under {root}")


def test_example_data_uses_builtin_with_a_notice(
    response_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = _example_index()
    code, out, err = _run(
        capsys, "--index", str(index), "--criterion", "1", "--response-file", str(response_file),
        "--data-dir", "example",
    )  # fmt: skip
    assert code == 0, err
    got = json.loads(out)
    assert got["template_source"] == "builtin"
    assert got["index"] == index
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "official" in lines[0] and "not found" in lines[0]
    assert "Difficult Road to Shu" in got["messages"][1]["content"]


def test_example_data_with_official_template_fails(
    response_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys, "--index", str(_example_index()), "--criterion", "1", "--response-file", str(response_file),
        "--data-dir", "example", "--template", "official",
    )  # fmt: skip
    assert code == 1
    assert out == ""
    assert "wbray data download" in err


def test_missing_response_file(
    official_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.txt"
    code, out, err = _run(
        capsys, "--index", str(INDEX), "--criterion", "1", "--response-file", str(missing),
        "--data-dir", str(official_dir),
    )  # fmt: skip
    assert code == 1
    assert out == ""
    assert str(missing) in err
