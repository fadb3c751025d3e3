"""Run one batch task over a list of rows on Ray Data, with one engine: the small executor behind
``wbray criteria`` and ``wbray curate``.

The stage is whatever the engine's backend builds (wbray's actor pool by default, a ``ray.data.llm``
processor for vLLM), exactly as in a benchmark run, so a task written once runs on every backend.
Rows stream back to the driver as batches finish; these verbs' rows are small (a query and its
criteria, a verdict), and their outputs are written by the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ray

from wbray.config import StageResources
from wbray.engines import StageSpec, get_backend
from wbray.pipelines._stages import actor_pool_stage, records


def run_task_rows(
    rows: Sequence[dict[str, Any]],
    task: Any,
    engine: Any,
    resources: StageResources,
    *,
    pool: str,
    on_rows: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Drive ``task`` (a :class:`~wbray.steps.BatchTask`) over ``rows`` on the connected cluster.

    Args:
        rows: The task's input rows (plain, Arrow-friendly values).
        task: The batch task.
        engine: The engine config (its ``backend`` picks the stage).
        resources: The stage's actor pool.
        pool: The pool's name in logs.
        on_rows: Called with (rows finished, rows in all) as batches come back.

    Returns:
        Every finished row (missing values as None), in no particular order.
    """
    if not rows:
        return []
    spec = StageSpec(engine, resources, task, pool)
    build = get_backend(engine.backend).build_stage or actor_pool_stage
    ds = build(ray.data.from_items(list(rows)), spec)
    done: list[dict[str, Any]] = []
    for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
        done += records(batch)
        if on_rows is not None:
            on_rows(len(done), len(rows))
    return done
