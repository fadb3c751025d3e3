"""A cache of strictly loaded benchmarks, so an unchanged data directory is validated once.

Strict loading reads and checks every row of the query file and the six requirement files (45 MB
for the official benchmark, ~0.4 s on the project machine); `wbray aggregate`, `wbray run` and
every sweep cell load the same files again. What passed the checks is kept under the cache root
(``$WBRAY_CACHE_DIR``/benchmarks) as plain msgpack data — never pickle: the cache directory is not
trusted to hold code — keyed by the data directory and stamped with each file's size, mtime and
inode, as Python stamps its ``.pyc`` files. Any change to a file (or a file appearing or going)
misses the cache and runs the full checks again. Only loads without defects are stored.

The cache is an optimisation only: an unreadable, stale, foreign or corrupt entry is ignored, and
a cache directory that cannot be written is not an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wbray import env
from wbray.records import Criterion, Query, RequirementSubset

from ._layout import Layout

logger = logging.getLogger(__name__)

#: Bump when the stored shape or the meaning of a check changes: older entries then miss.
FORMAT = 1


def file_stamp(layout: Layout) -> list[Any]:
    """The layout's files' current sizes, mtimes and inodes (what an entry must match)."""
    stamp: list[Any] = []
    for path in layout.all_files():
        try:
            st = path.stat()
        except FileNotFoundError:
            stamp.append([str(path), None])
            continue
        stamp.append([str(path), st.st_size, st.st_mtime_ns, st.st_ino])
    return stamp


def _checks_fingerprint() -> bytes:
    # The code that decides what passes: an entry made by other checks (another wbray version, or a
    # working tree being edited) must not vouch for the files.
    from wbray import __version__

    here = Path(__file__).resolve().parent
    digest = hashlib.sha256(f"{FORMAT}\0{__version__}".encode())
    for source in (here / "_validate.py", here.parent / "_jsonl.py", here.parent / "records.py"):
        digest.update(source.read_bytes())
    return digest.digest()


def _entry_path(layout: Layout) -> Path:
    root = str(Path(layout.root).resolve())
    digest = hashlib.sha256(_checks_fingerprint() + root.encode("utf-8", "surrogateescape")).hexdigest()
    return env.cache_dir() / "benchmarks" / f"{digest[:32]}.msgpack"


def load_cached(
    layout: Layout, stamp: list[Any]
) -> tuple[tuple[Query, ...], dict[str, RequirementSubset], str] | None:
    """The queries, requirement subsets and data version stored for this layout, when its files
    still have the ``stamp`` (from :func:`file_stamp`) they had when the entry was made."""
    import msgspec

    try:
        path = _entry_path(layout)
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        entry = msgspec.msgpack.decode(raw)
        if entry["stamp"] != stamp:
            return None
        queries = tuple(
            Query(
                index=index,
                domain1=domain1,
                domain2=domain2,
                query=text,
                checklist=tuple(Criterion(name=item["name"], item=item) for item in items),
                lang=lang,
            )
            for index, domain1, domain2, text, lang, items in entry["queries"]
        )
        requirements = {
            name: RequirementSubset(
                name=name,
                r_indices=tuple(r_indices),
                c_criteria={int(i): tuple(names) for i, names in c_criteria},
            )
            for name, r_indices, c_criteria in entry["requirements"]
        }
        return queries, requirements, str(entry["data_version"])
    except Exception as exc:  # a corrupt or foreign entry: load strictly instead
        logger.debug("benchmark cache: ignoring %s (%s: %s)", path, type(exc).__name__, exc)
        return None


def store(
    layout: Layout,
    stamp: list[Any],
    queries: tuple[Query, ...],
    requirements: Mapping[str, RequirementSubset],
    data_version: str,
) -> None:
    """Keep a defect-free load; ``stamp`` is taken before the files were read (a file changed
    while it was being read then misses on the next load, never the other way round)."""
    import msgspec

    entry = {
        "stamp": stamp,
        "data_version": data_version,
        "queries": [
            [q.index, q.domain1, q.domain2, q.query, q.lang, [dict(c.item) for c in q.checklist]]
            for q in queries
        ],
        "requirements": [
            [name, list(sub.r_indices), [[i, list(names)] for i, names in sub.c_criteria.items()]]
            for name, sub in requirements.items()
        ],
    }
    try:
        path = _entry_path(layout)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".msgpack")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(msgspec.msgpack.encode(entry))
            os.replace(tmp, path)  # readers see the old entry or the new one, never half of one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        logger.debug("benchmark cache: cannot write %s (%s)", path, exc)
