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

import gc
import json
import math
import multiprocessing
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import chain, pairwise, repeat
from operator import attrgetter
from pathlib import Path
from types import TracebackType
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


_DECODER = msgspec.json.Decoder(_Line)
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
    decoded: _Parsed | None = None,
) -> tuple[ScoreColumns, list[Defect]]:
    """Read one upstream score file.

    Args:
        path: The JSONL file.
        model: Model name; default the file stem.
        keys: The benchmark's keys: when given, every index and criterion is checked against it and
            criterion codes are ``keys.names`` codes.
        dedupe: Keep only the last line of a repeated index (upstream reads every line).
        reasons: Also return the reason texts (the strict path; aggregation does not need them).
        decoded: The file as a :class:`Prefetch` already decoded it (codes are ``keys`` codes).

    Returns:
        The columns and the defects found (columns are empty when there are defects).
    """
    path = Path(path)
    model = model or path.name.removesuffix(".jsonl")
    vocab: _Vocabulary | None = None  # only when this file is parsed here (~0.5 ms per benchmark)
    parsed = decoded
    if parsed is not None and keys is not None:
        parsed = _checked(parsed, keys)
    if parsed is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            return _empty(path, model, keys), [
                Defect(str(path), 0, "", f"cannot read file ({exc.strerror or exc})")
            ]
        vocab = _Vocabulary(keys.names if keys is not None else ())
        parsed = None if reasons else _fast(data, vocab)
        if parsed is not None and keys is not None:
            parsed = _checked(parsed, keys)
        if parsed is None:
            parsed, defects = _strict(data, str(path), keys, vocab, reasons)
            if defects:
                return _empty(path, model, keys), defects
    if not len(parsed.line_index):
        return _empty(path, model, keys), []
    names = keys.names if keys is not None else vocab.names if vocab is not None else []
    return _columns(str(path), model, parsed, names, dedupe), []


@dataclass
class _Parsed:
    """A file as nested columns: per line, per criterion entry, per evaluation."""

    line_index: IntArray  # per line: the query index
    crit_line: npt.NDArray[np.integer[Any]]  # per criterion entry: its 1-based line
    crit_code: npt.NDArray[np.integer[Any]]  # per criterion entry: name code in the reader's vocabulary
    crit_repeats: npt.NDArray[np.integer[Any]]  # per criterion entry: number of evaluations
    score: FloatArray  # per evaluation
    reason: list[str] | None = None  # per evaluation, strict path only


