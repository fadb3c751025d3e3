"""Buffering finished rows into fewer, larger parts, with a stated bound on what a crash loses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class PartBuffer:
    """Rows waiting to be written as one part: written when ``part_rows`` are waiting, or when the
    oldest has waited ``part_age_s`` seconds (checked by :meth:`due`), and always by :meth:`flush`.

    Plain Python (the clock is injectable), so the bound on what a crash can lose is tested
    without a cluster.
    """

    def __init__(
        self,
        write: Callable[[list[dict[str, Any]]], None],
        part_rows: int,
        part_age_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.write, self.part_rows, self.part_age_s, self.clock = write, part_rows, part_age_s, clock
        self.rows: list[dict[str, Any]] = []
        self.oldest: float | None = None

    def add(self, rows: list[dict[str, Any]]) -> None:
        if rows and self.oldest is None:
            self.oldest = self.clock()
        self.rows += rows
        if len(self.rows) >= self.part_rows:
            self.flush()

    def due(self) -> bool:
        return self.oldest is not None and self.clock() - self.oldest >= self.part_age_s

    def flush(self) -> None:
        rows, self.rows, self.oldest = self.rows, [], None
        if rows:
            self.write(rows)
