"""Row, file and cross-file checks shared by the strict loaders and ``wbray data validate``.

Every check appends a :class:`~wbray.errors.Defect` and carries on, so one pass reports every problem.
The loaders raise :class:`~wbray.errors.DataError` when the list is not empty; validation returns it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wbray._jsonl import read_jsonl
from wbray.errors import Defect
from wbray.records import CRITERION_KEYS, LANGS, REQUIREMENTS, Criterion, Query, RequirementSubset

from ._layout import EXPECTED_FILES_HINT, Layout, detect_layout

_CRITERION_KEYS_TEXT = ", ".join(CRITERION_KEYS)


@dataclass(frozen=True)
class ParsedRow:
    """A row that passed every row-level check."""

    line: int
    query: Query
    list_key: str  # "checklist" (current format) or "criteria" (first release)


@dataclass
class FileResult:
    """What one file yielded: its bytes, the valid rows and the defects (rows with defects are dropped)."""

    path: Path
    data: bytes = b""
    rows: list[ParsedRow] = field(default_factory=list)
    defects: list[Defect] = field(default_factory=list)

    def by_index(self) -> dict[int, ParsedRow]:
        return {r.query.index: r for r in self.rows}


def _json_type(value: Any) -> str:
    # JSON's own names, since the files are JSON: a user fixing them thinks in these terms.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _got(value: Any) -> str:
    shown = repr(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
    if isinstance(value, bool):
        shown = "true" if value else "false"
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{_json_type(value)} {shown}".rstrip()


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _key_shown(key: str) -> str:
    # A key is data: one holding a newline or a lone surrogate would break the one-line report.
    return key if key.isprintable() else repr(key)


def _unencodable(text: str) -> str | None:
    """Why ``text`` cannot be written back as UTF-8, or None when it can.

    JSON's ``\\ud800``-style escapes decode to lone surrogates, which no UTF-8 writer (row ids,
    Parquet, prompts sent over HTTP) accepts; caught here, not as a crash mid-run.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        return f"unpaired surrogate \\u{code:04x} at character {exc.start + 1} (not valid in UTF-8 text)"
    return None


def check_row(
    value: Any, path: str, line: int, *, require_lang: bool
) -> tuple[ParsedRow | None, list[Defect]]:
    """Check one decoded row; return the parsed row (None when it has defects) and its defects.

    Args:
        value: The decoded JSON value.
        path: The file name used in defects.
        line: The 1-based line number used in defects.
        require_lang: True for a current-format query file, where ``lang`` is required. Rows that use
            the first-release key ``criteria`` never need ``lang``.
    """
    defects: list[Defect] = []

    def add(field_name: str, message: str) -> None:
        defects.append(Defect(path, line, field_name, message))

    if not isinstance(value, dict):
        add("", f"expected a JSON object, got {_got(value)}")
        return None, defects

    if "checklist" in value and "criteria" in value:
        add("criteria", "a row has 'checklist' (current format) or 'criteria' (first release), not both")
    list_key = "criteria" if "criteria" in value and "checklist" not in value else "checklist"
    first_release = list_key == "criteria"
    allowed = ("index", "domain1", "domain2", "lang", "query", list_key)
    for key in value:
        if key not in allowed and key not in ("checklist", "criteria"):
            add(_key_shown(str(key)), f"unknown key (a row has: {', '.join(allowed)})")

    index = value.get("index")
    if "index" not in value:
        add("index", "missing required key")
    elif isinstance(index, bool) or not isinstance(index, int):
        add("index", f"expected an integer, got {_got(index)}")

    for key in ("domain1", "domain2", "query"):
        if key not in value:
            add(key, "missing required key")
        elif not isinstance(value[key], str):
            add(key, f"expected a string, got {_got(value[key])}")
        elif not value[key].strip():
            add(key, "empty query" if key == "query" else f"empty {key}")
        elif (why := _unencodable(value[key])) is not None:
            add(key, why)

    lang = value.get("lang")
    if "lang" not in value:
        if require_lang and not first_release:
            add("lang", f"missing required key (one of {_quoted(LANGS)})")
    elif lang not in LANGS:
        add("lang", f"expected one of {_quoted(LANGS)}, got {_got(lang)}")

    criteria = _check_checklist(value, list_key, add)

    if defects or criteria is None:
        return None, defects
    query = Query(
        index=value["index"],
        domain1=value["domain1"],
        domain2=value["domain2"],
        query=value["query"],
        checklist=criteria,
        lang=lang,
    )
    return ParsedRow(line, query, list_key), defects


