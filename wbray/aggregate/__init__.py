"""Aggregation: upstream-exact leaderboard numbers, interop with upstream files, and reports.

Pure pandas/numpy; no Ray import. Names load on first use, so reading score files (numpy and msgspec
only) can start in worker processes before pandas is imported (BENCHMARKS P3).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wbray.aggregate._compute import LEADERBOARD_SCALE, Leaderboard, aggregate
    from wbray.aggregate._html import to_html
    from wbray.aggregate._inputs import Inputs, ResolvedBenchmark, classify_inputs, resolve_benchmark
    from wbray.aggregate._interop import (
        RepeatedIndexWarning,
        read_score_inputs,
        read_upstream_responses,
        read_upstream_scores,
        write_upstream_responses,
        write_upstream_scores,
    )
    from wbray.aggregate._load import ScoreSet, load_scores
    from wbray.aggregate._report import (
        price_ledger,
        rich_tables,
        to_markdown,
        write_csv,
        write_html,
        write_markdown,
        write_per_query,
        write_reports,
        write_xlsx,
    )
    from wbray.aggregate._scorefile import Prefetch

_WHERE = {
    "LEADERBOARD_SCALE": "_compute",
    "Leaderboard": "_compute",
    "aggregate": "_compute",
    "to_html": "_html",
    "Inputs": "_inputs",
    "ResolvedBenchmark": "_inputs",
    "classify_inputs": "_inputs",
    "resolve_benchmark": "_inputs",
    "RepeatedIndexWarning": "_interop",
    "read_score_inputs": "_interop",
    "read_upstream_responses": "_interop",
    "read_upstream_scores": "_interop",
    "write_upstream_responses": "_interop",
    "write_upstream_scores": "_interop",
    "ScoreSet": "_load",
    "load_scores": "_load",
    "price_ledger": "_report",
    "rich_tables": "_report",
    "to_markdown": "_report",
    "write_csv": "_report",
    "write_html": "_report",
    "write_markdown": "_report",
    "write_per_query": "_report",
    "write_reports": "_report",
    "write_xlsx": "_report",
    "Prefetch": "_scorefile",
}

__all__ = [
    "LEADERBOARD_SCALE",
    "Inputs",
    "Leaderboard",
    "Prefetch",
    "RepeatedIndexWarning",
    "ResolvedBenchmark",
    "ScoreSet",
    "aggregate",
    "classify_inputs",
    "load_scores",
    "price_ledger",
    "read_score_inputs",
    "read_upstream_responses",
    "read_upstream_scores",
    "resolve_benchmark",
    "rich_tables",
    "to_html",
    "to_markdown",
    "write_csv",
    "write_html",
    "write_markdown",
    "write_per_query",
    "write_reports",
    "write_upstream_responses",
    "write_upstream_scores",
    "write_xlsx",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'wbray.aggregate' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"wbray.aggregate.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
