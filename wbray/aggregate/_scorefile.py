"""Upstream score files read fast, and strictly.

One line per query: ``{"index": i, "scores": {"<criterion>": [{"score": s, "reason": r}, ...]}}``.

Two paths with one meaning:
- fast: the whole file is decoded in one msgspec call against a typed schema (so types, required keys
  and non-empty lists are checked in C, and reasons are skipped without becoming Python objects), then
  scores, indices and criterion names are checked and turned into columns with array operations;
- strict: line by line with ``json``, every defect collected with file:line:field.
The fast path gives up on the first thing it does not accept and the strict path reads the file again;
the strict path decides. So a valid file is read fast, and a bad one gets every defect named. (msgspec
is used over orjson because it validates while decoding and skips unused fields: BENCHMARKS P3.)

What upstream's ``calculate_scores.py`` (``read_scores_file``) does with a file is kept: any extra key
is ignored, a repeated JSON key keeps its last value, and a repeated index is read twice (its resume
re-scores the last saved query); wbray reports each repeat as a note with file:line, and ``dedupe``
keeps only the last line of each index.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any

import msgspec
import numpy as np
import numpy.typing as npt

from wbray._jsonl import parse_jsonl
from wbray.aggregate._keys import BenchKeys, IntArray
from wbray.errors import Defect

FloatArray = npt.NDArray[np.float64]
Int32Array = npt.NDArray[np.int32]


class _Evaluation(msgspec.Struct, gc=False):
    # Only the score: msgspec skips "reason" (and any other key) without building a string for it.
    score: int | float


class _Line(msgspec.Struct, gc=False):
    index: int
    scores: Annotated[
        dict[str, Annotated[list[_Evaluation], msgspec.Meta(min_length=1)]], msgspec.Meta(min_length=1)
    ]


_DECODER = msgspec.json.Decoder(list[_Line])
_INDEX = attrgetter("index")
_SCORES = attrgetter("scores")
_SCORE = attrgetter("score")


@dataclass(frozen=True)
class ScoreColumns:
    """One score file as columns, one entry per evaluation (judge call).

    Attributes:
        path: The file.
        model: Model name (the file stem, as upstream names rows).
        line: 1-based line of each evaluation (int32, as the next three).
        index: Query index.
        criterion: Code of the criterion name in ``names``.
        repeat: Position of the evaluation in its criterion's list.
        names: The criterion names the codes refer to.
        score: The score (1-10).
        reason: The reason text of each evaluation, only when asked for.
        notes: Repeated indices, one note per repeating line (file:line), for the caller to show.
    """

    path: str
    model: str
    line: Int32Array
    index: Int32Array
    criterion: Int32Array
    names: Sequence[str]
    repeat: Int32Array
    score: FloatArray
    reason: list[str] | None = None
    notes: list[Defect] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.score)


def read_score_file(
    path: str | Path,
    model: str | None = None,
    *,
    keys: BenchKeys | None = None,
    dedupe: bool = False,
    reasons: bool = False,
) -> tuple[ScoreColumns, list[Defect]]:
    """Read one upstream score file.

    Args:
        path: The JSONL file.
        model: Model name; default the file stem.
        keys: The benchmark's keys: when given, every index and criterion is checked against it and
            criterion codes are ``keys.names`` codes.
        dedupe: Keep only the last line of a repeated index (upstream reads every line).
        reasons: Also return the reason texts (the strict path; aggregation does not need them).

    Returns:
        The columns and the defects found (columns are empty when there are defects).
    """
    path = Path(path)
    model = model or path.name.removesuffix(".jsonl")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _empty(path, model, keys), [
            Defect(str(path), 0, "", f"cannot read file ({exc.strerror or exc})")
        ]
    parsed = None if reasons else _fast(data, keys)
    defects: list[Defect] = []
    if parsed is None:
        parsed, defects = _strict(data, str(path), keys, reasons)
        if defects:
            return _empty(path, model, keys), defects
    if not len(parsed.line_index):
        return _empty(path, model, keys), []
    return _columns(str(path), model, parsed, keys, dedupe), []


@dataclass
class _Parsed:
    """A file as nested columns: per line, per criterion entry, per evaluation."""

    line_index: IntArray  # per line: the query index
    crit_line: IntArray  # per criterion entry: its 1-based line
    crit_names: list[str]  # per criterion entry
    crit_repeats: IntArray  # per criterion entry: number of evaluations
    score: FloatArray  # per evaluation
    reason: list[str] | None = None  # per evaluation, strict path only


def _n_lines(data: bytes) -> int:
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def _fast(data: bytes, keys: BenchKeys | None) -> _Parsed | None:
    """The fast path; None as soon as anything is not plainly valid (the strict path then decides)."""
    if not data.isascii():
        try:
            # Upstream opens the file as UTF-8; msgspec does not look inside the strings it skips.
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    n = _n_lines(data)
    body = data[:-1] if data.endswith(b"\n") else data
    try:
        # JSON strings cannot hold a raw newline, so every newline separates two lines: join them
        # into one array and decode the file in one call.
        lines = _DECODER.decode(b"[" + body.replace(b"\n", b",") + b"]")
        if len(lines) != n:  # e.g. two objects on one line
            return None
        line_index = np.fromiter(map(_INDEX, lines), dtype=np.int64, count=n)
        maps = list(map(_SCORES, lines))
        per_line = np.fromiter(map(len, maps), dtype=np.int64, count=n)
        crit_names = list(chain.from_iterable(maps))
        lists = list(chain.from_iterable(map(dict.values, maps)))
        crit_repeats = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        score = np.fromiter(
            map(_SCORE, chain.from_iterable(lists)), dtype=np.float64, count=int(crit_repeats.sum())
        )
    except (msgspec.MsgspecError, RecursionError, OverflowError, ValueError):
        return None
    if not _scores_valid(score):
        return None
    crit_line = np.repeat(np.arange(1, n + 1, dtype=np.int64), per_line)
    if keys is not None:
        position = keys.position(line_index)
        if (position < 0).any():
            return None
        if (keys.pair(position[crit_line - 1], keys.name_codes(crit_names)) < 0).any():
            return None
    return _Parsed(line_index, crit_line, crit_names, crit_repeats, score)


def _scores_valid(score: FloatArray) -> bool:
    return bool(((score >= 1) & (score <= 10) & (score == np.trunc(score))).all())


def _valid_score(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        return None
    return float(value) if 1 <= value <= 10 else None


def _strict(data: bytes, path: str, keys: BenchKeys | None, reasons: bool) -> tuple[_Parsed, list[Defect]]:
    """Line by line, every defect with file:line:field."""
    rows, defects = parse_jsonl(data, path)
    line_index: list[int] = []
    crit_line: list[int] = []
    crit_names: list[str] = []
    crit_repeats: list[int] = []
    score: list[float] = []
    reason: list[str] = []
    for row in rows:
        obj, n = row.value, row.line

        def bad(where: str, message: str, n: int = n) -> None:
            defects.append(Defect(path, n, where, message))

        if not isinstance(obj, dict):
            bad("", f"expected a JSON object, got {type(obj).__name__}")
            continue
        if "index" not in obj:
            bad("index", "missing (each line needs the query index and its scores)")
            continue
        index = obj["index"]
        if isinstance(index, bool) or not isinstance(index, int):
            bad("index", f"must be an integer, got {_shown(index)}")
            continue
        position = -1
        if keys is not None:
            position = int(keys.position(np.array([index], dtype=np.int64))[0])
            if position < 0:
                bad(
                    "index",
                    f"{index} is not a query of the benchmark; were these scores made on another version?",
                )
                continue
        scores = obj.get("scores")
        if "scores" not in obj:
            bad("scores", "missing (each line needs the query index and its scores)")
            continue
        if not isinstance(scores, dict) or not scores:
            bad("scores", "must be a non-empty object of criterion -> list of {score, reason}")
            continue
        entries: list[tuple[str, list[float], list[str]]] = []
        for name, evaluations in scores.items():
            if keys is not None and not _in_checklist(keys, position, name):
                bad(f"scores.{name}", f"criterion {name!r} for query {index} is not in its checklist")
                continue
            if not isinstance(evaluations, list) or not evaluations:
                bad(f"scores.{name}", "must be a non-empty list of {score, reason}")
                continue
            values: list[float] = []
            texts: list[str] = []
            for repeat, ev in enumerate(evaluations):
                where = f"scores.{name}[{repeat}]"
                if not isinstance(ev, dict):
                    bad(where, "must be an object with score and reason")
                    continue
                if "score" not in ev:
                    bad(f"{where}.score", "missing")
                    continue
                value = _valid_score(ev["score"])
                if value is None:
                    bad(f"{where}.score", f"must be an integer 1-10, got {_shown(ev['score'])}")
                    continue
                values.append(value)
                text = ev.get("reason", "")
                texts.append(text if isinstance(text, str) else json.dumps(text, ensure_ascii=False))
            if len(values) == len(evaluations):
                entries.append((name, values, texts))
        if len(entries) != len(scores):
            continue
        line_index.append(index)
        for name, values, texts in entries:
            crit_line.append(n)
            crit_names.append(name)
            crit_repeats.append(len(values))
            score += values
            reason += texts
    parsed = _Parsed(
        np.array(line_index, dtype=np.int64),
        np.array(crit_line, dtype=np.int64),
        crit_names,
        np.array(crit_repeats, dtype=np.int64),
        np.array(score, dtype=np.float64),
        reason if reasons else None,
    )
    return parsed, defects


def _shown(value: Any) -> str:
    """A value for an error message, cut short (a line can be megabytes long)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _in_checklist(keys: BenchKeys, position: int, name: str) -> bool:
    codes = keys.name_codes([name])
    return bool(keys.pair(np.array([position], dtype=np.int64), codes)[0] >= 0)