def _check_checklist(
    value: dict[str, Any], list_key: str, add: Callable[[str, str], None]
) -> tuple[Criterion, ...] | None:
    if list_key not in value:
        add(list_key, "missing required key (a list of criteria)")
        return None
    items = value[list_key]
    if not isinstance(items, list):
        add(list_key, f"expected an array of criteria, got {_got(items)}")
        return None
    if not items:
        add(list_key, "empty list (a query needs at least one criterion)")
        return None
    criteria: list[Criterion] = []
    seen: dict[str, int] = {}
    ok = True
    for i, item in enumerate(items):
        where = f"{list_key}[{i}]"
        if not isinstance(item, dict):
            add(where, f"expected an object with keys {_CRITERION_KEYS_TEXT}, got {_got(item)}")
            ok = False
            continue
        missing = [k for k in CRITERION_KEYS if k not in item]
        extra = [k for k in item if k not in CRITERION_KEYS]
        if missing:
            add(where, f"missing key(s) {_quoted(missing)} (a criterion has exactly: {_CRITERION_KEYS_TEXT})")
        if extra:
            add(where, f"unknown key(s) {_quoted(extra)} (a criterion has exactly: {_CRITERION_KEYS_TEXT})")
        bad_types = [k for k in CRITERION_KEYS if k in item and not isinstance(item[k], str)]
        for k in bad_types:
            add(f"{where}.{k}", f"expected a string, got {_got(item[k])}")
        for k in CRITERION_KEYS:
            if isinstance(item.get(k), str) and (why := _unencodable(item[k])) is not None:
                add(f"{where}.{k}", why)
                bad_types.append(k)
        name = item.get("name")
        if isinstance(name, str):
            if not name.strip():
                add(f"{where}.name", "empty criterion name")
            elif name in seen:
                add(f"{where}.name", f"duplicate criterion name {name!r} (also {list_key}[{seen[name]}])")
            else:
                seen[name] = i
        if missing or extra or bad_types or not isinstance(name, str):
            ok = False
            continue
        # The dict itself, in file key order: the judge prompt embeds its repr.
        criteria.append(Criterion(name=name, item=item))
    return tuple(criteria) if ok else None


def check_file(path: Path, *, require_lang: bool) -> FileResult:
    """Read and check one JSONL file, including duplicate indices within it."""
    data, rows, defects = read_jsonl(path)
    result = FileResult(path, data, [], defects)
    shown = str(path)
    if not data and not defects:
        # Zero rows would load as a benchmark (or subset) of nothing and score an empty leaderboard.
        result.defects.append(Defect(shown, 0, "", "empty file (expected one JSON object per line)"))
    first_line: dict[int, int] = {}
    for row in rows:
        parsed, row_defects = check_row(row.value, shown, row.line, require_lang=require_lang)
        result.defects.extend(row_defects)
        index = row.value.get("index") if isinstance(row.value, dict) else None
        if isinstance(index, int) and not isinstance(index, bool):
            if index in first_line:
                result.defects.append(
                    Defect(
                        shown,
                        row.line,
                        "index",
                        f"duplicate index {index} (also on line {first_line[index]})",
                    )
                )
                continue
            first_line[index] = row.line
        if parsed is not None:
            result.rows.append(parsed)
    result.defects.sort(key=lambda d: d.line)
    return result


@dataclass
class Scan:
    """Everything read from one data directory."""

    layout: Layout
    queries: FileResult | None  # None when the directory has no query file (or it was not asked for)
    requirements: dict[str, RequirementSubset]
    defects: list[Defect]


