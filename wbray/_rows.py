"""Tables of rows from JSONL or Parquet, at any URI, with every defect named by file and line.

The input files of ``wbray criteria`` and ``wbray curate`` are a user's own data: JSON Lines (one
object per line) or Parquet, chosen by the file's extension. Both come back as plain dicts with the
line (JSONL) or 1-based row number (Parquet) they came from, so a defect names ``file:line`` either
way. Writing keeps the input's format, so a curated set reads like the set it came from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from wbray._jsonl import parse_jsonl
from wbray.errors import DataError, Defect, WbrayError
from wbray.storage import StorageOptions, read_bytes, write_bytes

RowFormat = Literal["jsonl", "parquet"]

#: File extensions read as each format.
_EXTENSIONS: dict[str, RowFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


@dataclass(frozen=True)
class SourceRow:
    """One row of an input table.

    Attributes:
        line: The JSONL line, or the Parquet row number (both 1-based).
        value: The decoded row (for Parquet, a dict of the row's columns).
    """

    line: int
    value: Any


@dataclass
class RowFile:
    """What one input file held: its format, its rows and the defects found while decoding."""

    source: str
    format: RowFormat
    rows: list[SourceRow] = field(default_factory=list)
    defects: list[Defect] = field(default_factory=list)


def row_format(uri: str) -> RowFormat:
    """The format of ``uri`` by its extension.

    Raises:
        WbrayError: an extension that is neither JSONL nor Parquet.
    """
    lowered = uri.lower()
    for ext, fmt in _EXTENSIONS.items():
        if lowered.endswith(ext):
            return fmt
    allowed = ", ".join(_EXTENSIONS)
    raise WbrayError(f"{uri}: unknown file type (use one of {allowed})")


def read_rows(uri: str, storage: StorageOptions | None = None) -> RowFile:
    """Read a JSONL or Parquet file (local path, ``file://`` or ``s3://``).

    A JSONL line that does not decode is a defect naming its line; an empty file is a defect too.

    Raises:
        WbrayError: the file cannot be read at all, or is not a Parquet file.
    """
    fmt = row_format(uri)
    try:
        data = read_bytes(uri, storage)
    except IsADirectoryError:
        raise WbrayError(f"{uri}: is a directory, not a JSONL or Parquet file") from None
    except OSError as exc:
        raise WbrayError(f"{uri}: cannot read ({exc.strerror or exc})") from None
    out = RowFile(uri, fmt)
    if fmt == "jsonl":
        rows, defects = parse_jsonl(data, uri)
        out.rows = [SourceRow(r.line, r.value) for r in rows]
        out.defects = defects
    else:
        out.rows = [SourceRow(i, value) for i, value in enumerate(_parquet_rows(data, uri), start=1)]
    if not out.rows and not out.defects:
        out.defects.append(
            Defect(uri, 0, "", "no rows (expected one JSON object per line, or a Parquet table)")
        )
    return out


def _parquet_rows(data: bytes, uri: str) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise WbrayError(f"{uri}: not a readable Parquet file ({exc})") from None
    rows: list[dict[str, Any]] = table.to_pylist()
    # Parquet has no "missing key": a float column's NaN is how pandas wrote a missing value.
    return [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in rows]


def write_rows(uri: str, rows: Sequence[dict[str, Any]], fmt: RowFormat, storage: StorageOptions) -> None:
    """Write ``rows`` to ``uri`` atomically as JSONL (UTF-8, one object per line) or Parquet."""
    if fmt == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        write_bytes(uri, text.encode("utf-8"), storage)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    try:
        table = pa.Table.from_pylist(list(rows))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        # A column holding different types in different rows (JSONL allows it, Parquet does not).
        raise WbrayError(f"{uri}: cannot write the rows as Parquet ({exc})") from None
    pq.write_table(table, sink, compression="zstd")
    write_bytes(uri, sink.getvalue().to_pybytes(), storage)


def raise_defects(defects: list[Defect], what: str) -> None:
    """Raise one :class:`DataError` naming the first defect (and how many more), if any."""
    if defects:
        defects = sorted(defects, key=lambda d: (d.path, d.line))
        first = str(defects[0])
        more = f" (and {len(defects) - 1} more)" if len(defects) > 1 else ""
        raise DataError(defects, f"{what}: {first}{more}")
