"""Shared test fixtures.

The official WritingBench data is never committed; tests read it from ``../shared/writingbench``
next to the repository (CI lays a copy there), or from ``$WBRAY_TEST_OFFICIAL_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Fake AWS credentials for the local S3-compatible test server, set before any Ray worker starts
# (workers inherit the environment). Tests never reach real AWS; the secret is a canary that
# tests grep for in logs and outputs.
TEST_AWS_SECRET = "wbray-canary-secret-0123456789"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "wbray-test-key")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", TEST_AWS_SECRET)
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def _official_dir() -> Path:
    explicit = os.environ.get("WBRAY_TEST_OFFICIAL_DIR")
    return Path(explicit) if explicit else REPO.parent / "shared" / "writingbench"


@pytest.fixture(scope="session")
def official_dir() -> Path:
    """The official data mirror (benchmark_query/, prompts/, v1_1239/)."""
    path = _official_dir()
    if not (path / "benchmark_query" / "benchmark_all.jsonl").is_file():
        pytest.fail(
            f"official WritingBench mirror not found at {path}; put ../shared/writingbench next to the "
            "repository or set WBRAY_TEST_OFFICIAL_DIR"
        )
    return path


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    # Tests never see the developer's data dir or cache.
    monkeypatch.delenv("WBRAY_DATA_DIR", raising=False)
    monkeypatch.delenv("WBRAY_UPSTREAM_URL", raising=False)
    monkeypatch.setenv("WBRAY_CACHE_DIR", str(tmp_path_factory.mktemp("wbray-cache")))
