"""Starting or joining a Ray cluster, and Ray Data's settings for a run.

Joining a cluster is only ever explicit: an ``address`` argument, ``ray.address`` in the config,
or ``RAY_ADDRESS`` in the environment (what a Ray job's driver has). Without one, wbray starts a
private embedded cluster with ``ray.init(address="local")`` — never attaching by accident to a
cluster that ``ray start`` left running on the same machine (``ray.init()`` would, and then refuse
``num_cpus``). A process that already called ``ray.init`` keeps its connection.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from wbray import env
from wbray.config import RayConfig


def cluster_address(cfg: RayConfig, address: str | None = None) -> str | None:
    """The cluster to join, in order: ``address``, ``cfg.address``, ``$RAY_ADDRESS``; None = embedded."""
    return address or cfg.address or os.environ.get("RAY_ADDRESS") or None


@contextmanager
def ray_session(
    cfg: RayConfig, address: str | None = None, *, say: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Connect to the cluster :func:`cluster_address` names, or start an embedded one, for the block.

    The embedded cluster is tuned to start fast on a laptop or a 2-core CI box: no dashboard, an
    explicit CPU count and a small object store. Ray 2.59+ turns token auth on for local clusters;
    the embedded cluster is private to this process, so auth is off there (only there).

    Args:
        cfg: The config's ``ray:`` section.
        address: An explicit address (e.g. ``--address``), winning over the config.
        say: Called with one line saying which cluster the run uses.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = False
    if ray.is_initialized():
        if say:
            say("using the Ray cluster this process is already connected to")
    else:
        env_vars = {k: v for k in env.ALL if (v := env.get(k))}
        runtime_env = {"env_vars": env_vars} if env_vars else None
        target = cluster_address(cfg, address)
        if target is None:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            cpus = cfg.num_cpus or os.cpu_count() or 1
            if say:
                say(f"starting a private local Ray cluster ({cpus} CPUs); pass --address to join one")
            ray.init(
                address="local",
                num_cpus=cpus,
                include_dashboard=False,
                object_store_memory=cfg.object_store_mb * 1024 * 1024,
                log_to_driver=False,
                runtime_env=runtime_env,
            )
        else:
            if say:
                say(f"joining the Ray cluster at {target}")
            ray.init(address=target, log_to_driver=False, runtime_env=runtime_env)
        started = True
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def configure_data(cfg: RayConfig) -> None:
    """Ray Data settings every run needs, applied by the code that runs (not by the CLI)."""
    import ray

    # Ray Data's per-dataset INFO lines drown the progress display; warnings still show.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # Before a failed run stops, Ray Data logs the failing task's whole traceback; the run then
    # says what stopped it in one line (`wbray --debug` shows the chain), so the log keeps the
    # message only.
    logging.getLogger("ray.data._internal.execution.streaming_executor_state").addFilter(_no_traceback)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    # Without this a stage that cannot get resources waits 30 minutes before failing.
    ctx.execution_no_progress_timeout_s = cfg.no_progress_timeout_s
    # A stage's own error reaches the driver as raised (a WbrayError names what to fix, e.g. an
    # unreachable S3 endpoint), not as Ray Data's "UDF failed to process a data block.", whose
    # cause does not survive the trip from the worker.
    ctx.raise_original_map_exception = True


def _no_traceback(record: logging.LogRecord) -> bool:
    record.exc_info = None
    record.exc_text = None
    return True
