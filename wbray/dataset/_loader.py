"""Locate and load a benchmark: queries, requirement subsets and a content-derived version."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from wbray import env
from wbray._jsonl import git_blob_sha1
from wbray.errors import DataError, DataNotFoundError, WbrayError
from wbray.records import DOMAIN1_ORDER, LANGS, Query, RequirementSubset

from . import _cache
from ._download import default_download_dir, has_complete_download
from ._layout import EXPECTED_FILES_HINT, detect_layout
from ._validate import check_file, scan_layout

#: The value of ``--data-dir`` / ``data.data_dir`` that selects the bundled example.
EXAMPLE = "example"


def example_dir() -> Path:
    """The bundled example benchmark (original data, see its README)."""
    return Path(__file__).resolve().parent / "example"


@dataclass(frozen=True)
class Benchmark:
    """A loaded benchmark: queries in file order plus the requirement subsets.

    Attributes:
        root: The resolved data directory.
        is_example: True for the bundled example benchmark.
        queries: The queries, in file order (after :meth:`select`, the selected ones).
        requirements: ``"style"``, ``"format"``, ``"length"`` -> subset; empty when the directory
            has no subset files. Never narrowed by :meth:`select`.
        data_version: The first 12 hex digits of the query file's git blob SHA-1: a short id of the
            data that goes into run ids.
    """

    root: Path
    is_example: bool
    queries: tuple[Query, ...]
    requirements: Mapping[str, RequirementSubset]
    data_version: str

    @cached_property
    def by_index(self) -> Mapping[int, Query]:
        """The queries keyed by index."""
        return {q.index: q for q in self.queries}

    def _range_text(self) -> str:
        if not self.queries:
            return "this selection holds no queries"
        indices = [q.index for q in self.queries]
        return f"valid indices {min(indices)}..{max(indices)}, {len(indices)} queries"

    def get(self, index: int) -> Query:
        """The query with ``index``.

        Raises:
            WbrayError: No such query (the message gives the valid range).
        """
        query = self.by_index.get(index)
        if query is None:
            raise WbrayError(f"no query with index {index} in {self.root} ({self._range_text()})")
        return query

    def select(
        self,
        *,
        domain1: Collection[str] | None = None,
        domain2: Collection[str] | None = None,
        lang: Collection[str] | None = None,
        indices: Collection[int] | None = None,
        limit: int | None = None,
    ) -> Benchmark:
        """Keep the queries matching every given filter (None means no filter), in file order.

        Args:
            domain1: Primary domains to keep.
            domain2: Subdomains to keep.
            lang: Languages to keep (``"zh"``, ``"en"``).
            indices: Query indices to keep.
            limit: Keep at most this many, applied after the other filters.

        Returns:
            A benchmark with the same root, version and requirement subsets.

        Raises:
            WbrayError: A filter names a domain, language or index the benchmark does not have.
        """
        queries = list(self.queries)
        if domain1 is not None:
            known = [d for d in DOMAIN1_ORDER if any(q.domain1 == d for q in self.queries)]
            known += sorted({q.domain1 for q in self.queries} - set(known))
            _check_known("domain1", domain1, known)
            keep = set(domain1)
            queries = [q for q in queries if q.domain1 in keep]
        if domain2 is not None:
            _check_known("domain2", domain2, sorted({q.domain2 for q in self.queries}))
            keep = set(domain2)
            queries = [q for q in queries if q.domain2 in keep]
        if lang is not None:
            _check_known("lang", lang, list(LANGS))
            keep = set(lang)
            queries = [q for q in queries if q.lang in keep]
        if indices is not None:
            wanted = set(indices)
            unknown = sorted(wanted - set(self.by_index))
            if unknown:
                shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
                raise WbrayError(f"unknown query index(es) {shown} in {self.root} ({self._range_text()})")
            queries = [q for q in queries if q.index in wanted]
        if limit is not None:
            if limit < 1:
                raise WbrayError(f"limit must be at least 1, got {limit}")
            queries = queries[:limit]
        return dataclasses.replace(self, queries=tuple(queries))


def _check_known(what: str, wanted: Collection[str], known: list[str]) -> None:
    if isinstance(wanted, str):
        # A bare string would be iterated character by character; insist on a list.
        raise WbrayError(f"{what} filter must be a list of names, got the string {wanted!r}")
    for name in wanted:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            valid = ", ".join(repr(k) for k in known)
            raise WbrayError(f"unknown {what} {name!r}{hint} (valid: {valid})")


def _has_queries(root: Path) -> bool:
    layout = detect_layout(root)
    return layout is not None and layout.query_file.is_file()


def resolve_data_dir(value: str | Path | None) -> Path:
    """Find the data directory.

    Order: ``"example"`` -> the bundled example; an explicit path; ``$WBRAY_DATA_DIR``; the download
    cache (``<cache>/writingbench/<commit>``) when it holds every file.

    Args:
        value: ``"example"``, a directory, or None to search.

    Returns:
        The resolved directory.

    Raises:
        DataNotFoundError: Naming where it looked and how to get the data.
    """
    if isinstance(value, str) and value == EXAMPLE:
        return example_dir()
    if value is not None:
        root = Path(value).expanduser()
        if not _has_queries(root):
            raise DataNotFoundError(f"{root}: not a WritingBench data directory ({EXPECTED_FILES_HINT})")
        return root.resolve()
    from_env = env.get(env.WBRAY_DATA_DIR)
    if from_env:
        root = Path(from_env).expanduser()
        if not _has_queries(root):
            raise DataNotFoundError(
                f"${env.WBRAY_DATA_DIR}={from_env}: not a WritingBench data directory ({EXPECTED_FILES_HINT})"
            )
        return root.resolve()
    cache = default_download_dir()
    if has_complete_download(cache):
        return cache.resolve()
    raise DataNotFoundError(
        f"no WritingBench data found: no data directory was given, ${env.WBRAY_DATA_DIR} is not set, "
        f"and the download cache {cache} does not hold the files; run `wbray data download`, or pass "
        f"--data-dir DIR (or --data-dir {EXAMPLE} for the bundled example)"
    )


def load_queries(path: Path) -> list[Query]:
    """Load a query file (``benchmark_all.jsonl`` style), strictly.

    Accepts the current format (``checklist`` and a required ``lang``) and the first-release format
    (``criteria``, no ``lang``: the queries get ``lang=None``).

    Raises:
        DataError: Listing every defect in the file.
    """
    result = check_file(Path(path), require_lang=True)
    if result.defects:
        raise DataError(result.defects)
    return [r.query for r in result.rows]


def load_requirements(root: Path) -> dict[str, RequirementSubset]:
    """Load the style/format/length subsets (R and C files) of a data directory, strictly.

    Works on both layouts and both releases (``checklist`` or ``criteria``). Checks R against C and
    C's criterion names against the R rows; checks against the query file are
    :func:`load_benchmark`'s job.

    Returns:
        ``{"style": ..., "format": ..., "length": ...}``, or ``{}`` when there are no subset files.

    Raises:
        DataNotFoundError: ``root`` is not a directory.
        DataError: Listing every defect (including a requirement with only some of its files).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"{root}: no such directory")
    layout = detect_layout(root)
    if layout is None:
        return {}
    scan = scan_layout(layout, with_queries=False)
    if scan.defects:
        raise DataError(scan.defects)
    return scan.requirements


