"""Fetch the pinned WritingBench files from upstream and verify them byte for byte.

Every file is pinned by its git blob SHA-1 at one upstream commit, so a download is reproducible
and a corrupted or changed file never lands in the cache. The judge prompt lives in upstream's
``prompt.py``; it is treated as data: its two string constants are read with :mod:`ast`, and the
file is never imported or executed.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import IO, Final

from wbray import env
from wbray.errors import IntegrityError, WbrayError

#: The upstream commit every pinned file comes from (X-PLUG/WritingBench, 2025-12-19).
UPSTREAM_COMMIT: Final = "ae2d5176449b7b769815482641d35926f26793eb"
#: Where raw files are fetched from unless overridden (argument or ``$WBRAY_UPSTREAM_URL``).
DEFAULT_BASE_URL: Final = "https://raw.githubusercontent.com/X-PLUG/WritingBench"

#: The benchmark files at :data:`UPSTREAM_COMMIT`, with their git blob SHA-1s.
_REQ = "benchmark_query/requirement"
DATA_FILES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "benchmark_query/benchmark_all.jsonl": "2d04c2d4c82f8c2d615e963393c7808f64b97129",
        f"{_REQ}/style/style_subset.jsonl": "5788daafc08e3a3cf8a117dd6b94a1203db2df25",
        f"{_REQ}/style/style_subset_C.jsonl": "7df42fc48b86bbba68bf96148da54aabbe3ff675",
        f"{_REQ}/format/format_subset.jsonl": "6eb9e47a2fc190b28f72129a4fa8e799849833a4",
        f"{_REQ}/format/format_subset_C.jsonl": "1a015bcb27dd862e13ea4db49d1f56705db1b9b9",
        f"{_REQ}/length/length_subset.jsonl": "2bfe99bac25624abe2e2f790118fc49e8e16b94f",
        f"{_REQ}/length/length_subset_C.jsonl": "f73ed31528a4df95b80bd0d3bc5f8505b8eaef04",
    }
)
#: Upstream's judge prompt module (read as data, never run).
PROMPT_SOURCE: Final = "prompt.py"
#: Every file :func:`download` fetches: upstream relative path -> git blob SHA-1.
PINNED_FILES: Final[Mapping[str, str]] = MappingProxyType(
    {**DATA_FILES, PROMPT_SOURCE: "8f81b8670e2b09717c4d25c7328ecb87a2e657ec"}
)
#: prompt.py constant -> the text file it is written to.
PROMPT_FILES: Final[Mapping[str, str]] = MappingProxyType(
    {"evaluate_system": "prompts/judge_system.txt", "evaluate_prompt": "prompts/judge_user.txt"}
)

_CHUNK = 1 << 20

#: ``progress(relpath, what)`` with ``what`` one of "present", "downloaded", "extracted".
Progress = Callable[[str, str], None]


def default_download_dir() -> Path:
    """The download cache for :data:`UPSTREAM_COMMIT`: ``<cache>/writingbench/<commit>``."""
    return env.cache_dir() / "writingbench" / UPSTREAM_COMMIT


def file_blob_sha1(path: Path) -> str:
    """The git blob SHA-1 of a file, read in chunks."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size, usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _has_blob(path: Path, expected: str) -> bool:
    return path.is_file() and file_blob_sha1(path) == expected


def _fetch(url: str, out: IO[bytes], timeout: float) -> None:
    # Imported here: urllib.request and http.client cost tens of milliseconds at import, and every
    # `wbray` command imports this package while only downloads need them.
    import http.client
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out, _CHUNK)
    except urllib.error.HTTPError as exc:
        raise WbrayError(f"download failed: {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise WbrayError(
            f"download failed: {url}: {reason}; check the network, or point --base-url / "
            f"${env.WBRAY_UPSTREAM_URL} at a reachable mirror"
        ) from None


def _download_one(url: str, target: Path, relpath: str, expected: str, timeout: float) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # A temp file in the destination folder, so the final os.replace is atomic and a failed or
    # tampered download never leaves a partial file under the real name.
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _fetch(url, out, timeout)
        actual = file_blob_sha1(tmp)
        if actual != expected:
            raise IntegrityError(
                f"{relpath}: git blob SHA-1 mismatch: expected {expected}, got {actual} "
                f"(from {url}); the file was not written"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _literal_string(node: ast.expr, name: str, filename: str) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "strip"
        and isinstance(node.func.value, ast.Constant)
        and isinstance(node.func.value.value, str)
        and not node.args
        and not node.keywords
    ):
        return node.func.value.value.strip()
    shown = ast.unparse(node)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise WbrayError(
        f"{filename}:{node.lineno}: {name} must be a string literal, optionally followed by .strip(); "
        f"got {shown!r} (wbray reads prompt.py as data and never runs it)"
    )


