"""Reports that need the run's text (answers, reasons) are built inside the cluster, not in the
driver: the driver of a run handles ids, counts and numbers only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray


def _browse(
    layout: Any, judge: str, bench: Any, models: list[str], resamples: int, seed: int
) -> dict[str, Any]:
    from wbray.browse import browse_run

    return browse_run(layout, judge, bench, models=models, resamples=resamples, seed=seed)


def browse_in_cluster(
    layout: Any, judge: str, bench: Any, models: Sequence[str], *, resamples: int, seed: int
) -> dict[str, Any]:
    """Write the run's browsable page from a Ray task; returns its URI and flag counts."""
    task = ray.remote(num_cpus=0)(_browse)
    result: dict[str, Any] = ray.get(task.remote(layout, judge, bench, list(models), resamples, seed))
    return result
