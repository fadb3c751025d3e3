"""The bad-input corpus (issue 11): each file under ``tests/bad_inputs/`` through the real command line.

One table, :data:`CASES`, drives every case: the command, the exit code, where the one line must
point (a file:line or a field) and a regex for what it says. Every case is also checked for what a
user would notice besides the message:

- exactly one line, on the stream the command reports on, and nothing on the other (no traceback,
  no warning);
- nothing created, changed or removed in the sandbox the command ran in: a run directory given with
  ``--out`` stays absent, an existing one and the input files stay byte for byte what they were;
- Ray never imported: a poisoned ``ray`` package shadows the real one, so a config or data error that
  only surfaced after a cluster started would show up as an ImportError traceback.

Large inputs (a 50 MB line, a 40,000-character query, 100,000 nested brackets) are generated into the
sandbox at test time; every committed file is small.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from wbray.dataset import example_dir

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "bad_inputs"

#: The benchmark's longest query, measured on the official data (index 37, zh): 31,135 characters.
#: The long-query case is 40,000 characters: longer than any real one, still legitimate data.
LONG_QUERY_CHARS = 40_000
#: Well past any recursion limit: the JSON and YAML parsers recurse once per level.
DEEP_NESTING = 100_000
FIFTY_MB = 50 * 1024 * 1024


def _row(index: int, query: str) -> bytes:
    row = {
        "index": index,
        "domain1": "Academic & Engineering",
        "domain2": "Abstract",
        "lang": "en",
        "query": query,
        "checklist": [
            {
                "name": "Brevity",
                "criteria_description": "Stays within 100 words.",
                **{band: "..." for band in ("1-2", "3-4", "5-6", "7-8", "9-10")},
            }
        ],
    }
    return json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n"


def _write(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _fifty_mb_line(path: Path) -> None:
    # One row whose query string never closes: the file was cut mid-line, 50 MB into it.
    with path.open("wb") as f:
        f.write(b'{"index": 1, "domain1": "Academic & Engineering", "query": "')
        chunk = b"x" * (1024 * 1024)
        for _ in range(50):
            f.write(chunk)
        f.write(b"\n")


def _mkdir(path: Path) -> None:
    path.mkdir()


def _remove(path: Path) -> None:
    path.unlink()


#: Inputs made at test time, by name (``gen:NAME`` in the table).
GENERATORS: dict[str, Callable[[Path], None]] = {
    "deep_nesting_jsonl": _write(b"[" * DEEP_NESTING + b"\n"),
    "fifty_mb_line": _fifty_mb_line,
    "long_query": _write(_row(1, "word " * (LONG_QUERY_CHARS // 5))),
    "deep_nesting_yaml": _write(b"judge: " + b"[" * DEEP_NESTING + b"\n"),
    "directory": _mkdir,
    "remove": _remove,
}


@dataclass(frozen=True)
class Case:
    """One row of the table.

    Attributes:
        id: ``kind/case:command``.
        source: A file under tests/bad_inputs/, or ``gen:NAME`` (see :data:`GENERATORS`).
        place: Where the input goes, relative to the sandbox (``{case}`` in the templates).
        argv: ``wbray`` arguments; ``{case}``, ``{data}``, ``{base}``, ``{out}``, ``{existing}`` and
            ``{runs}`` name sandbox paths.
        where: The file:line or field the line must name (a template, matched literally); empty for
            an input that is accepted.
        expect: A regex the line must match (a template; the paths in it are escaped).
        code: The exit code.
        stream: ``stderr`` (one ``wbray: error:`` line) or ``stdout`` (``data validate``'s report: one
            defect line and the summary).
        example: Start ``{data}`` as a copy of the bundled example benchmark.
    """

    id: str
    source: str
    place: str
    argv: tuple[str, ...]
    where: str
    expect: str
    code: int = 1
    stream: Literal["stderr", "stdout"] = "stderr"
    example: bool = False


def _benchmark(name: str, line: str, field: str, expect: str) -> list[Case]:
    """A query-file case, read by ``data validate`` (the report) and ``data stats`` (the strict loader)."""
    source = f"benchmark/{name}.jsonl" if not name.startswith("gen:") else name
    place = f"input/{name.removeprefix('gen:')}.jsonl"
    where = "{case}" + (f":{line}" if line else "") + (f": {field}" if field else "")
    kind = f"benchmark/{name.removeprefix('gen:')}"
    return [
        Case(
            f"{kind}:validate", source, place, ("data", "validate", "{case}"), where, expect, stream="stdout"
        ),
        Case(f"{kind}:stats", source, place, ("data", "stats", "{case}"), where, expect),
    ]


def _config(name: str, where: str, expect: str) -> Case:
    return Case(
        f"config/{name}:show",
        f"config/{name}.yaml",
        f"input/{name}.yaml",
        ("config", "show", "{case}"),
        where,
        expect,
    )


RUN_OUT = ("--out", "{out}")
OVERRIDE_BASE = ("config", "show", "{base}", "-o")
#: A non-empty list holding the backend's ``model``; exact lists would break whenever a field is added.
ENGINE_FIELDS = r"(\w+, )*model(, \w+)*"

CASES: list[Case] = [
    # --- Benchmark query files (benchmark_all.jsonl style) -------------------------------------------
    *_benchmark("truncated_json", "2", "", r"malformed JSON: Unterminated string starting at \(column 62\)"),
    *_benchmark("index_as_string", "1", "index", r"expected an integer, got string '1'$"),
    *_benchmark("checklist_not_list", "1", "checklist", r"expected an array of criteria, got string"),
    *_benchmark("criterion_missing_band", "1", "checklist[0]", r"missing key\(s\) '5-6' \(a criterion has"),
    *_benchmark("missing_key", "1", "domain2", r"missing required key$"),
    *_benchmark("duplicate_index", "2", "index", r"duplicate index 1 \(also on line 1\)$"),
    *_benchmark("empty_query", "1", "query", r"empty query$"),
    *_benchmark("not_an_object", "1", "", r"expected a JSON object, got array$"),
    *_benchmark("non_utf8", "2", "", r"not valid UTF-8 \(byte 0xe9 at offset 101\)$"),
    *_benchmark(
        "bom", "1", "", r"starts with a UTF-8 byte-order mark \(BOM\): save the file as UTF-8 without BOM$"
    ),
    *_benchmark("lone_surrogate", "1", "query", r"unpaired surrogate \\ud83d at character 23"),
    *_benchmark("empty", "", "", r"empty file \(expected one JSON object per line\)$"),
    *_benchmark("gen:deep_nesting_jsonl", "1", "", r"malformed JSON: nested too deeply to parse$"),
    *_benchmark(
        "gen:fifty_mb_line", "1", "", r"malformed JSON: Unterminated string starting at \(column 60\)$"
    ),
    # A path is part of the message: one holding a line break must not split it over two lines.
    Case(
        "benchmark/line_break_in_file_name:stats",
        "benchmark/index_as_string.jsonl",
        "input/two\nlines.jsonl",
        ("data", "stats", "{case}"),
        "input/two\\nlines.jsonl:1: index",
        r"expected an integer, got string '1'$",
    ),
    # Accepted: CRLF line ends (upstream's own file uses them) and a query longer than any real one.
    Case(
        "benchmark/crlf:validate",
        "benchmark/crlf.jsonl",
        "input/crlf.jsonl",
        ("data", "validate", "{case}"),
        "",
        r"^OK: no defects in {case}$",
        code=0,
        stream="stdout",
    ),
    Case(
        "benchmark/long_query:validate",
        "gen:long_query",
        "input/long_query.jsonl",
        ("data", "validate", "{case}"),
        "",
        r"^OK: no defects in {case}$",
        code=0,
        stream="stdout",
    ),
    Case(
        "benchmark/long_query:stats",
        "gen:long_query",
        "input/long_query.jsonl",
        ("data", "stats", "{case}", "--json"),
        "",
        r'"max": 40000,',
        code=0,
        stream="stdout",
    ),
    # --- Benchmark files inside a data directory (what `wbray run` loads) -----------------------------
    Case(
        "benchmark/truncated_json:run",
        "benchmark/truncated_json.jsonl",
        "data/queries.jsonl",
        ("run", "{base}", "--data-dir", "{data}", *RUN_OUT),
        "{case}:2",
        r"malformed JSON: Unterminated string",
    ),
    Case(
        "benchmark/lone_surrogate:run-into-existing",
        "benchmark/lone_surrogate.jsonl",
        "data/queries.jsonl",
        ("run", "{base}", "--data-dir", "{data}", "--out", "{existing}"),
        "{case}:1: query",
        r"unpaired surrogate",
    ),
    Case(
        "subset/r_query_differs:validate",
        "subset/r_query_differs.jsonl",
        "data/requirement/style/R.jsonl",
        ("data", "validate", "{data}"),
        "{case}:2: query",
        r"differs from query 5 in {data}/queries\.jsonl",
        stream="stdout",
        example=True,
    ),
    Case(
        "subset/r_query_differs:run",
        "subset/r_query_differs.jsonl",
        "data/requirement/style/R.jsonl",
        ("run", "{base}", "--data-dir", "{data}", "--out", "{existing}"),
        "{case}:2: query",
        r"differs from query 5",
        example=True,
    ),
    Case(
        "subset/c_criterion_missing_band:validate",
        "subset/c_criterion_missing_band.jsonl",
        "input/style_subset_C.jsonl",
        ("data", "validate", "{case}"),
        "{case}:1: checklist[0]",
        r"missing key\(s\) '5-6'",
        stream="stdout",
    ),
    Case(
        "subset/missing_c_file:stats",
        "gen:remove",
        "data/requirement/style/C.jsonl",
        ("data", "stats", "{data}"),
        "{case}",
        r"missing file: requirement 'style' needs both its R and C files$",
        example=True,
    ),
    # --- Data directories --------------------------------------------------------------------------
    Case(
        "data_dir/no_data:validate",
        "gen:directory",
        "empty",
        ("data", "validate", "{case}"),
        "{case}",
        r"^{case}: no WritingBench data found \(expected ",
        stream="stdout",
    ),
    Case(
        "data_dir/no_data:run",
        "gen:directory",
        "empty",
        ("run", "{base}", "--data-dir", "{case}", *RUN_OUT),
        "{case}",
        r"{case}: not a WritingBench data directory \(expected ",
    ),
    # --- Configs -------------------------------------------------------------------------------------
    _config(
        "unknown_key",
        "judge.sampling.temprature",
        r"unknown key 'judge\.sampling\.temprature'; did you mean 'temperature'\? "
        r"\(allowed here: (\w+, )*temperature(, \w+)*\)$",
    ),
    _config(
        "engine_unknown_key",
        "judge.engine.modle",
        rf"unknown key 'judge\.engine\.modle'; did you mean 'model'\? \(backend 'transformers'; "
        rf"allowed here: {ENGINE_FIELDS}\)$",
    ),
    _config(
        "candidate_engine_unknown_key",
        "candidates.0.engine.max_concurency",
        r"did you mean 'max_concurrency'\? \(backend 'openai'; "
        r"allowed here: (\w+, )*max_concurrency(, \w+)*\)$",
    ),
    _config(
        "unknown_backend",
        "judge.engine.backend",
        r"unknown backend 'vllms'; did you mean 'vllm'\? \(one of: transformers, openai, vllm, serve",
    ),
    _config("missing_backend", "judge.engine", r"missing key 'backend' \(one of: transformers, openai, "),
    _config("zero_actors", "generation.resources.actors", r"greater than or equal to 1 \(got 0\)$"),
    _config("negative_batch_size", "judge.resources.batch_size", r"greater than or equal to 1 \(got -4\)$"),
    _config(
        "zero_engine_batch_size", "candidates.0.engine.batch_size", r"greater than or equal to 1 \(got 0\)$"
    ),
    _config("negative_replicas", "judge.engine.replicas", r"greater than or equal to 1 \(got -1\)$"),
    _config("max_actors_below_actors", "judge.resources", r"max_actors \(2\) must be at least actors \(4\)$"),
    _config("not_yaml", "{case}:2", r"not valid YAML: expected '<document start>', but found '<scalar>'"),
    _config("tab_indent", "{case}:2", r"not valid YAML: found character '\\t' that cannot start any token"),
    _config("top_level_list", "{case}", r"{case}: the top level must be a mapping, got list$"),
    _config("non_utf8", "{case}:2", r"not valid UTF-8 \(byte 0xe9 at column 12\); save the config as UTF-8$"),
    _config("duplicate_key", "{case}:5", r"not valid YAML: key 'judge' appears twice \(first on line 1\)"),
    _config("too_deep", "judge.engine.engine_kwargs.compilation", r"nested more than 32 levels deep$"),
    Case(
        "config/deep_nesting:show",
        "gen:deep_nesting_yaml",
        "input/deep.yaml",
        ("config", "show", "{case}"),
        "{case}",
        r"{case}: not valid YAML: nested too deeply to parse$",
    ),
    Case(
        "config/directory:show",
        "gen:directory",
        "input/configs",
        ("config", "show", "{case}"),
        "{case}",
        r"{case}: is a directory, not a config file$",
    ),
    Case(
        "config/directory:run",
        "gen:directory",
        "input/configs",
        ("run", "{case}", "--data-dir", "example", *RUN_OUT),
        "{case}",
        r"is a directory, not a config file$",
    ),
    Case(
        "config/engine_unknown_key:run",
        "config/engine_unknown_key.yaml",
        "input/engine_unknown_key.yaml",
        ("run", "{case}", "--data-dir", "example", *RUN_OUT),
        "judge.engine.modle",
        r"did you mean 'model'\?",
    ),
    Case(
        "config/zero_actors:run-into-existing",
        "config/zero_actors.yaml",
        "input/zero_actors.yaml",
        ("run", "{case}", "--data-dir", "example", "--out", "{existing}"),
        "generation.resources.actors",
        r"greater than or equal to 1",
    ),
    # A BOM is part of YAML's syntax (PyYAML skips it) and a config's identity is its parsed content.
    Case(
        "config/bom:show",
        "config/bom.yaml",
        "input/bom.yaml",
        ("config", "show", "{case}"),
        "",
        r"\n  repeats: 3\n",
        code=0,
        stream="stdout",
    ),
    # --- Serve configs (the same loader; `wbray serve` checks them before Ray starts) -----------------
    Case(
        "serve/zero_max_replicas:serve",
        "serve/zero_max_replicas.yaml",
        "input/zero_max_replicas.yaml",
        ("serve", "{case}"),
        "models.0.deployment.autoscaling.max_replicas",
        r"greater than or equal to 1 \(got 0\)$",
    ),
    Case(
        "serve/engine_unknown_key:serve",
        "serve/engine_unknown_key.yaml",
        "input/engine_unknown_key.yaml",
        ("serve", "{case}"),
        "models.0.engine.modle",
        rf"did you mean 'model'\? \(backend 'transformers'; allowed here: {ENGINE_FIELDS}\)$",
    ),
    # --- `-o` overrides reach list items --------------------------------------------------------------
    Case(
        "override/list_item:show",
        "valid.yaml",
        "base.yaml",
        (*OVERRIDE_BASE, "candidates.0.engine.batch_size=2"),
        "",
        r"\n    batch_size: 2\n",
        code=0,
        stream="stdout",
    ),
    Case(
        "override/index_out_of_range:show",
        "valid.yaml",
        "base.yaml",
        (*OVERRIDE_BASE, "candidates.1.engine.batch_size=2"),
        "override 'candidates.1.engine.batch_size=2'",
        r"candidates has 1 item\(s\), so index 1 is out of range \(valid: 0\.\.0\)$",
    ),
    Case(
        "override/index_not_a_number:show",
        "valid.yaml",
        "base.yaml",
        (*OVERRIDE_BASE, "candidates.tiny.name=x"),
        "override 'candidates.tiny.name=x'",
        r"candidates is a list: write an item number in place of 'tiny' \(valid: 0\.\.0\)$",
    ),
    Case(
        "override/list_item_bad_value:show",
        "valid.yaml",
        "base.yaml",
        (*OVERRIDE_BASE, "candidates.0.engine.batch_size=0"),
        "candidates.0.engine.batch_size",
        r"\(with -o overrides\): candidates\.0\.engine\.batch_size: .*greater than or equal to 1",
    ),
    Case(
        "override/list_item_unknown_key:show",
        "valid.yaml",
        "base.yaml",
        (*OVERRIDE_BASE, "candidates.0.engine.modle=x"),
        "candidates.0.engine.modle",
        r"did you mean 'model'\? \(backend 'openai'; allowed here: ",
    ),
    Case(
        "override/index_out_of_range:run",
        "valid.yaml",
        "base.yaml",
        ("run", "{base}", "-o", "candidates.3.name=x", "--data-dir", "example", *RUN_OUT),
        "override 'candidates.3.name=x'",
        r"index 3 is out of range",
    ),
    # --- A run directory whose manifest.json is truncated ---------------------------------------------
    Case(
        "run/truncated_manifest:runs-list",
        "run/truncated_manifest.json",
        "runs/r1/manifest.json",
        ("runs", "list", "{runs}"),
        "{case}:7",
        r"truncated or corrupt manifest \(Expecting value at column 16\); restore it, or delete it",
    ),
    Case(
        "run/truncated_manifest:run",
        "run/truncated_manifest.json",
        "runs/r1/manifest.json",
        ("run", "{base}", "--data-dir", "example", "--out", "{runs}/r1"),
        "{case}:7",
        r"truncated or corrupt manifest",
    ),
    Case(
        "run/truncated_manifest:aggregate",
        "run/truncated_manifest.json",
        "runs/r1/manifest.json",
        ("aggregate", "{runs}/r1", "--data-dir", "example", *RUN_OUT),
        "{case}:7",
        r"truncated or corrupt manifest",
    ),
    Case(
        "run/truncated_manifest:aggregate-into-existing",
        "run/truncated_manifest.json",
        "runs/r1/manifest.json",
        ("aggregate", "{runs}", "--data-dir", "example", "--out", "{existing}"),
        "{case}:7",
        r"truncated or corrupt manifest",
    ),
]


def _sandbox(root: Path, case: Case) -> dict[str, Path]:
    """Lay out the sandbox a case runs in; return the paths its templates name."""
    paths = {
        "case": root / case.place,
        "data": root / "data",
        "base": root / "base.yaml",
        "out": root / "out",
        "existing": root / "existing",
        "runs": root / "runs",
    }
    root.mkdir()
    shutil.copyfile(CORPUS / "valid.yaml", paths["base"])
    # Output written by an earlier command: a failing command must leave it as it was.
    existing = paths["existing"]
    (existing / "reports").mkdir(parents=True)
    (existing / "manifest.json").write_text('{"status": "finished"}\n')
    (existing / "reports" / "leaderboard.md").write_text("| Model | Overall |\n|---|---|\n| tiny | 7.5 |\n")
    if case.example:
        shutil.copytree(example_dir(), paths["data"], ignore=shutil.ignore_patterns("results", "*.md"))
    target = paths["case"]
    target.parent.mkdir(parents=True, exist_ok=True)
    if case.source.startswith("gen:"):
        GENERATORS[case.source.removeprefix("gen:")](target)
    else:
        shutil.copyfile(CORPUS / case.source, target)
    return paths


def _snapshot(root: Path) -> dict[str, str]:
    """Every directory and file under ``root`` with a hash of its bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def poisoned_ray(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose ``ray`` package fails on import (put first on PYTHONPATH)."""
    root = tmp_path_factory.mktemp("poison")
    (root / "ray").mkdir()
    (root / "ray" / "__init__.py").write_text(
        'raise ImportError("ray was imported: this input should have failed before Ray starts")\n'
    )
    return root


def _wbray(args: list[str], cwd: Path, poison: Path) -> subprocess.CompletedProcess[str]:
    pythonpath = os.pathsep.join(p for p in (str(poison), str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath}
    return subprocess.run(
        [sys.executable, "-m", "wbray.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, poisoned_ray: Path) -> None:
    root = tmp_path / "sandbox"
    paths = _sandbox(root, case)
    values = {name: str(path) for name, path in paths.items()}
    before = _snapshot(root)

    result = _wbray([a.format(**values) for a in case.argv], root, poisoned_ray)

    report = f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == case.code, report
    if case.stream == "stderr":
        assert result.stdout == "", report
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("wbray: error: "), report
        line = lines[0]
    else:
        assert result.stderr == "", report
        lines = result.stdout.splitlines()
        line = lines[0]
        if case.code:
            # `data validate` reports one line per defect: one defect, then the summary.
            assert len(lines) == 2 and re.fullmatch(r"1 defect\(s\) in 1 file\(s\) under .+", lines[1]), (
                report
            )
    if case.code:
        where = case.where.format(**values)
        assert where, "a rejected input's line must name a file:line or a field"
        assert where in line, f"the line does not name {where!r}: {line!r}"
    pattern = case.expect.format(**{k: re.escape(v) for k, v in values.items()})
    text = result.stdout if case.code == 0 else line
    assert re.search(pattern, text), f"{pattern!r} not found in:\n{text[:3000]}"
    assert _snapshot(root) == before, "the command created, changed or removed files"


def test_corpus_files_are_small_and_all_used() -> None:
    files = {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*") if p.is_file()}
    used = {c.source for c in CASES if not c.source.startswith("gen:")}
    assert files - {"README.md"} == used
    assert max((CORPUS / f).stat().st_size for f in files) < 64 * 1024


def test_the_poison_catches_a_command_that_reaches_ray(tmp_path: Path, poisoned_ray: Path) -> None:
    # The control for every `run` case above: valid input goes past config and data to Ray, and the
    # poisoned package turns that into a failure a case would see.
    shutil.copyfile(CORPUS / "valid.yaml", tmp_path / "valid.yaml")
    result = _wbray(["run", "valid.yaml", "--data-dir", "example", "--out", "out"], tmp_path, poisoned_ray)
    assert result.returncode != 0
    assert "ImportError: ray was imported" in result.stderr
