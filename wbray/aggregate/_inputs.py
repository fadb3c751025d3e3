"""What ``wbray aggregate`` reads: score files and runs, and the benchmark they were made on.

A run records its data in ``manifest.json`` (``data: {source, data_version, queries}``) and its query
selection in ``config.data``; aggregation finds the same benchmark again from that record (the bundled
example, the recorded directory, ``$WBRAY_DATA_DIR`` or the pinned download cache, whichever holds
that version), so ``wbray aggregate s3://bucket/run`` needs no ``--data-dir``.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api.types import union_categoricals

from wbray.aggregate._keys import BenchKeys
from wbray.aggregate._scorefile import ScoreColumns, read_score_file
from wbray.errors import DataError, Defect, WbrayError
from wbray.records import Query

if TYPE_CHECKING:
    from wbray.dataset import Benchmark

#: What aggregation needs from a run's score rows (reasons and errors stay on disk).
AGGREGATE_COLUMNS = ("model", "index", "criterion", "repeat", "score", "status")
SCORES_DIR = "scores"
MANIFEST = "manifest.json"
FAILURES_DIR = "failures"
#: Values of the ``status`` column.
STATUSES = ("ok", "failed")


@dataclass(frozen=True)
class Inputs:
    """Score inputs sorted by kind: upstream score files and wbray runs (local or s3://)."""

    files: tuple[Path, ...] = ()
    runs: tuple[str, ...] = ()


def classify_inputs(inputs: Iterable[str | Path]) -> Inputs:
    """Expand each input: an upstream score file, a directory of them (upstream's ``score_dir``), an
    export directory holding ``scores/``, a wbray run (local or s3://) or a prefix holding runs.

    Raises:
        WbrayError: an input does not exist or holds no score file or run.
    """
    files: list[Path] = []
    runs: list[str] = []
    for item in inputs:
        p = Path(item)
        remote = str(item).startswith("s3://")
        # wbray.storage (boto3, pydantic config) costs ~0.3 s to import: only for runs.
        found = _runs_at(str(item)) if remote or (p.is_dir() and next(p.rglob(MANIFEST), None)) else []
        if found:
            runs += found
        elif remote:
            raise WbrayError(f"{item}: no wbray run (manifest.json) under this prefix")
        elif p.is_file():
            files.append(p)
        elif p.is_dir():
            base = p / SCORES_DIR if (p / SCORES_DIR).is_dir() else p
            listed = sorted(base.glob("*.jsonl"))
            if not listed:
                raise WbrayError(f"{p}: no score files (*.jsonl) found in {base}")
            files += listed
        else:
            raise WbrayError(f"{p}: no such file or directory")
    return Inputs(tuple(files), tuple(runs))


def _runs_at(uri: str) -> list[str]:
    from wbray.storage import discover_runs

    return discover_runs(uri)


# --- the benchmark a run was made on -------------------------------------------------------------


def _pinned_version() -> str:
    from wbray.dataset import PINNED_FILES

    # data_version is the query file's git blob SHA-1 cut to 12 digits, and the pins are blob SHA-1s.
    return PINNED_FILES["benchmark_query/benchmark_all.jsonl"][:12]


def recorded_data(manifest: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(source, data_version)`` recorded in a run's manifest (None when not recorded)."""
    data = manifest.get("data")
    if not isinstance(data, dict):
        return None, None
    source, version = data.get("source"), data.get("data_version")
    return (str(source) if source else None), (str(version) if version else None)


def find_recorded_benchmark(source: str | None, version: str | None, where: str) -> Benchmark | None:
    """Load the benchmark a run recorded: the bundled example, the recorded directory,
    ``$WBRAY_DATA_DIR`` or the pinned download cache, the first that holds ``version``.

    Returns:
        None when the run recorded no data source (old or hand-made manifests).

    Raises:
        WbrayError: the recorded data is not available here (one line: what was recorded, where
            wbray looked, what to pass instead).
    """
    from wbray import env
    from wbray.dataset import load_benchmark
    from wbray.dataset._download import default_download_dir, has_complete_download

    if source is None:
        return None
    candidates: list[str] = []
    if source == "example":
        candidates.append("example")
    elif Path(source).is_dir():
        candidates.append(source)
    from_env = env.get(env.WBRAY_DATA_DIR)
    if from_env and source != "example":
        candidates.append(from_env)
    cache = default_download_dir()
    if version == _pinned_version() and has_complete_download(cache):
        candidates.append(str(cache))
    looked: list[str] = []
    for candidate in dict.fromkeys(candidates):
        bench = load_benchmark(candidate)
        if version is None or bench.data_version == version:
            return bench
        looked.append(f"{candidate} holds {bench.data_version}")
    hint = f"; `wbray data download` fetches {_pinned_version()}" if version == _pinned_version() else ""
    seen = f" ({'; '.join(looked)})" if looked else ""
    raise WbrayError(
        f"{where}: made on WritingBench data {source!r} version {version}, which is not available here"
        f"{seen}; pass --data-dir DIR holding that version{hint}"
    )


@dataclass(frozen=True)
class ResolvedBenchmark:
    """The benchmark to aggregate against, the query selection of each run, and notes for the user."""

    bench: Benchmark
    selections: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def resolve_benchmark(runs: Sequence[str], data_dir: str | None) -> ResolvedBenchmark:
    """The benchmark for these runs (and any score files read with them).

    ``data_dir`` overrides what the runs recorded (a note says when its version differs); without it
    the runs' manifests decide, and without runs the usual search applies ($WBRAY_DATA_DIR, then the
    download cache).

    Raises:
        WbrayError: the recorded data is not available, or the runs were made on different versions.
    """
    from wbray.dataset import load_benchmark

    manifests = {run: _manifest(run) for run in runs}
    notes: list[str] = []
    if data_dir is not None:
        bench = load_benchmark(data_dir)
        for run, manifest in manifests.items():
            _, version = recorded_data(manifest)
            if version is not None and version != bench.data_version:
                notes.append(f"{run}: made on data version {version}; --data-dir holds {bench.data_version}")
    else:
        found: dict[str, Benchmark] = {}
        for run, manifest in manifests.items():
            source, version = recorded_data(manifest)
            if version is not None and version in found:
                continue
            recorded = find_recorded_benchmark(source, version, run)
            if recorded is not None:
                found[recorded.data_version] = recorded
        if len(found) > 1:
            versions = ", ".join(f"{run}: {recorded_data(m)[1]}" for run, m in manifests.items())
            raise WbrayError(
                f"the runs were made on different benchmark versions ({versions}); aggregate them "
                "separately, or pass --data-dir to read them all against one"
            )
        bench = next(iter(found.values())) if found else load_benchmark(None)
    selections = {run: _selection(bench, manifest, run) for run, manifest in manifests.items()}
    return ResolvedBenchmark(bench, {r: s for r, s in selections.items() if s is not None}, tuple(notes))


def _manifest(run: str) -> Mapping[str, Any]:
    from wbray.storage import RunLayout, read_manifest

    return read_manifest(RunLayout.at(run)) or {}


def _selection(bench: Benchmark, manifest: Mapping[str, Any], run: str) -> tuple[int, ...] | None:
    """The query indices the run's config selected (None: the run recorded no selection)."""
    config = manifest.get("config")
    data = config.get("data") if isinstance(config, dict) else None
    if not isinstance(data, dict):
        return None
    filters = {k: data.get(k) for k in ("domain1", "domain2", "lang", "indices", "limit")}
    try:
        chosen = bench.select(**filters)
    except WbrayError as exc:
        raise WbrayError(f"{run}: its query selection does not fit this benchmark: {exc}") from None
    return tuple(q.index for q in chosen.queries)


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

    Raises:
        WbrayError: two inputs name the same model.
        DataError: defects in any file (every file is read first, so every defect is reported).
    """
    if not isinstance(inputs, Inputs):
        inputs = classify_inputs(inputs)
    keys = BenchKeys.of(queries) if queries is not None else None
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
            cols, found = read_score_file(path, model, keys=keys, dedupe=dedupe)
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
