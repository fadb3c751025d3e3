"""Aggregation: upstream-exact leaderboard numbers, interop with upstream files, and reports.

Pure pandas/numpy; no Ray import.
"""

from wbray.aggregate._compute import LEADERBOARD_SCALE, Leaderboard, aggregate
from wbray.aggregate._html import to_html
from wbray.aggregate._inputs import (
    Inputs,
    ResolvedBenchmark,
    ScoreSet,
    classify_inputs,
    load_scores,
    resolve_benchmark,
)
from wbray.aggregate._interop import (
    RepeatedIndexWarning,
    read_score_inputs,
    read_upstream_responses,
    read_upstream_scores,
    write_upstream_responses,
    write_upstream_scores,
)
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

__all__ = [
    "LEADERBOARD_SCALE",
    "Inputs",
    "Leaderboard",
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