def load_benchmark(data_dir: str | Path | None = None) -> Benchmark:
    """Load a benchmark strictly: any defect in any file fails the load.

    Args:
        data_dir: As for :func:`resolve_data_dir`.

    Raises:
        DataNotFoundError: No data directory was found.
        DataError: Listing every defect in every file, cross-file checks included.
    """
    root = resolve_data_dir(data_dir)
    layout = detect_layout(root)
    if layout is None:  # pragma: no cover - resolve_data_dir checked it
        raise DataNotFoundError(f"{root}: not a WritingBench data directory ({EXPECTED_FILES_HINT})")
    stamp = _cache.file_stamp(layout)
    cached = _cache.load_cached(layout, stamp)
    if cached is not None:
        queries, requirements, data_version = cached
    else:
        scan = scan_layout(layout)
        if scan.defects:
            raise DataError(scan.defects)
        assert scan.queries is not None  # resolve_data_dir checked the query file exists
        queries = tuple(r.query for r in scan.queries.rows)
        requirements = scan.requirements
        data_version = git_blob_sha1(scan.queries.data)[:12]
        _cache.store(layout, stamp, queries, requirements, data_version)
    return Benchmark(
        root=root,
        is_example=root == example_dir(),
        queries=queries,
        requirements=requirements,
        data_version=data_version,
    )