def extract_prompt_constants(source: bytes | str, filename: str = PROMPT_SOURCE) -> dict[str, str]:
    """Read ``evaluate_system`` and ``evaluate_prompt`` from upstream's prompt.py without running it.

    Each must be assigned once at module level as a string literal or a literal's ``.strip()``.

    Args:
        source: The file's content.
        filename: The name used in error messages.

    Returns:
        ``{"evaluate_system": ..., "evaluate_prompt": ...}``.

    Raises:
        WbrayError: The file does not parse, or a constant is missing, repeated or not a literal.
    """
    try:
        tree = ast.parse(source, filename=filename)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        where = f"{filename}:{line}" if line else filename
        raise WbrayError(f"{where}: not valid Python ({exc}); cannot read the judge prompt") from None
    found: dict[str, str] = {}
    for stmt in tree.body:
        if not isinstance(stmt, ast.Assign):
            continue
        for target in stmt.targets:
            if isinstance(target, ast.Name) and target.id in PROMPT_FILES:
                if target.id in found:
                    raise WbrayError(f"{filename}:{stmt.lineno}: {target.id} is assigned more than once")
                if len(stmt.targets) != 1:
                    raise WbrayError(f"{filename}:{stmt.lineno}: {target.id} must be assigned on its own")
                found[target.id] = _literal_string(stmt.value, target.id, filename)
    missing = [name for name in PROMPT_FILES if name not in found]
    if missing:
        raise WbrayError(f"{filename}: no module-level assignment of {', '.join(missing)}")
    return found


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return True


def _base_url(base_url: str | None) -> str:
    base = (base_url or env.get(env.WBRAY_UPSTREAM_URL) or DEFAULT_BASE_URL).rstrip("/")
    scheme = urllib.parse.urlsplit(base).scheme
    if scheme not in ("http", "https", "file"):
        raise WbrayError(
            f"upstream URL {base!r}: expected an http://, https:// or file:// URL "
            f"(default {DEFAULT_BASE_URL})"
        )
    return base


def download(
    dest: Path | None = None,
    *,
    base_url: str | None = None,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> Path:
    """Download the pinned WritingBench files and the judge prompt, verifying every file.

    Files already in ``dest`` with the pinned hash are kept as they are. A file whose hash differs
    is not written (the others still are) and an :class:`~wbray.errors.IntegrityError` naming it is
    raised at the end. The judge prompt is extracted from ``prompt.py`` into
    ``prompts/judge_system.txt`` and ``prompts/judge_user.txt``.

    Args:
        dest: Target directory; default :func:`default_download_dir`, which
            :func:`~wbray.dataset.resolve_data_dir` finds without being told.
        base_url: Raw-file server; files are fetched from ``{base_url}/{commit}/{path}``. Default
            ``$WBRAY_UPSTREAM_URL``, else GitHub's raw host for X-PLUG/WritingBench.
        timeout: Socket timeout in seconds for each request.
        progress: Called as ``progress(relpath, what)`` after each file.

    Returns:
        The directory holding the data.

    Raises:
        IntegrityError: A downloaded file does not match its pinned hash.
        WbrayError: A request failed (names the URL), or prompt.py cannot be read as data.
    """
    root = Path(dest) if dest is not None else default_download_dir()
    base = _base_url(base_url)
    report = progress or (lambda _path, _what: None)
    failures: list[IntegrityError] = []
    for relpath, expected in PINNED_FILES.items():
        target = root / relpath
        if _has_blob(target, expected):
            report(relpath, "present")
            continue
        try:
            _download_one(f"{base}/{UPSTREAM_COMMIT}/{relpath}", target, relpath, expected, timeout)
        except IntegrityError as exc:
            failures.append(exc)
            continue
        report(relpath, "downloaded")
    prompt_py = root / PROMPT_SOURCE
    if _has_blob(prompt_py, PINNED_FILES[PROMPT_SOURCE]):
        constants = extract_prompt_constants(prompt_py.read_bytes(), str(prompt_py))
        for name, relpath in PROMPT_FILES.items():
            if _write_if_changed(root / relpath, constants[name].encode("utf-8")):
                report(relpath, "extracted")
    if failures:
        raise IntegrityError("; ".join(str(f) for f in failures))
    return root


def has_complete_download(root: Path) -> bool:
    """Whether ``root`` holds every pinned benchmark file (hashes are checked by :func:`download`)."""
    return all((root / relpath).is_file() for relpath in DATA_FILES)
