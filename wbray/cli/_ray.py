"""Starting or joining a Ray cluster — the CLI and jobs are the only places that call ``ray.init``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from wbray import env
from wbray.config import RayConfig


@contextmanager
def ray_session(cfg: RayConfig, address: str | None = None) -> Iterator[None]:
    """Connect to ``address`` (or ``cfg.address``), or start a small local cluster, for the block.

    The local cluster is tuned to start fast on a laptop or a 2-core CI box: no dashboard, an
    explicit CPU count and a small object store. Ray 2.59+ turns token auth on for local clusters;
    the embedded cluster is private to this process, so it is turned off there (only there).
    """
    import ray

    target = address or cfg.address
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = False
    if not ray.is_initialized():
        env_vars = {k: v for k in env.ALL if (v := env.get(k))}
        if target is None:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray.init(
                num_cpus=cfg.num_cpus or os.cpu_count() or 1,
                include_dashboard=False,
                object_store_memory=cfg.object_store_mb * 1024 * 1024,
                log_to_driver=False,
                runtime_env={"env_vars": env_vars} if env_vars else None,
            )
        else:
            ray.init(
                address=target, log_to_driver=False, runtime_env={"env_vars": env_vars} if env_vars else None
            )
        started = True
    # Ray Data's per-dataset INFO lines drown the progress display; warnings still show.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    # Without this a stage that cannot get resources waits 30 minutes before failing.
    ctx.execution_no_progress_timeout_s = cfg.no_progress_timeout_s
    try:
        yield
    finally:
        if started:
            ray.shutdown()
