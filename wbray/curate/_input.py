"""Instruction pairs (JSONL or Parquet) read strictly; every other column is kept as it is.

A row holds ``prompt`` (or ``query``) and ``response``, optionally ``id`` and a ``checklist`` of
criteria already written, and ``domain1``/``domain2``/``lang`` for criteria still to be written. A
null value counts as absent (Parquet has no missing keys). The curation's own output columns may
not be in the input: they would be overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from wbray._rows import RowFormat, SourceRow, raise_defects, read_rows
from wbray.criteria import checklist_problems
from wbray.errors import Defect
from wbray.records import LANGS
from wbray.storage import StorageOptions

#: Columns the curation adds to every output row.
OUTPUT_COLUMNS: Final[tuple[str, ...]] = ("score", "criteria_scores", "unscored_reason")


@dataclass(frozen=True)
class Pair:
    """One prompt/response pair.

    Attributes:
        position: 0-based position in the file.
        line: JSONL line or Parquet row (1-based), for messages.
        id: The row's ``id``, or its 1-based position when the file gives none.
        prompt: The instruction (``prompt`` or ``query``).
        response: The response to judge (an empty one is judged like any other text).
        checklist: Criteria the row brings, in checklist key order; None = to be written.
        domain1: For criteria to be written (None = the config's default).
        domain2: Likewise.
        lang: Likewise (``zh``/``en``).
        row: The row exactly as read, every column.
    """

    position: int
    line: int
    id: str | int
    prompt: str
    response: str
    checklist: tuple[Mapping[str, str], ...] | None
    domain1: str | None
    domain2: str | None
    lang: str | None
    row: Mapping[str, Any]


@dataclass(frozen=True)
class PairFile:
    """A loaded pair file: its source, format and pairs in file order."""

    source: str
    format: RowFormat
    pairs: tuple[Pair, ...]


def _text(value: Any, field: str, add: Any, *, allow_empty: bool = False) -> str | None:
    if not isinstance(value, str):
        add(field, f"expected a string, got {'null' if value is None else type(value).__name__}")
        return None
    if not allow_empty and not value.strip():
        add(field, "empty")
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        add(field, f"unpaired surrogate at character {exc.start + 1} (not valid in UTF-8 text)")
        return None
    return value


def check_pair_rows(rows: Sequence[SourceRow], source: str) -> tuple[list[Pair], list[Defect]]:
    """Check decoded rows and build the pairs (pure: no I/O).

    Ids: either every row gives one (unique strings or integers) or none does, and then each pair's
    id is its 1-based position. A checklist a row brings follows the benchmark's item rules (any
    number of items, names distinct).

    Returns:
        The pairs (only rows without defects) and every defect found.
    """
    defects: list[Defect] = []
    with_id = any(isinstance(r.value, Mapping) and r.value.get("id") is not None for r in rows)
    first_line: dict[str | int, int] = {}
    pairs: list[Pair] = []
    for position, row in enumerate(rows):

        def add(field: str, message: str, line: int = row.line) -> None:
            defects.append(Defect(source, line, field, message))

        value = row.value
        if not isinstance(value, Mapping):
            add("", f"expected a JSON object, got {type(value).__name__}")
            continue
        before = len(defects)
        for key in OUTPUT_COLUMNS:
            if key in value:
                add(key, "the curation writes this column: rename it in the input")
        has_prompt, has_query = value.get("prompt") is not None, value.get("query") is not None
        prompt: str | None = None
        if has_prompt and has_query:
            add("prompt", "give 'prompt' or 'query', not both")
        elif not has_prompt and not has_query:
            add("prompt", "missing required key (the instruction, as 'prompt' or 'query')")
        else:
            key = "prompt" if has_prompt else "query"
            prompt = _text(value[key], key, add)
        response = _text(value.get("response"), "response", add, allow_empty=True)
        pair_id = value.get("id")
        if with_id:
            if pair_id is None:
                add("id", "missing, while other rows give one (give every row an id, or none)")
            elif isinstance(pair_id, bool) or not isinstance(pair_id, str | int):
                add("id", f"expected a string or an integer, got {type(pair_id).__name__}")
            elif pair_id in first_line:
                add("id", f"duplicate id {pair_id!r} (also on line {first_line[pair_id]})")
            else:
                first_line[pair_id] = row.line
        domains = {}
        for key in ("domain1", "domain2"):
            domains[key] = _text(value[key], key, add) if value.get(key) is not None else None
        lang = value.get("lang")
        if lang is not None and lang not in LANGS:
            add("lang", f"expected one of {', '.join(repr(x) for x in LANGS)}, got {lang!r}")
        checklist = value.get("checklist")
        if checklist is not None:
            for problem in checklist_problems(checklist, count=None, where="checklist"):
                field, _, message = problem.partition(": ")
                add(field, message)
        if len(defects) > before or prompt is None or response is None:
            continue
        pairs.append(
            Pair(
                position=position,
                line=row.line,
                id=pair_id if isinstance(pair_id, str | int) else position + 1,
                prompt=prompt,
                response=response,
                checklist=tuple(checklist) if checklist is not None else None,
                domain1=domains["domain1"],
                domain2=domains["domain2"],
                lang=lang,
                row=value,
            )
        )
    return pairs, defects


def load_pairs(uri: str, storage: StorageOptions | None = None) -> PairFile:
    """Read prompt/response pairs from a JSONL or Parquet file (local or ``s3://``).

    Raises:
        DataError: naming the first defect by ``file:line`` and field (every defect in ``.defects``).
        WbrayError: the file cannot be read or has an unknown extension.
    """
    table = read_rows(uri, storage)
    pairs, defects = check_pair_rows(table.rows, uri)
    raise_defects(table.defects + defects, "bad pair file")
    return PairFile(uri, table.format, tuple(pairs))
