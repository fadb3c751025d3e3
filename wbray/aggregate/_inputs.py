"""What ``wbray aggregate`` reads: score files and runs, and the benchmark they were made on.

No pandas here: the CLI sorts its inputs and starts reading score files in worker processes before
the heavy imports (see ``_scorefile.prefetch``).

A run records its data in ``manifest.json`` (``data: {source, data_version, queries}``) and its query
selection in ``config.data``; aggregation finds the same benchmark again from that record (the bundled
example, the recorded directory, ``$WBRAY_DATA_DIR`` or the pinned download cache, whichever holds
that version), so ``wbray aggregate s3://bucket/run`` needs no ``--data-dir``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wbray.errors import WbrayError

if TYPE_CHECKING:
    from wbray.dataset import Benchmark

#: An export directory's folders (``wbray export``): upstream-format score files, and the failures
#: upstream's format cannot hold (a sidecar upstream never globs).
SCORES_DIR = "scores"
FAILURES_DIR = "failures"
MANIFEST = "manifest.json"


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

    manifest = read_manifest(RunLayout.at(run))  # a damaged one fails here, before any report
    return {} if manifest is None else manifest.model_dump(mode="json")


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
