"""Every environment variable wbray reads, in one place."""

from __future__ import annotations

import os
from pathlib import Path

#: Directory holding WritingBench data laid out like the official repository (offline mirror).
WBRAY_DATA_DIR = "WBRAY_DATA_DIR"
#: Cache root for downloaded data and converted models (default: ``$XDG_CACHE_HOME/wbray``).
WBRAY_CACHE_DIR = "WBRAY_CACHE_DIR"
#: Base URL of the upstream raw-file server (default: GitHub's raw host for X-PLUG/WritingBench).
WBRAY_UPSTREAM_URL = "WBRAY_UPSTREAM_URL"

#: S3 addressing style: auto, path (MinIO/Ceph usually) or virtual.
WBRAY_S3_ADDRESSING_STYLE = "WBRAY_S3_ADDRESSING_STYLE"

ALL = {
    WBRAY_DATA_DIR: "Offline WritingBench mirror (same layout as the upstream repository).",
    WBRAY_CACHE_DIR: "Cache root for downloads; default $XDG_CACHE_HOME/wbray or ~/.cache/wbray.",
    WBRAY_UPSTREAM_URL: "Base URL that `wbray data download` fetches from.",
    WBRAY_S3_ADDRESSING_STYLE: "S3 addressing style: auto (default), path or virtual.",
}

#: Standard AWS settings wbray honours (credentials come from the AWS chain and are never copied).
AWS_SETTINGS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_MAX_ATTEMPTS",  # attempts per S3 request (wbray's default: storage.S3_MAX_ATTEMPTS)
)


def get(name: str) -> str | None:
    """Return the variable's value, treating an empty string as unset."""
    value = os.environ.get(name)
    return value or None


def cache_dir() -> Path:
    """The cache root (not created here)."""
    explicit = get(WBRAY_CACHE_DIR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "wbray"