def _empty(path: Path, model: str, keys: BenchKeys | None) -> ScoreColumns:
    nothing = np.zeros(0, dtype=np.int32)
    return ScoreColumns(
        str(path), model, nothing, nothing, nothing, keys.names if keys else (), nothing, np.zeros(0)
    )


def _columns(path: str, model: str, parsed: _Parsed, keys: BenchKeys | None, dedupe: bool) -> ScoreColumns:
    """Expand the nested columns to one entry per evaluation; note (or drop) repeated indices."""
    if keys is not None:
        names: Sequence[str] = keys.names
        codes = keys.name_codes(parsed.crit_names)
    else:
        vocab = {n: i for i, n in enumerate(dict.fromkeys(parsed.crit_names))}
        names = list(vocab)
        codes = np.fromiter(
            map(vocab.__getitem__, parsed.crit_names), dtype=np.int64, count=len(parsed.crit_names)
        )
    entry = np.repeat(np.arange(len(parsed.crit_repeats), dtype=np.int32), parsed.crit_repeats)
    starts = (np.cumsum(parsed.crit_repeats) - parsed.crit_repeats).astype(np.int32)
    repeat = np.arange(len(entry), dtype=np.int32) - starts[entry]
    line = parsed.crit_line.astype(np.int32)[entry]
    notes, keep_line = _repeated_indices(path, parsed.line_index, dedupe)
    keep = slice(None) if keep_line is None else keep_line[line - 1]
    reason = parsed.reason
    if reason is not None and keep_line is not None:
        reason = [r for r, k in zip(reason, keep_line[line - 1], strict=True) if k]
    # 32-bit columns: a million rows of them are held twice while files are joined (peak memory).
    return ScoreColumns(
        path=path,
        model=model,
        line=line[keep],
        index=parsed.line_index.astype(np.int32)[line - 1][keep],
        criterion=codes.astype(np.int32)[entry][keep],
        names=names,
        repeat=repeat[keep],
        score=parsed.score[keep],
        reason=reason,
        notes=notes,
    )


