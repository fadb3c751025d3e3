"""New writing queries (JSONL or Parquet) read strictly, with defaults applied and stated.

A row is ``{"query": ...}`` plus optional ``index``, ``domain1``, ``domain2`` and ``lang`` (a null
value counts as absent: Parquet has no missing keys). Every defect of every row is reported at once,
each naming ``file:line`` and the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from wbray._rows import SourceRow, raise_defects, read_rows
from wbray.criteria._config import QueryDefaults
from wbray.errors import Defect
from wbray.records import LANGS
from wbray.storage import StorageOptions

#: The columns a new-query row may have.
QUERY_COLUMNS: Final[tuple[str, ...]] = ("index", "domain1", "domain2", "lang", "query")
#: Share of CJK ideographs among a query's letters from which ``lang: auto`` says ``zh``.
ZH_SHARE: Final[float] = 0.3


@dataclass(frozen=True)
class NewQuery:
    """A query waiting for criteria.

    Attributes:
        line: Where it came from (JSONL line or Parquet row, 1-based).
        index: Its benchmark index (given, or its position 1..N in the file).
        domain1: Primary domain (given or defaulted).
        domain2: Subdomain (given or defaulted).
        lang: ``"zh"`` or ``"en"`` (given, defaulted or detected).
        query: The writing task.
        defaulted: The fields not given by the row.
    """

    line: int
    index: int
    domain1: str
    domain2: str
    lang: str
    query: str
    defaulted: tuple[str, ...] = ()


def guess_lang(text: str) -> str:
    """``zh`` when at least :data:`ZH_SHARE` of the letters are CJK ideographs, else ``en``."""
    cjk = sum(1 for ch in text if "\u3400" <= ch <= "\u4dbf" or "\u4e00" <= ch <= "\u9fff")
    latin = sum(1 for ch in text if ch.isascii() and ch.isalpha())
    return "zh" if cjk and cjk >= ZH_SHARE * (cjk + latin) else "en"


def _string(value: Any, field: str, add: Any, *, required: bool) -> str | None:
    if value is None:
        if required:
            add(field, "missing required key (a non-empty string)")
        return None
    if not isinstance(value, str):
        add(field, f"expected a string, got {type(value).__name__}")
        return None
    if not value.strip():
        add(field, "empty")
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        add(field, f"unpaired surrogate at character {exc.start + 1} (not valid in UTF-8 text)")
        return None
    return value


def check_query_rows(
    rows: Sequence[SourceRow], source: str, defaults: QueryDefaults
) -> tuple[list[NewQuery], list[Defect]]:
    """Check decoded rows and build the queries (pure: no I/O).

    Indices: either every row gives one (unique non-negative integers) or none does, and then the
    queries are numbered 1..N in file order. Missing ``domain1``/``domain2``/``lang`` take
    ``defaults`` (``lang: auto`` detects it from the text, see :func:`guess_lang`).

    Returns:
        The queries (only rows without defects) and every defect found.
    """
    defects: list[Defect] = []
    given = [r for r in rows if isinstance(r.value, Mapping) and r.value.get("index") is not None]
    numbered = bool(given)
    first_line: dict[int, int] = {}
    out: list[NewQuery] = []
    for position, row in enumerate(rows, start=1):

        def add(field: str, message: str, line: int = row.line) -> None:
            defects.append(Defect(source, line, field, message))

        value = row.value
        if not isinstance(value, Mapping):
            add("", f"expected a JSON object, got {type(value).__name__}")
            continue
        before = len(defects)
        for key in value:
            if key not in QUERY_COLUMNS:
                add(str(key), f"unknown key (a query row has: {', '.join(QUERY_COLUMNS)})")
        query = _string(value.get("query"), "query", add, required=True)
        domain1 = _string(value.get("domain1"), "domain1", add, required=False)
        domain2 = _string(value.get("domain2"), "domain2", add, required=False)
        lang = value.get("lang")
        if lang is not None and lang not in LANGS:
            add("lang", f"expected one of {', '.join(repr(x) for x in LANGS)}, got {lang!r}")
        index = value.get("index")
        if numbered:
            if index is None:
                add(
                    "index",
                    "missing, while other rows give one (give every row an index, or none and they are "
                    "numbered 1..N in file order)",
                )
            elif isinstance(index, bool) or not isinstance(index, int) or index < 0:
                add("index", f"expected a non-negative integer, got {index!r}")
            elif index in first_line:
                add("index", f"duplicate index {index} (also on line {first_line[index]})")
            else:
                first_line[index] = row.line
        if len(defects) > before or query is None:
            continue
        defaulted = tuple(
            k
            for k, v in (("index", index), ("domain1", domain1), ("domain2", domain2), ("lang", lang))
            if v is None
        )
        out.append(
            NewQuery(
                line=row.line,
                index=index if isinstance(index, int) else position,
                domain1=domain1 or defaults.domain1,
                domain2=domain2 or defaults.domain2,
                lang=str(lang) if lang is not None else _default_lang(query, defaults),
                query=query,
                defaulted=defaulted,
            )
        )
    return out, defects


def _default_lang(query: str, defaults: QueryDefaults) -> str:
    return guess_lang(query) if defaults.lang == "auto" else defaults.lang


def load_new_queries(
    uri: str, defaults: QueryDefaults | None = None, storage: StorageOptions | None = None
) -> list[NewQuery]:
    """Read new writing queries from a JSONL or Parquet file (local or ``s3://``).

    Raises:
        DataError: naming the first defect by ``file:line`` and field (every defect in ``.defects``).
        WbrayError: the file cannot be read or has an unknown extension.
    """
    table = read_rows(uri, storage)
    queries, defects = check_query_rows(table.rows, uri, defaults or QueryDefaults())
    raise_defects(table.defects + defects, "bad query file")
    return queries
