"""Reading score files and runs into one evaluations table."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api.types import union_categoricals

from wbray.aggregate._inputs import FAILURES_DIR, SCORES_DIR, Inputs, classify_inputs
from wbray.aggregate._keys import BenchKeys
from wbray.aggregate._scorefile import Prefetch, ScoreColumns, read_score_file
from wbray.errors import DataError, Defect, WbrayError
from wbray.records import Query

#: What aggregation needs from a run's score rows (reasons and errors stay on disk).
AGGREGATE_COLUMNS = ("model", "index", "criterion", "repeat", "score", "status")
#: Values of the ``status`` column.
STATUSES = ("ok", "failed")


# --- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreSet:
    """Everything read for one aggregation.

    Attributes:
        evaluations: The evaluations table: ``AGGREGATE_COLUMNS`` plus ``line`` (1-based source line
            of rows read from an upstream score file, 0 otherwise).
        selected: Per model of a run, the query indices its run selected.
        notes: Things the user should know that are not errors (repeated indices, with file:line).
    """

    evaluations: pd.DataFrame
    selected: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    notes: tuple[Defect, ...] = ()


def load_scores(
    inputs: Inputs | Iterable[str | Path],
    queries: Sequence[Query] | None = None,
    *,
    judge: str | None = None,
    dedupe: bool = False,
    selections: Mapping[str, tuple[int, ...]] | None = None,
    prefetch: Prefetch | None = None,
) -> ScoreSet:
    """Read score files and runs into one evaluations table.

    Args:
        inputs: From :func:`classify_inputs`, or the inputs it takes.
        queries: The benchmark's queries: every index and criterion of a score file is then checked
            with file:line (and criterion names share one vocabulary, which is faster).
        judge: For runs holding several judges, the one to read.
        dedupe: Keep only the last line of an index repeated in a score file.
        selections: Per run, the query indices it selected: its rows outside them are left out and
            its models are marked as selected on them.
        prefetch: Score files already being decoded in worker processes (needs ``queries``).

    Raises:
        WbrayError: two inputs name the same model.
        DataError: defects in any file (every file is read first, so every defect is reported).
    """
    if not isinstance(inputs, Inputs):
        inputs = classify_inputs(inputs)
    keys = BenchKeys.of(queries) if queries is not None else None
    decoded = prefetch.take(keys) if prefetch is not None and keys is not None else {}
    owners: dict[str, str] = {}
    frames: list[pd.DataFrame] = []
    selected: dict[str, tuple[int, ...]] = {}
    for run in inputs.runs:
        frame = _run_evaluations(run, judge)
        chosen = (selections or {}).get(run)
        if chosen is not None:
            frame = frame[frame["index"].isin(chosen)]
        for model in pd.unique(frame["model"]):
            _claim(owners, str(model), run)
            if chosen is not None:
                selected[str(model)] = chosen
        frames.append(frame.assign(line=np.zeros(len(frame), dtype=np.int64)))
    columns: list[ScoreColumns | None] = []
    failures: list[pd.DataFrame] = []
    defects: list[Defect] = []
    notes: list[Defect] = []
    for path in inputs.files:
        model = path.name.removesuffix(".jsonl")
        _claim(owners, model, str(path))
        with _gc_paused():
            cols, found = read_score_file(
                path, model, keys=keys, dedupe=dedupe, decoded=decoded.pop(path, None)
            )
        sidecar = _failures_of(path, model, keys, defects)
        if not found and not len(cols) and sidecar is None:
            found = [
                Defect(
                    str(path), 0, "", "no scores: the file is empty (upstream's script cannot read it either)"
                )
            ]
        defects += found
        notes += cols.notes
        columns.append(cols)
        if sidecar is not None:
            failures.append(sidecar[[*AGGREGATE_COLUMNS, "line"]])
    if defects:
        raise DataError(defects)
    if columns:
        frames.append(_file_frame(columns, keys))
    frames += failures
    evaluations = _concat(frames)
    return ScoreSet(evaluations, selected, tuple(notes))


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Decoding a file allocates ~30,000 dicts and lists that hold no reference cycles; each burst
    otherwise sets off cyclic collections that walk every object alive (the benchmark, pandas) and
    free nothing: ~25% of the read time on 200 files (BENCHMARKS P3). The collector's state is restored."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _run_evaluations(run: str, judge: str | None) -> pd.DataFrame:
    from wbray.storage import RunLayout, read_evaluations

    return read_evaluations(RunLayout.at(run), judge, columns=AGGREGATE_COLUMNS)


def _claim(owners: dict[str, str], model: str, where: str) -> None:
    if model in owners:
        raise WbrayError(f"model {model!r} appears twice: {owners[model]} and {where}; rename one file")
    owners[model] = where


def _file_frame(columns: list[ScoreColumns | None], keys: BenchKeys | None) -> pd.DataFrame:
    """One table for many files, built from arrays (no per-row Python); ``columns`` is emptied as
    its arrays are copied, so a million rows are not held three times."""
    files = [c for c in columns if c is not None]
    sizes = [len(c) for c in files]
    models = _unique_names(c.model for c in files)
    luts: list[npt.NDArray[np.int32] | None] = [None] * len(files)
    if keys is not None:
        names: list[str] = list(keys.names)
    else:
        vocab: dict[str, int] = {}
        luts = [np.array([vocab.setdefault(n, len(vocab)) for n in c.names], dtype=np.int32) for c in files]
        names = list(vocab)
    del files
    total = sum(sizes)
    out: dict[str, npt.NDArray[Any]] = {
        "line": np.empty(total, dtype=np.int32),
        "index": np.empty(total, dtype=np.int32),
        "criterion": np.empty(total, dtype=np.int32),
        "repeat": np.empty(total, dtype=np.int32),
        "score": np.empty(total, dtype=np.float64),
    }
    at = 0
    for i, lut in enumerate(luts):
        c, end = columns[i], at + sizes[i]
        columns[i] = None
        assert c is not None
        for name, target in out.items():
            values = getattr(c, name)
            target[at:end] = (
                lut[values] if name == "criterion" and lut is not None and len(values) else values
            )
        at = end
    model_codes = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
    return pd.DataFrame(
        {
            "model": pd.Categorical.from_codes(model_codes, categories=models),
            "index": out["index"],
            "criterion": pd.Categorical.from_codes(out.pop("criterion"), categories=_unique_names(names)),
            "repeat": out["repeat"],
            "score": out["score"],
            "status": pd.Categorical.from_codes(np.zeros(total, dtype=np.int8), categories=list(STATUSES)),
            "line": out["line"],
        }
    )


def _unique_names(names: Iterable[str]) -> pd.Index:
    return pd.Index(list(names), dtype=object)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame({c: [] for c in (*AGGREGATE_COLUMNS, "line")})
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    # Plain concat of categoricals with different categories falls back to a million Python objects;
    # uniting the categories keeps the codes.
    out: dict[str, Any] = {}
    for col in (*AGGREGATE_COLUMNS, "line"):
        parts = [f[col] for f in frames]
        if col in ("model", "criterion", "status"):
            cats = [p.astype("category") for p in parts]
            # One category dtype for all (object vs Arrow strings would refuse to unite).
            cats = [c.cat.rename_categories(c.cat.categories.astype(object)) for c in cats]
            out[col] = union_categoricals(cats, ignore_order=True)
        else:
            out[col] = np.concatenate([p.to_numpy() for p in parts])
    return pd.DataFrame(out)


def _failures_of(
    path: Path, model: str, keys: BenchKeys | None, defects: list[Defect]
) -> pd.DataFrame | None:
    """The failure sidecar wbray writes next to an exported ``scores/`` directory (upstream's files
    cannot hold a failed call): ``failures/<model>.scores.jsonl``, or None."""
    from wbray._jsonl import read_jsonl

    if path.parent.name != SCORES_DIR:
        return None
    sidecar = path.parent.parent / FAILURES_DIR / f"{model}.scores.jsonl"
    if not sidecar.is_file():
        return None
    _, rows, found = read_jsonl(sidecar)
    defects += found
    out = []
    for row in rows:
        obj = row.value
        if not isinstance(obj, dict):
            defects.append(Defect(str(sidecar), row.line, "", "expected a JSON object"))
            continue
        missing = [k for k in ("index", "criterion", "error") if k not in obj]
        if missing:
            defects.append(Defect(str(sidecar), row.line, missing[0], "missing key"))
            continue
        index = obj["index"]
        if isinstance(index, bool) or not isinstance(index, int):
            defects.append(Defect(str(sidecar), row.line, "index", f"must be an integer, got {index!r}"))
            continue
        if keys is not None:
            pos = keys.position(np.array([index], dtype=np.int64))
            if keys.pair(pos, keys.name_codes([str(obj["criterion"])]))[0] < 0:
                defects.append(
                    Defect(
                        str(sidecar),
                        row.line,
                        "criterion",
                        f"criterion {obj['criterion']!r} for query {index} is not in the benchmark",
                    )
                )
                continue
        out.append(
            {
                "model": model,
                "index": index,
                "criterion": str(obj["criterion"]),
                "repeat": int(obj.get("repeat", 0)),
                "score": np.nan,
                "status": "failed",
                "line": 0,
                "reason": obj.get("raw"),
                "error": str(obj["error"]),
            }
        )
    return pd.DataFrame(out, columns=[*AGGREGATE_COLUMNS, "line", "reason", "error"])
