"""Judge and generation prompts: byte parity with upstream, template loading, builtin wording."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from wbray.errors import DataError, DataNotFoundError, WbrayError
from wbray.prompts import (
    JudgeTemplate,
    load_judge_template,
    render_generation_messages,
    render_judge_messages,
    strip_think,
)

# Rows chosen for coverage: 1 (Chinese), 2 (English, apostrophes in criteria), 21 (Chinese, braces in
# the query), 178 and 387 (criteria holding both quote kinds, so repr switches quoting and escapes).
ROWS = (1, 2, 21, 178, 387)
RESPONSES = {
    "plain": "A plain answer.\n\nWith two paragraphs.",
    "think": "<think>\nLet me plan the outline first.\n</think>\n\nThe final answer.",
    "think_no_blank_line": "<think>plan</think>The answer right after the tag.",
    "two_markers": "<think>a</think>\n\nmiddle</think>\n\nend",
    "braces": 'Literal {criteria}, {query}, {0}, {{double}} and {"score": 10} stay as written.',
    "chinese": "<think>\n先列提纲。\n</think>\n\n一、引言\n二、方法",
}


def _benchmark_rows(official_dir: Path) -> dict[int, dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    with (official_dir / "benchmark_query" / "benchmark_all.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["index"] in ROWS:
                rows[row["index"]] = row
    return rows


def _upstream_processed(response: str) -> str:
    # Upstream's process_gen_field, restated independently: cut through the first marker.
    marker = "</think>\n\n"
    pos = response.find(marker)
    return response[pos + len(marker) :] if pos != -1 else response


def _raw(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


@pytest.fixture(scope="module")
def rows(official_dir: Path) -> dict[int, dict[str, Any]]:
    found = _benchmark_rows(official_dir)
    assert sorted(found) == sorted(ROWS)
    return found


@pytest.fixture(scope="module")
def official(official_dir: Path) -> JudgeTemplate:
    return load_judge_template(official_dir, "official")


# --- byte parity with upstream ----------------------------------------------------------------------


@pytest.mark.parametrize("response_kind", sorted(RESPONSES))
@pytest.mark.parametrize("index", ROWS)
def test_official_rendering_matches_upstream_byte_for_byte(
    official_dir: Path,
    official: JudgeTemplate,
    rows: dict[int, dict[str, Any]],
    index: int,
    response_kind: str,
) -> None:
    evaluate_system = _raw(official_dir / "prompts" / "judge_system.txt")
    evaluate_prompt = _raw(official_dir / "prompts" / "judge_user.txt")
    row = rows[index]
    response = RESPONSES[response_kind]
    for criterion in row["checklist"]:
        expected = evaluate_prompt.format(
            query=row["query"], response=_upstream_processed(response), criteria=criterion
        )
        got = render_judge_messages(official, row["query"], criterion, response)
        assert got == [
            {"role": "system", "content": evaluate_system},
            {"role": "user", "content": expected},
        ]


def test_parity_rows_cover_the_tricky_cases(rows: dict[int, dict[str, Any]]) -> None:
    # Guard the row choice: if the data changes, the parity test must still see these cases.
    reprs = [repr(c) for r in rows.values() for c in r["checklist"]]
    assert any("\\'" in r for r in reprs), "a criterion whose repr escapes a quote"
    assert any(r.startswith("{'name'") and "'" in r[10:] and '"' in r for r in reprs)
    assert any(r["lang"] == "zh" for r in rows.values())
    assert any(r["lang"] == "en" for r in rows.values())
    assert any("{" in r["query"] for r in rows.values())


def test_criteria_is_the_repr_of_one_item_twice(
    official: JudgeTemplate, rows: dict[int, dict[str, Any]]
) -> None:
    criterion = rows[178]["checklist"][2]
    user = render_judge_messages(official, "q", criterion, "r")[1]["content"]
    assert user.count(repr(criterion)) == 2
    assert list(criterion) == ["name", "criteria_description", "1-2", "3-4", "5-6", "7-8", "9-10"]


def test_inserted_text_is_not_reformatted(official: JudgeTemplate) -> None:
    response = "see {criteria} and {query} and {response} and {{x}} and {0} and {"
    query = "write about {criteria} {"
    user = render_judge_messages(official, query, {"name": "n"}, response)[1]["content"]
    assert f"```{response}```" in user
    assert f"```{query}```" in user


def test_read_only_mapping_renders_like_a_dict(
    official: JudgeTemplate, rows: dict[int, dict[str, Any]]
) -> None:
    criterion = rows[1]["checklist"][0]
    frozen = MappingProxyType(criterion)
    assert render_judge_messages(official, "q", frozen, "r") == render_judge_messages(
        official, "q", criterion, "r"
    )


# --- strip_think --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("<think>x</think>\n\nanswer", "answer"),
        ("x</think>\n\na</think>\n\nb", "a</think>\n\nb"),  # only the first marker
        ("<think>x</think>answer", "<think>x</think>answer"),  # no blank line: unchanged
        ("<think>x</think>\nanswer", "<think>x</think>\nanswer"),
        ("<think>x</think>\r\n\r\nanswer", "<think>x</think>\r\n\r\nanswer"),
        ("</think>\n\n", ""),
        ("no thoughts", "no thoughts"),
        ("", ""),
    ],
)
def test_strip_think(response: str, expected: str) -> None:
    assert strip_think(response) == expected
    assert strip_think(response) == _upstream_processed(response)


# --- loading ------------------------------------------------------------------------------------------


def test_official_template_is_the_exact_file_text(official_dir: Path, official: JudgeTemplate) -> None:
    assert official.system == _raw(official_dir / "prompts" / "judge_system.txt")
    assert official.user == _raw(official_dir / "prompts" / "judge_user.txt")
    assert official.source == "official"
    assert official.origin == str(official_dir / "prompts")
    assert re.fullmatch(r"judge-[0-9a-f]{12}", official.version)


def test_auto_prefers_official(official_dir: Path, official: JudgeTemplate) -> None:
    assert load_judge_template(official_dir) == official
    assert load_judge_template(official_dir, "auto") == official


def test_auto_falls_back_to_builtin(tmp_path: Path) -> None:
    assert load_judge_template(tmp_path).source == "builtin"
    assert load_judge_template(None).source == "builtin"
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "judge_system.txt").write_text("only the system file", encoding="utf-8")
    assert load_judge_template(tmp_path, "auto").source == "builtin"


def test_official_missing_names_the_paths_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "judge_system.txt").write_text("sys", encoding="utf-8")
    with pytest.raises(DataNotFoundError) as info:
        load_judge_template(tmp_path, "official")
    message = str(info.value)
    assert str(tmp_path / "prompts" / "judge_user.txt") in message
    assert "judge_system.txt" not in message  # it exists; only the missing one is named
    assert "wbray data download" in message
    with pytest.raises(DataNotFoundError, match="wbray data download"):
        load_judge_template(None, "official")


def test_builtin_mode_ignores_official_files(official_dir: Path) -> None:
    assert load_judge_template(official_dir, "builtin").source == "builtin"


def test_official_files_are_read_byte_exact(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "judge_system.txt").write_bytes(b"  system with spaces\r\n")
    (prompts / "judge_user.txt").write_bytes(b"C {criteria}\r\nQ {query}\r\nR {response}\r\n{{}}\n")
    template = load_judge_template(tmp_path, "official")
    assert template.system == "  system with spaces\r\n"
    assert template.user == "C {criteria}\r\nQ {query}\r\nR {response}\r\n{{}}\n"


@pytest.mark.parametrize(
    "user",
    [
        "C {criteria} Q {query}",  # {response} missing
        "C {criteria} Q {query} R {response} {extra}",
        "C {criteria!s} Q {query} R {response}",
        "C {criteria} Q {query} R {response} }",  # unbalanced brace
    ],
)
def test_official_template_with_wrong_placeholders_is_rejected(tmp_path: Path, user: str) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "judge_system.txt").write_text("sys", encoding="utf-8")
    (prompts / "judge_user.txt").write_text(user, encoding="utf-8")
    with pytest.raises(DataError, match=r"judge_user\.txt"):
        load_judge_template(tmp_path, "official")


def test_official_template_not_utf8_is_rejected(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "judge_system.txt").write_bytes(b"\xff\xfe")
    (prompts / "judge_user.txt").write_text("{criteria}{query}{response}", encoding="utf-8")
    with pytest.raises(DataError, match=r"UTF-8"):
        load_judge_template(tmp_path, "official")


# --- builtin wording ----------------------------------------------------------------------------------


def _fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def test_builtin_has_the_official_interface(official: JudgeTemplate) -> None:
    builtin = load_judge_template(None, "builtin")
    assert builtin.source == "builtin"
    assert builtin.origin == "wbray builtin"
    assert sorted(_fields(builtin.user)) == sorted(_fields(official.user))
    assert _fields(builtin.user).count("criteria") == 2
    assert builtin.version != official.version
    assert re.fullmatch(r"judge-[0-9a-f]{12}", builtin.version)
    assert '"score"' in builtin.user.format(criteria={}, query="", response="")
    assert '"reason"' in builtin.user.format(criteria={}, query="", response="")


def test_builtin_renders(rows: dict[int, dict[str, Any]]) -> None:
    builtin = load_judge_template(None, "builtin")
    criterion = rows[387]["checklist"][1]
    messages = render_judge_messages(builtin, rows[387]["query"], criterion, "<think>t</think>\n\nanswer")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == builtin.system
    user = messages[1]["content"]
    assert user.count(repr(criterion)) == 2
    assert rows[387]["query"] in user
    assert "```answer```" in user
    assert "<think>" not in user


def test_builtin_is_not_a_copy_of_upstream(official: JudgeTemplate) -> None:
    builtin = load_judge_template(None, "builtin")
    official_lines = {line.strip() for line in official.user.splitlines() if len(line.strip()) > 25}
    shared = [line for line in builtin.user.splitlines() if line.strip() in official_lines]
    assert shared == []
    assert builtin.system != official.system


def test_version_depends_on_text_only() -> None:
    a = JudgeTemplate("s", "u", "official", "/a")
    assert a.version == JudgeTemplate("s", "u", "builtin", "/b").version
    assert a.version != JudgeTemplate("s", "u2", "official", "/a").version
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert (
        JudgeTemplate("ab", "c", "official", "").version != JudgeTemplate("a", "bc", "official", "").version
    )


# --- generation ---------------------------------------------------------------------------------------


def test_generation_messages() -> None:
    assert render_generation_messages("写一首诗 {x}") == [{"role": "user", "content": "写一首诗 {x}"}]
    assert render_generation_messages("q", "be brief") == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "q"},
    ]
    assert render_generation_messages("q", "") == [
        {"role": "system", "content": ""},
        {"role": "user", "content": "q"},
    ]


def _checkout(official_dir: Path, root: Path, prompt_py: bytes) -> Path:
    """A directory shaped like a clone of the upstream repository: data files and prompt.py at the
    top, no prompts/*.txt (those are what `wbray data download` writes, not what git holds)."""
    (root / "benchmark_query").symlink_to(official_dir / "benchmark_query")
    (root / "prompt.py").write_bytes(prompt_py)
    return root


def test_auto_reads_the_official_prompt_from_an_upstream_checkout(official_dir: Path, tmp_path: Path) -> None:
    from tests.unit.test_download import reconstruct_prompt_py

    # Upstream's evaluate_benchmark.py imports evaluate_system / evaluate_prompt from prompt.py;
    # wbray reads the same two constants with ast, so the bytes equal the shared prompt files.
    root = _checkout(official_dir, tmp_path, reconstruct_prompt_py(official_dir))
    for mode in ("auto", "official"):
        template = load_judge_template(root, mode)  # type: ignore[arg-type]
        assert template.source == "official" and template.origin == str(root / "prompt.py")
        assert template.system == (official_dir / "prompts" / "judge_system.txt").read_bytes().decode("utf-8")
        assert template.user == (official_dir / "prompts" / "judge_user.txt").read_bytes().decode("utf-8")
        assert template.version == load_judge_template(official_dir, "official").version


def test_prompt_py_is_read_never_run(official_dir: Path, tmp_path: Path) -> None:
    from tests.unit.test_download import reconstruct_prompt_py

    canary = tmp_path / "ran"
    trap = f"import pathlib\npathlib.Path({str(canary)!r}).write_text('executed')\n".encode()
    root = _checkout(official_dir, tmp_path, trap + reconstruct_prompt_py(official_dir))
    assert load_judge_template(root, "auto").source == "official"
    assert not canary.exists()
    (root / "prompt.py").write_bytes(b"evaluate_system = 'x'\nevaluate_prompt = build_prompt()\n")
    with pytest.raises(WbrayError, match=r"prompt\.py:2"):
        load_judge_template(root, "auto")


def test_official_mode_without_any_official_prompt_names_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_judge_template(tmp_path, "official")
    assert "judge_user.txt" in str(info.value) and str(tmp_path / "prompt.py") in str(info.value)
