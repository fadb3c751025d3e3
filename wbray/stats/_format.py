"""Leaderboard text for an estimate with its interval."""

from __future__ import annotations

import math

#: What a missing value prints as.
MISSING = "n/a"


def half_width(low: float | None, high: float | None) -> float:
    """Half the interval's length, ``(high - low) / 2`` (NaN when a bound is missing)."""
    if low is None or high is None:
        return math.nan
    return (float(high) - float(low)) / 2.0


def format_ci(
    estimate: float | None,
    low: float | None = None,
    high: float | None = None,
    *,
    scale: float = 1.0,
    digits: int = 2,
) -> str:
    """Format a leaderboard value as ``score ± half-width``, e.g. ``"72.31 ± 1.20"``.

    The half-width is ``(high - low) / 2``: percentile intervals are not exactly symmetric, so the
    printed ``±`` is the interval's average reach, not a bound on either side (report ``low`` and
    ``high`` where the asymmetry matters).

    Args:
        estimate: The value (None or NaN prints :data:`MISSING`).
        low: Lower interval bound (None or NaN: the value prints alone).
        high: Upper interval bound.
        scale: Multiplier applied to all three (10 for the leaderboard's x10 scale).
        digits: Decimal places.
    """
    if estimate is None or math.isnan(float(estimate)):
        return MISSING
    text = f"{float(estimate) * scale:.{digits}f}"
    hw = half_width(low, high)
    if math.isnan(hw):
        return text
    return f"{text} ± {hw * scale:.{digits}f}"
