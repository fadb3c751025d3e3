"""Read and write upstream WritingBench result files, so results move both ways with identical numbers.

Upstream formats (one file per model, model name = file stem):
- scores:    ``{"index": i, "scores": {"<criterion name>": [{"score": s, "reason": r}, ...]}}``
- responses: ``{"index": i, "response": text}``

Upstream's scripts cannot represent a failed call, so wbray writes failures to a sidecar directory
(``DIR/failures/<model>.scores.jsonl``, ``.responses.jsonl``) that upstream never globs, and reads
them back, so that nothing is dropped on a round trip.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wbray._jsonl import read_jsonl
from wbray.aggregate._inputs import FAILURES_DIR, SCORES_DIR, classify_inputs
from wbray.aggregate._load import _failures_of, load_scores
from wbray.aggregate._scorefile import read_score_file
from wbray.errors import DataError, Defect
from wbray.records import EVAL_COLUMNS

RESPONSES_DIR = "responses"


class RepeatedIndexWarning(UserWarning):
    """An upstream score file holds an index on more than one line (read as upstream reads it)."""


def _jsonl_objects(path: Path, defects: list[Defect]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each line; problems go to ``defects``, nothing is skipped silently."""
    _, rows, found = read_jsonl(path)
    defects += found
    for row in rows:
        if isinstance(row.value, dict):
            yield row.line, row.value
        else:
            defects.append(
                Defect(str(path), row.line, "", f"expected a JSON object, got {type(row.value).__name__}")
            )


def _unique_index(
    obj: dict[str, Any], path: Path, lineno: int, seen: dict[int, int], defects: list[Defect]
) -> int | None:
    """The row's ``index`` when it is an integer not seen before in this file (else a defect)."""
    index = obj.get("index")
    if isinstance(index, bool) or not isinstance(index, int):
        defects.append(Defect(str(path), lineno, "index", f"must be an integer, got {index!r}"))
        return None
    if index in seen:
        defects.append(
            Defect(str(path), lineno, "index", f"duplicate index {index} (first on line {seen[index]})")
        )
        return None
    seen[index] = lineno
    return index


def read_upstream_scores(path: str | Path, model: str | None = None, *, dedupe: bool = False) -> pd.DataFrame:
    """Read one upstream score file into an evaluations table (status "ok" rows, with reasons).

    Also reads the failure sidecar wbray writes next to an exported ``scores/`` directory. An index
    repeated on several lines is read as upstream reads it (every line; ``dedupe`` keeps the last)
    and reported with a :class:`RepeatedIndexWarning` per repeating line. The table has a ``line``
    column (the source line; 0 for sidecar rows).

    Raises:
        DataError: every malformed line or entry, with file:line and field.
    """
    path = Path(path)
    model = model or path.name.removesuffix(".jsonl")
    cols, defects = read_score_file(path, model, dedupe=dedupe, reasons=True)
    sidecar = _failures_of(path, model, None, defects)
    if defects:
        raise DataError(defects)
    for note in cols.notes:
        warnings.warn(str(note), RepeatedIndexWarning, stacklevel=2)
    names = np.array(list(cols.names), dtype=object)
    table = pd.DataFrame(
        {
            "model": model,
            "index": cols.index,
            "criterion": names[cols.criterion] if len(cols) else np.array([], dtype=object),
            "repeat": cols.repeat,
            "score": cols.score,
            "reason": cols.reason or [],
            "status": "ok",
            "error": None,
            "line": cols.line,
        },
        columns=[*EVAL_COLUMNS, "line"],
    )
    if sidecar is not None and len(sidecar):
        table = pd.concat([table, sidecar[table.columns]], ignore_index=True)
    return table


def read_score_inputs(
    inputs: Iterable[str | Path], judge: str | None = None, *, dedupe: bool = False
) -> pd.DataFrame:
    """Read score files, directories and runs into one evaluations table.

    Each input is an upstream score file (model = file stem), a directory of them (upstream's
    ``score_dir``), an export directory holding ``scores/`` (and ``failures/``), a wbray run
    (local or ``s3://``; its committed scores of ``judge``, which may be omitted when the run has
    only one), or a prefix holding many runs. Repeated indices are reported with a
    :class:`RepeatedIndexWarning`; :func:`load_scores` returns them instead, and checks every index
    and criterion against a benchmark with file:line.

    Raises:
        WbrayError: an input does not exist, holds no score file, or two inputs name the same model.
        DataError: defects in any file (all files are read first, so every defect is reported).
    """
    scores = load_scores(classify_inputs(inputs), judge=judge, dedupe=dedupe)
    for note in scores.notes:
        warnings.warn(str(note), RepeatedIndexWarning, stacklevel=2)
    return scores.evaluations


