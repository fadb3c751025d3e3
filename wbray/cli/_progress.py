"""Rich progress for ``wbray run``: rows done/total per stage, failures, tokens/s, ETA."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RunProgress:
    """Context manager whose :meth:`update` is the pipeline's progress callback."""

    _STAGES = ("generate", "score")

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description:>9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}"),
            TextColumn("{task.fields[rate]} tok/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}
        self.started = time.monotonic()
        self.live = False

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.__exit__(None, None, None)

    def _start(self) -> None:
        # The bars appear with the first progress report, once the work runs: an error before that
        # (a bad config, a missing bucket) prints as its one line with no display around it.
        self.live = True
        self.started = time.monotonic()
        self.progress.__enter__()
        for stage in self._STAGES:
            self.tasks[stage] = self.progress.add_task(stage, total=None, failed=0, rate="-")

    def update(self, counts: Mapping[str, Any], totals: Mapping[str, int]) -> None:
        if not self.live:
            self._start()
        elapsed = max(time.monotonic() - self.started, 1e-6)
        for stage, task in self.tasks.items():
            c = counts.get(stage, {})
            self.progress.update(
                task,
                completed=int(c.get("rows", 0)),
                total=totals.get(stage) or None,
                failed=int(c.get("failed", 0)),
                rate=f"{c.get('tokens', 0) / elapsed:.1f}",
            )
