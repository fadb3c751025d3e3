"""WritingBench data: locate, download, load, validate and describe it.

Two directory layouts are read: upstream's (``benchmark_query/...``, used by the download cache and
offline mirrors) and the bundled example's (``queries.jsonl``, ``requirement/{x}/R.jsonl``, ``C.jsonl``).
Loading is strict: any defect in any file raises :class:`~wbray.errors.DataError` listing them all.
"""

from __future__ import annotations

from ._download import PINNED_FILES, UPSTREAM_COMMIT, download
from ._loader import Benchmark, example_dir, load_benchmark, load_queries, load_requirements, resolve_data_dir
from ._stats import DataStats, LengthStats, compute_stats
from ._validate import validate_path

__all__ = [
    "PINNED_FILES",
    "UPSTREAM_COMMIT",
    "Benchmark",
    "DataStats",
    "LengthStats",
    "compute_stats",
    "download",
    "example_dir",
    "load_benchmark",
    "load_queries",
    "load_requirements",
    "resolve_data_dir",
    "validate_path",
]
