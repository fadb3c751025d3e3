"""Helpers shared by the generation and scoring steps."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from wbray.errors import WbrayError


def require_columns(rows: Sequence[Mapping[str, Any]], needed: Iterable[str], step: str) -> None:
    """Check a batch once against a step's input contract, naming every missing column."""
    if not rows:
        return
    missing = [c for c in needed if c not in rows[0]]
    if missing:
        raise WbrayError(f"{step}: input rows lack columns {missing} (have {sorted(rows[0])})")


def now() -> float:
    return time.time()
