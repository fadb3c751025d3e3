"""The key layout of a run directory — the only place that knows it.

::

    <run>/manifest.json                                   written first (running) and last (complete)
    <run>/generations/model=<m>/part-<hash>.parquet       one file per finished batch
    <run>/generations/model=<m>/_COMMITTED.json           written when the stage completes
    <run>/scores/judge=<j>/model=<m>/part-<hash>.parquet  one file per finished batch
    <run>/scores/judge=<j>/model=<m>/_COMMITTED.json
    <run>/reports/                                        leaderboard outputs

Partitions are Hive-style (``key=value``), so DuckDB, pandas and polars read the results directly.
A part file is named by the hash of the row ids it holds: re-writing the same batch replaces the
same file instead of adding a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wbray.storage._fs import DEFAULT_STORAGE, StorageOptions, join, normalize_uri

MANIFEST = "manifest.json"
#: Written last into a stage directory; lists the parts that make the stage complete.
COMMIT_MARKER = "_COMMITTED.json"


@dataclass(frozen=True)
class RunLayout:
    """Paths inside one run directory, and the storage options that reach them."""

    root: str
    storage: StorageOptions = field(default=DEFAULT_STORAGE, compare=False)

    @classmethod
    def at(cls, uri: str, storage: StorageOptions | None = None) -> RunLayout:
        return cls(normalize_uri(uri), storage or DEFAULT_STORAGE)

    @property
    def manifest(self) -> str:
        return join(self.root, MANIFEST)

    @property
    def generations_root(self) -> str:
        return join(self.root, "generations")

    @property
    def scores_root(self) -> str:
        return join(self.root, "scores")

    @property
    def reports(self) -> str:
        return join(self.root, "reports")

    def generations(self, model: str) -> str:
        return join(self.generations_root, f"model={model}")

    def scores(self, judge: str, model: str | None = None) -> str:
        base = join(self.scores_root, f"judge={judge}")
        return base if model is None else join(base, f"model={model}")

    @staticmethod
    def part_name(batch_hash: str) -> str:
        return f"part-{batch_hash}.parquet"

    def report(self, name: str) -> str:
        return join(self.reports, name)
