"""Line-exact JSONL reading that reports every defect instead of stopping at the first.

Files are read as bytes and decoded line by line, so a stray non-UTF-8 byte is reported with its
line number rather than failing the whole file, and nothing (not even a blank line) is skipped
silently. A file with no defect is first tried in one msgspec call (the values are those
``json.loads`` gives: same numbers, strings, last value of a repeated key); anything msgspec refuses
goes through the line-by-line path, which decides.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from wbray.errors import Defect


@dataclass(frozen=True)
class Row:
    """One decoded JSON value and the 1-based line it came from."""

    line: int
    value: Any


def git_blob_sha1(data: bytes) -> str:
    """The git blob SHA-1 of ``data`` (what ``git hash-object`` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def parse_jsonl(data: bytes, path: str) -> tuple[list[Row], list[Defect]]:
    """Decode every line of ``data``; return the decoded rows and the defects found.

    Lines may end in ``\\n`` or ``\\r\\n`` (upstream's benchmark file uses the latter). A final
    newline is optional and does not count as a blank line.
    """
    fast = _parse_whole(data)
    if fast is not None:
        return fast, []
    rows: list[Row] = []
    defects: list[Defect] = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        # The terminating newline of the last row, not an empty row.
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        raw = raw.removesuffix(b"\r")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = f"byte 0x{raw[exc.start]:02x} at offset {exc.start + 1}"
            defects.append(Defect(path, number, "", f"not valid UTF-8 ({bad})"))
            continue
        if not text.strip():
            defects.append(Defect(path, number, "", "blank line (every line must hold one JSON object)"))
            continue
        if text.startswith("\ufeff"):
            # Rejected, not skipped: upstream's readers (json.loads on each utf-8 line) fail on it, and the
            # data version hashes the bytes, so a silently accepted BOM would split results by editor.
            bom = "starts with a UTF-8 byte-order mark (BOM): save the file as UTF-8 without BOM"
            defects.append(Defect(path, number, "", bom))
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            defects.append(Defect(path, number, "", f"malformed JSON: {exc.msg} (column {exc.colno})"))
            continue
        except RecursionError:
            # json's decoder recurses once per level; wbray's files nest a few levels, never hundreds.
            defects.append(Defect(path, number, "", "malformed JSON: nested too deeply to parse"))
            continue
        rows.append(Row(number, value))
    return rows, defects


def _parse_whole(data: bytes) -> list[Row] | None:
    """Every line decoded in one call, or None when any line needs the careful path."""
    if not data:
        return []
    body = data[:-1] if data.endswith(b"\n") else data
    try:
        # JSON strings cannot hold a raw newline, so newlines only ever separate lines.
        values = msgspec.json.decode(b"[" + body.replace(b"\n", b",") + b"]")
    except (msgspec.MsgspecError, RecursionError, ValueError):
        return None
    if len(values) != body.count(b"\n") + 1:  # two values on one line
        return None
    return [Row(number, value) for number, value in enumerate(values, start=1)]


def read_jsonl(path: Path) -> tuple[bytes, list[Row], list[Defect]]:
    """Read ``path`` and parse it with :func:`parse_jsonl`; also return the raw bytes.

    An unreadable file is one defect (line 0), not an exception.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        return b"", [], [Defect(str(path), 0, "", f"cannot read file ({exc.strerror or exc})")]
    rows, defects = parse_jsonl(data, str(path))
    return data, rows, defects