def scan_layout(layout: Layout, *, with_queries: bool = True) -> Scan:
    """Read the query file (when ``with_queries``) and the requirement subsets, with cross-file checks.

    Cross-file checks: R and C files of a requirement list the same indices; every C criterion name
    exists in that query's checklist (the query file's when present, else the R file's); every R
    index exists in the query file, with the same query text, when both are present.
    """
    defects: list[Defect] = []
    queries: FileResult | None = None
    if with_queries and layout.query_file.is_file():
        queries = check_file(layout.query_file, require_lang=True)
        defects.extend(queries.defects)
    bench = queries.by_index() if queries is not None else {}

    pairs = {name: layout.subset_files(name) for name in REQUIREMENTS}
    present = [p for pair in pairs.values() for p in pair if p.is_file()]
    requirements: dict[str, RequirementSubset] = {}
    if not present:
        return Scan(layout, queries, requirements, defects)

    for name, (r_path, c_path) in pairs.items():
        missing = [p for p in (r_path, c_path) if not p.is_file()]
        for p in missing:
            defects.append(
                Defect(str(p), 0, "", f"missing file: requirement {name!r} needs both its R and C files")
            )
        if missing:
            continue
        r_file = check_file(r_path, require_lang=False)
        c_file = check_file(c_path, require_lang=False)
        defects.extend(r_file.defects)
        defects.extend(c_file.defects)
        defects.extend(_cross_check(r_file, c_file, queries, bench))
        requirements[name] = RequirementSubset(
            name=name,
            r_indices=tuple(r.query.index for r in r_file.rows),
            c_criteria={r.query.index: tuple(c.name for c in r.query.checklist) for r in c_file.rows},
        )
    return Scan(layout, queries, requirements, defects)


def _cross_check(
    r_file: FileResult, c_file: FileResult, queries: FileResult | None, bench: dict[int, ParsedRow]
) -> list[Defect]:
    defects: list[Defect] = []
    r_rows = r_file.by_index()
    c_rows = c_file.by_index()
    r_name, c_name = str(r_file.path), str(c_file.path)
    for row in r_file.rows:
        idx = row.query.index
        if idx not in c_rows:
            defects.append(Defect(r_name, row.line, "index", f"index {idx} has no row in {c_name}"))
        if queries is not None:
            ref = bench.get(idx)
            if ref is None:
                defects.append(Defect(r_name, row.line, "index", f"index {idx} is not in {queries.path}"))
            elif ref.query.query != row.query.query:
                defects.append(
                    Defect(
                        r_name,
                        row.line,
                        "query",
                        f"differs from query {idx} in {queries.path} (subset file from another release?)",
                    )
                )
    for row in c_file.rows:
        idx = row.query.index
        if idx not in r_rows:
            defects.append(Defect(c_name, row.line, "index", f"index {idx} has no row in {r_name}"))
        ref_row = bench.get(idx) if queries is not None else r_rows.get(idx)
        if ref_row is None:
            continue
        ref_file = queries.path if queries is not None else r_file.path
        names = {c.name for c in ref_row.query.checklist}
        for i, criterion in enumerate(row.query.checklist):
            if criterion.name not in names:
                defects.append(
                    Defect(
                        c_name,
                        row.line,
                        f"{row.list_key}[{i}].name",
                        f"criterion {criterion.name!r} is not in query {idx}'s checklist in {ref_file}",
                    )
                )
    return defects


def _file_kind_requires_lang(path: Path) -> bool:
    # Subset files (R/C, any release) carry no "lang"; any other file is read as a query file.
    name = path.name
    return not (name.endswith(("_subset.jsonl", "_subset_C.jsonl")) or name in ("R.jsonl", "C.jsonl"))


def _data_roots(directory: Path) -> list[Path]:
    roots = [directory] if detect_layout(directory) is not None else []
    # Nested official trees, e.g. the first release kept under v1_1239/ in the shared mirror.
    nested = sorted({p.parent for p in directory.rglob("benchmark_query") if p.is_dir()})
    roots.extend(p for p in nested if p != directory)
    return roots


def validate_path(path: str | Path) -> list[Defect]:
    """Check a JSONL file, or every benchmark and subset file under a data directory.

    A single file gets row-level and duplicate-index checks (``lang`` is required unless it is a
    subset file). A directory gets, per data root found in it (the directory itself and any nested
    ``benchmark_query`` tree), every file plus the cross-file checks of :func:`scan_layout`.

    Args:
        path: A ``.jsonl`` file or a data directory.

    Returns:
        Every defect found, in file order; empty when the data is clean.
    """
    target = Path(path)
    if target.is_file():
        return check_file(target, require_lang=_file_kind_requires_lang(target)).defects
    if not target.is_dir():
        return [Defect(str(target), 0, "", "no such file or directory")]
    defects: list[Defect] = []
    roots = _data_roots(target)
    found = False
    for root in roots:
        layout = detect_layout(root)
        if layout is None:  # pragma: no cover - _data_roots only yields detected roots
            continue
        found = found or bool(layout.present_files())
        defects.extend(scan_layout(layout).defects)
    if not found:
        defects.append(Defect(str(target), 0, "", f"no WritingBench data found ({EXPECTED_FILES_HINT})"))
    return defects