def _atomic_write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line + "\n")
    os.replace(tmp, path)


def _as_score(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def write_upstream_scores(evaluations: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write ``out_dir/scores/<model>.jsonl`` (upstream format) and failures to the sidecar.

    Returns:
        The score files written.
    """
    out = Path(out_dir)
    written: list[Path] = []
    for model, group in evaluations.groupby("model", sort=False):
        ok = group[group["status"] == "ok"].sort_values(["index", "repeat"], kind="stable")
        lines = []
        for index, qrows in ok.groupby("index", sort=True):
            scores: dict[str, list[dict[str, Any]]] = {}
            for row in qrows.itertuples(index=False):
                scores.setdefault(str(row.criterion), []).append(
                    {
                        "score": _as_score(float(row.score)),
                        "reason": row.reason if isinstance(row.reason, str) else "",
                    }
                )
            lines.append(json.dumps({"index": int(str(index)), "scores": scores}, ensure_ascii=False))
        target = out / SCORES_DIR / f"{model}.jsonl"
        _atomic_write_lines(target, lines)
        written.append(target)
        failed = group[group["status"] != "ok"]
        fail_path = out / FAILURES_DIR / f"{model}.scores.jsonl"
        if len(failed):
            _atomic_write_lines(
                fail_path,
                (
                    json.dumps(
                        {
                            "index": int(r.index),
                            "criterion": str(r.criterion),
                            "repeat": int(r.repeat),
                            "error": str(r.error),
                            "raw": r.reason if isinstance(r.reason, str) else None,
                        },
                        ensure_ascii=False,
                    )
                    for r in failed.itertuples(index=False)
                ),
            )
        elif fail_path.exists():
            fail_path.unlink()
    return written


def read_upstream_responses(path: str | Path) -> pd.DataFrame:
    """Read an upstream response file: columns ``model, index, response, status, error``."""
    path = Path(path)
    model = path.name.removesuffix(".jsonl")
    defects: list[Defect] = []
    rows: list[dict[str, Any]] = []
    seen: dict[int, int] = {}
    for lineno, obj in _jsonl_objects(path, defects):
        response = obj.get("response")
        if not isinstance(response, str):
            defects.append(
                Defect(str(path), lineno, "response", f"must be a string, got {type(response).__name__}")
            )
            continue
        index = _unique_index(obj, path, lineno, seen, defects)
        if index is None:
            continue
        rows.append({"model": model, "index": index, "response": response, "status": "ok", "error": None})
    fail_path = path.parent.parent / FAILURES_DIR / f"{model}.responses.jsonl"
    if path.parent.name == RESPONSES_DIR and fail_path.is_file():
        for lineno, obj in _jsonl_objects(fail_path, defects):
            if "index" not in obj or "error" not in obj:
                defects.append(Defect(str(fail_path), lineno, "", "needs index and error"))
                continue
            rows.append(
                {
                    "model": model,
                    "index": obj["index"],
                    "response": None,
                    "status": "failed",
                    "error": str(obj["error"]),
                }
            )
    if defects:
        raise DataError(defects)
    return pd.DataFrame(rows, columns=["model", "index", "response", "status", "error"])


def write_upstream_responses(responses: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write ``out_dir/responses/<model>.jsonl`` (upstream format); failed generations go to the sidecar."""
    out = Path(out_dir)
    written: list[Path] = []
    for model, group in responses.groupby("model", sort=False):
        ok = group[group["status"] == "ok"].sort_values("index", kind="stable")
        target = out / RESPONSES_DIR / f"{model}.jsonl"
        _atomic_write_lines(
            target,
            (
                json.dumps({"index": int(r.index), "response": str(r.response)}, ensure_ascii=False)
                for r in ok.itertuples(index=False)
            ),
        )
        written.append(target)
        failed = group[group["status"] != "ok"]
        if len(failed):
            _atomic_write_lines(
                out / FAILURES_DIR / f"{model}.responses.jsonl",
                (
                    json.dumps({"index": int(r.index), "error": str(r.error)})
                    for r in failed.itertuples(index=False)
                ),
            )
    return written