class _Vocabulary:
    """Criterion name -> code, growing as names are met (seeded with the benchmark's, when known)."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self._code = {n: i for i, n in enumerate(names)}

    @property
    def names(self) -> list[str]:
        return list(self._code)

    def codes(self, names: list[str]) -> IntArray:
        # map() over dict.get runs in C; only names never met before take the Python loop.
        out = np.fromiter(map(self._code.get, names, repeat(-1)), dtype=np.int64, count=len(names))
        for i in np.flatnonzero(out < 0).tolist():
            out[i] = self._code.setdefault(names[i], len(self._code))
        return out


def _n_lines(data: bytes) -> int:
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def _fast(data: bytes, vocab: _Vocabulary) -> _Parsed | None:
    """The fast path; None as soon as anything is not plainly valid (the strict path then decides).
    Indices and criteria are not checked against a benchmark here (see :func:`_checked`)."""
    if not data.isascii():
        try:
            # Upstream opens the file as UTF-8; msgspec does not look inside the strings it skips.
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    n = _n_lines(data)
    try:
        # The whole file in one call (no copy of it); a blank line or two objects on one line
        # change the count or fail, and the strict path then names the line.
        lines = _DECODER.decode_lines(data)
        if len(lines) != n:
            return None
        line_index = np.fromiter(map(_INDEX, lines), dtype=np.int64, count=n)
        maps = list(map(_SCORES, lines))
        per_line = np.fromiter(map(len, maps), dtype=np.int64, count=n)
        crit_code = vocab.codes(list(chain.from_iterable(maps)))
        lists = list(chain.from_iterable(map(dict.values, maps)))
        crit_repeats = np.fromiter(map(len, lists), dtype=np.int32, count=len(lists))
        score = np.fromiter(
            map(_SCORE, chain.from_iterable(lists)), dtype=np.float64, count=int(crit_repeats.sum())
        )
    except (msgspec.MsgspecError, RecursionError, OverflowError, ValueError):
        return None
    if not _scores_valid(score):
        return None
    crit_line = np.repeat(np.arange(1, n + 1, dtype=np.int32), per_line)
    # 32-bit: these travel back from worker processes and are held until the table is built.
    return _Parsed(line_index, crit_line, crit_code.astype(np.int32), crit_repeats, score)


def _checked(parsed: _Parsed, keys: BenchKeys) -> _Parsed | None:
    """``parsed`` when every index is a benchmark query and every criterion is in its query's
    checklist (codes must be ``keys`` codes); None otherwise (the strict path names the lines)."""
    position = keys.position(parsed.line_index)
    if (position < 0).any():
        return None
    if (keys.pair(position[parsed.crit_line - 1], parsed.crit_code) < 0).any():
        return None
    return parsed


def _scores_valid(score: FloatArray) -> bool:
    return bool(((score >= 1) & (score <= 10) & (score == np.trunc(score))).all())


def _valid_score(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        return None
    return float(value) if 1 <= value <= 10 else None


def _strict(
    data: bytes, path: str, keys: BenchKeys | None, vocab: _Vocabulary, reasons: bool
) -> tuple[_Parsed, list[Defect]]:
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
            for k, ev in enumerate(evaluations):
                where = f"scores.{name}[{k}]"
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
        vocab.codes(crit_names),
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


def _columns(path: str, model: str, parsed: _Parsed, names: Sequence[str], dedupe: bool) -> ScoreColumns:
    """Expand the nested columns to one entry per evaluation; note (or drop) repeated indices."""
    codes = parsed.crit_code
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


# --- decoding in worker processes ---------------------------------------------------------------

#: Below this many bytes of score files, forking workers costs more than it saves.
PREFETCH_MIN_BYTES = 8 << 20


def _decode_chunk(paths: list[str]) -> tuple[list[str], list[_Parsed | None]]:
    """Worker: the fast path over some files (None for a file it refuses or cannot read), with the
    names its codes refer to."""
    was_enabled = gc.isenabled()
    gc.disable()  # see _load._gc_paused
    try:
        vocab = _Vocabulary()
        out: list[_Parsed | None] = []
        for p in paths:
            try:
                data = Path(p).read_bytes()
            except OSError:
                out.append(None)  # read again, and reported, by the caller
                continue
            out.append(_fast(data, vocab))
        return vocab.names, out
    finally:
        if was_enabled:
            gc.enable()


def _other_threads() -> bool:
    """Whether another Python thread runs here: forking then may copy a lock it holds."""
    return threading.active_count() > 1


class Prefetch:
    """Score files decoded (fast path only) in worker processes, started before the caller imports
    pandas and loads the benchmark, which take about as long as decoding 200 files does: on two
    cores the two overlap (BENCHMARKS P3). Checks against the benchmark, defects and everything
    the fast path refuses stay with the caller (:func:`read_score_file` with ``decoded=``).

    Workers are forked, so this only starts on Linux, in a process with no other Python thread, and
    when there is enough to read (``PREFETCH_MIN_BYTES``); otherwise :meth:`take` returns nothing and
    the caller reads the files itself. Use as a context manager, so workers never outlive it.
    """

    def __init__(self, paths: Sequence[Path], workers: int | None = None) -> None:
        self._executor: ProcessPoolExecutor | None = None
        self._futures: list[tuple[list[Path], Future[tuple[list[str], list[_Parsed | None]]]]] = []
        n = min(workers or os.cpu_count() or 1, len(paths))
        if not self._worthwhile(paths, n):
            return
        self._executor = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("fork"))
        # Contiguous chunks: files of one model set share criterion names, so each worker's
        # vocabulary is built once.
        bounds = np.linspace(0, len(paths), n + 1).astype(int).tolist()
        for lo, hi in pairwise(bounds):
            chunk = list(paths[lo:hi])
            self._futures.append((chunk, self._executor.submit(_decode_chunk, [str(p) for p in chunk])))

    @staticmethod
    def _worthwhile(paths: Sequence[Path], n: int) -> bool:
        if n < 2 or sys.platform != "linux" or _other_threads():
            return False
        try:
            return sum(p.stat().st_size for p in paths) >= PREFETCH_MIN_BYTES
        except OSError:
            return False  # the caller reports it

    @property
    def active(self) -> bool:
        return self._executor is not None

    def take(self, keys: BenchKeys) -> dict[Path, _Parsed]:
        """The decoded files, codes turned into ``keys`` codes (unknown names -> -1); files a worker
        refused are left out, and so is everything when a worker failed."""
        out: dict[Path, _Parsed] = {}
        try:
            for chunk, future in self._futures:
                names, parsed = future.result()
                lut = keys.name_codes(names)
                for path, p in zip(chunk, parsed, strict=True):
                    if p is not None:
                        p.crit_code = lut[p.crit_code] if len(p.crit_code) else p.crit_code
                        out[path] = p
        except (BrokenProcessPool, OSError):
            return {}  # a worker died (e.g. out of memory): the caller reads every file itself
        finally:
            self.close()
        return out

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
