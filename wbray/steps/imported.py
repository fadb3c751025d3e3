"""Answers generated elsewhere: upstream's response files turned into generation rows.

The official workflow generates responses with any stack (upstream's ``generate_response.py``, an
API, an in-house server) and then evaluates the files. A candidate given by ``responses:`` is
imported here: each line ``{"index": i, "response": "..."}`` becomes a stored generation row whose
id is a hash of its *text* (and of the model name, the data version and the query index), so
running again skips what is unchanged and a changed file re-scores only the changed rows.

Pure: the caller reads the bytes (local or s3://) and writes the rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wbray._jsonl import parse_jsonl
from wbray.config import content_hash
from wbray.errors import DataError, Defect
from wbray.prompts import render_generation_messages
from wbray.records import Query
from wbray.steps._common import now

#: Missing indices listed by name in the error before "and N more".
_SHOWN = 10


@dataclass(frozen=True)
class Imported:
    """One candidate's imported answers.

    Attributes:
        model: The candidate's name.
        source: The file the answers came from.
        rows: Generation rows (stored schema) for the selected queries that have an answer.
        missing: Selected query indices the file has no answer for.
    """

    model: str
    source: str
    rows: tuple[dict[str, Any], ...]
    missing: tuple[int, ...]

    @property
    def ids(self) -> list[tuple[str, int]]:
        """``(row id, query index)`` of every imported answer."""
        return [(str(r["row_id"]), int(r["index"])) for r in self.rows]


def imported_row_id(model: str, data_version: str, index: int, response: str) -> str:
    """The content id of one imported answer (what names it, so a changed text is a new row)."""
    text = hashlib.sha256(response.encode("utf-8", "surrogatepass")).hexdigest()
    return content_hash(
        {"kind": "imported", "model": model, "data": data_version, "index": index, "sample": 0, "text": text}
    )


def import_responses(
    data: bytes,
    source: str,
    model: str,
    selected: Sequence[Query],
    known: Mapping[int, Any],
    data_version: str,
    *,
    allow_missing: bool = False,
) -> Imported:
    """Turn one upstream response file into generation rows.

    Args:
        data: The file's bytes.
        source: Its path or URI (named in every error).
        model: The candidate's name.
        selected: The queries this run evaluates (answers to other known queries are ignored).
        known: Every query index of the benchmark (an index outside it is an error).
        data_version: The benchmark's data version (part of every id).
        allow_missing: Count selected queries without an answer as missing instead of failing.

    Returns:
        The imported rows and the missing indices.

    Raises:
        DataError: Naming file:line and field for every malformed line, unknown or repeated index,
            non-string response; or, without ``allow_missing``, the selected queries lacking one.
    """
    rows, defects = parse_jsonl(data, source)
    if not rows and not defects:
        defects.append(Defect(source, 0, "", "empty file (expected one {index, response} object per line)"))
    by_index = {q.index: q for q in selected}
    seen: dict[int, int] = {}
    out: list[dict[str, Any]] = []
    stamp = now()
    for row in rows:
        obj = row.value
        if not isinstance(obj, dict):
            defects.append(Defect(source, row.line, "", f"expected a JSON object, got {type(obj).__name__}"))
            continue
        index, response = obj.get("index"), obj.get("response")
        if isinstance(index, bool) or not isinstance(index, int):
            defects.append(Defect(source, row.line, "index", f"must be an integer, got {index!r}"))
            continue
        if index in seen:
            defects.append(
                Defect(source, row.line, "index", f"duplicate index {index} (also on line {seen[index]})")
            )
            continue
        seen[index] = row.line
        if index not in known:
            defects.append(
                Defect(source, row.line, "index", f"unknown query index {index} (not in the benchmark)")
            )
            continue
        if not isinstance(response, str):
            got = "null" if response is None else type(response).__name__
            defects.append(Defect(source, row.line, "response", f"must be a string, got {got}"))
            continue
        query = by_index.get(index)
        if query is None:
            continue  # answers a query this run does not select
        out.append(
            {
                "row_id": imported_row_id(model, data_version, index, response),
                "model": model,
                "index": index,
                "sample": 0,
                "data_version": data_version,
                "messages_json": json.dumps(render_generation_messages(query.query), ensure_ascii=False),
                "response": response,
                "status": "ok",
                "error": None,
                "finish_reason": None,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "latency_s": 0.0,
                "created_at": stamp,
            }
        )
    missing = tuple(sorted(set(by_index) - set(seen)))
    if missing and not allow_missing and not defects:
        shown = ", ".join(map(str, missing[:_SHOWN])) + (
            f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
        )
        defects.append(
            Defect(
                source,
                0,
                "",
                f"no response for {len(missing)} of the {len(by_index)} selected queries (indices {shown}); "
                "add them, narrow the selection, or pass --allow-missing to count them as missing",
            )
        )
    if defects:
        raise DataError(sorted(defects, key=lambda d: d.line))
    return Imported(model=model, source=source, rows=tuple(out), missing=missing)
