"""Descriptive statistics of a set of queries (what ``wbray data stats`` shows)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from wbray.records import DOMAIN1_ORDER, LANGS, Query

#: The key used for queries without a language (first-release rows).
UNKNOWN_LANG = "unknown"


@dataclass(frozen=True)
class LengthStats:
    """Distribution of query lengths in characters (percentiles interpolate linearly)."""

    min: int
    p10: float
    p25: float
    median: float
    p75: float
    p90: float
    max: int
    mean: float


@dataclass(frozen=True)
class DataStats:
    """Counts and query-length distribution of a set of queries.

    Attributes:
        total: Number of queries.
        by_domain1: Primary domain -> count, in leaderboard order (unknown domains last).
        by_domain2: Subdomain -> count, most frequent first.
        domain2_by_domain1: Primary domain -> subdomain -> count (a subdomain's table under its domain).
        by_lang: Language -> count (``"unknown"`` for rows without one).
        query_length: Length distribution, or None when there are no queries.
    """

    total: int
    by_domain1: Mapping[str, int]
    by_domain2: Mapping[str, int]
    domain2_by_domain1: Mapping[str, Mapping[str, int]]
    by_lang: Mapping[str, int]
    query_length: LengthStats | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _percentile(sorted_values: Sequence[int], q: float) -> float:
    # Linear interpolation between closest ranks (numpy's default), without pulling numpy in.
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _domain1_order(counts: Counter[str]) -> list[str]:
    known = [d for d in DOMAIN1_ORDER if d in counts]
    return known + sorted(set(counts) - set(known))


def _by_count(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def compute_stats(queries: Sequence[Query]) -> DataStats:
    """Count queries by domain1, domain2 and language, and describe query lengths (characters).

    Args:
        queries: Any queries, e.g. ``benchmark.queries``.

    Returns:
        The statistics.
    """
    d1 = Counter(q.domain1 for q in queries)
    d2 = Counter(q.domain2 for q in queries)
    nested: dict[str, Counter[str]] = {}
    for q in queries:
        nested.setdefault(q.domain1, Counter())[q.domain2] += 1
    langs = Counter(q.lang or UNKNOWN_LANG for q in queries)
    lang_order = [lang for lang in LANGS if lang in langs] + sorted(set(langs) - set(LANGS))
    lengths = sorted(len(q.query) for q in queries)
    length_stats = None
    if lengths:
        length_stats = LengthStats(
            min=lengths[0],
            p10=_percentile(lengths, 0.10),
            p25=_percentile(lengths, 0.25),
            median=_percentile(lengths, 0.50),
            p75=_percentile(lengths, 0.75),
            p90=_percentile(lengths, 0.90),
            max=lengths[-1],
            mean=sum(lengths) / len(lengths),
        )
    return DataStats(
        total=len(queries),
        by_domain1={d: d1[d] for d in _domain1_order(d1)},
        by_domain2=_by_count(d2),
        domain2_by_domain1={d: _by_count(nested[d]) for d in _domain1_order(d1)},
        by_lang={lang: langs[lang] for lang in lang_order},
        query_length=length_stats,
    )