def _repeated_indices(
    path: str, line_index: IntArray, dedupe: bool
) -> tuple[list[Defect], npt.NDArray[np.bool_] | None]:
    """Notes for every line that repeats an earlier line's index; with ``dedupe``, the lines to keep."""
    order = np.argsort(line_index, kind="stable")
    sorted_index = line_index[order]
    again = np.flatnonzero(sorted_index[1:] == sorted_index[:-1]) + 1
    if not len(again):
        return [], None
    first_line: dict[int, int] = {}
    notes = []
    for at in np.flatnonzero(np.isin(sorted_index, sorted_index[again])).tolist():
        index, n = int(sorted_index[at]), int(order[at]) + 1
        if index not in first_line:
            first_line[index] = n
            continue
        what = (
            "kept only the last line of this index (--dedupe)"
            if dedupe
            else "upstream's calculate_scores.py counts both lines in Overall and Count and uses the last "
            "one everywhere else; --dedupe keeps only the last"
        )
        notes.append(Defect(path, n, "index", f"index {index} repeats line {first_line[index]}: {what}"))
    notes.sort(key=lambda d: d.line)
    if not dedupe:
        return notes, None
    keep = np.zeros(len(line_index), dtype=bool)
    # The last line of each index: the last of each run in the stable sort.
    last = np.append(sorted_index[1:] != sorted_index[:-1], True)
    keep[order[last]] = True
    return notes, keep
