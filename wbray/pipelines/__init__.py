"""Ray Data pipelines: the plan of a run (pure) and the executor that runs it on a cluster.

``wbray.pipelines._plan`` imports no Ray, so plans are built and tested without a cluster; the
executor and the session helpers import Ray and load lazily on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wbray.pipelines._failures import pipeline_error
from wbray.pipelines._plan import (
    CandidatePlan,
    GenerationWork,
    RunPlan,
    generation_pool,
    judge_pool,
    plan_run,
)

if TYPE_CHECKING:
    from wbray.pipelines._execute import Execution, ProgressCallback, check_resources, execute
    from wbray.pipelines._reports import browse_in_cluster
    from wbray.pipelines._session import cluster_address, configure_data, ray_session
    from wbray.pipelines._tasks import run_task_rows

_LAZY = {
    "browse_in_cluster": "wbray.pipelines._reports",
    "Execution": "wbray.pipelines._execute",
    "ProgressCallback": "wbray.pipelines._execute",
    "check_resources": "wbray.pipelines._execute",
    "execute": "wbray.pipelines._execute",
    "cluster_address": "wbray.pipelines._session",
    "configure_data": "wbray.pipelines._session",
    "ray_session": "wbray.pipelines._session",
    "run_task_rows": "wbray.pipelines._tasks",
}


def __getattr__(name: str) -> Any:
    # Ray is imported only when the executor or the session is used, not by `import wbray.pipelines`.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'wbray.pipelines' has no attribute {name!r}")


__all__ = [
    "CandidatePlan",
    "Execution",
    "GenerationWork",
    "ProgressCallback",
    "RunPlan",
    "browse_in_cluster",
    "check_resources",
    "cluster_address",
    "configure_data",
    "execute",
    "generation_pool",
    "judge_pool",
    "pipeline_error",
    "plan_run",
    "ray_session",
    "run_task_rows",
]
