"""Where the files of a data directory live, for the two layouts wbray reads.

- ``official``: upstream's repository layout (also the download cache and the shared mirror):
  ``benchmark_query/benchmark_all.jsonl`` and
  ``benchmark_query/requirement/{x}/{x}_subset.jsonl`` / ``{x}_subset_C.jsonl``.
- ``example``: the bundled example's layout: ``queries.jsonl`` and
  ``requirement/{x}/R.jsonl`` / ``C.jsonl``. Its names differ from upstream's so that the repository
  never holds files that look like upstream data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wbray.records import REQUIREMENTS

LayoutKind = Literal["official", "example"]


@dataclass(frozen=True)
class Layout:
    """The expected file paths of one data directory (the files need not exist)."""

    root: Path
    kind: LayoutKind

    @property
    def query_file(self) -> Path:
        if self.kind == "official":
            return self.root / "benchmark_query" / "benchmark_all.jsonl"
        return self.root / "queries.jsonl"

    def subset_files(self, name: str) -> tuple[Path, Path]:
        """The (R, C) files of requirement ``name``."""
        if self.kind == "official":
            folder = self.root / "benchmark_query" / "requirement" / name
            return folder / f"{name}_subset.jsonl", folder / f"{name}_subset_C.jsonl"
        folder = self.root / "requirement" / name
        return folder / "R.jsonl", folder / "C.jsonl"

    def all_files(self) -> list[Path]:
        """Every file this layout may hold: the query file, then R and C per requirement."""
        files = [self.query_file]
        for name in REQUIREMENTS:
            files.extend(self.subset_files(name))
        return files

    def present_files(self) -> list[Path]:
        return [p for p in self.all_files() if p.is_file()]


def detect_layout(root: Path) -> Layout | None:
    """The layout of ``root``, or None when it holds neither layout's folders or files."""
    if (root / "benchmark_query").is_dir():
        return Layout(root, "official")
    if (root / "queries.jsonl").is_file() or (root / "requirement").is_dir():
        return Layout(root, "example")
    return None


EXPECTED_FILES_HINT = (
    "expected benchmark_query/benchmark_all.jsonl and benchmark_query/requirement/{x}/{x}_subset(_C).jsonl "
    "(official layout), or queries.jsonl and requirement/{x}/R.jsonl, C.jsonl (example layout)"
)
