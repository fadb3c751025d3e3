"""The key layout of a sweep prefix — the only place that knows it.

::

    <out>/sweep.yaml                       the sweep, self-contained (includes and base resolved)
    <out>/sweep.json                       the last sweep command: mode, jobs address, cancel mark
    <out>/grid.json                        the cells: names, axes, config hashes, resources
    <out>/cells/<cell>/config.yaml         the cell's full evaluation config (what its job runs)
    <out>/cells/<cell>/cell.json           the cell's state (pending ... succeeded / failed)
    <out>/cells/<cell>/manifest.json ...   the cell's run directory (wbray.storage.RunLayout)
    <out>/reports/<group>/leaderboard.*    one leaderboard per judge (and subset, samples)
    <out>/reports/<group>/deltas.{csv,md}  each model's difference to the baseline

Each cell is an ordinary run directory, so ``wbray runs list``, ``wbray aggregate`` and
``wbray export`` work on it (and on the whole prefix) as on any run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wbray.storage import DEFAULT_STORAGE, RunLayout, StorageOptions, join, normalize_uri


@dataclass(frozen=True)
class SweepLayout:
    """Paths under one sweep prefix, and the storage options that reach them."""

    root: str
    storage: StorageOptions = field(default=DEFAULT_STORAGE, compare=False)

    @classmethod
    def at(cls, uri: str, storage: StorageOptions | None = None) -> SweepLayout:
        return cls(normalize_uri(uri), storage or DEFAULT_STORAGE)

    @property
    def sweep_yaml(self) -> str:
        return join(self.root, "sweep.yaml")

    @property
    def record(self) -> str:
        return join(self.root, "sweep.json")

    @property
    def grid(self) -> str:
        return join(self.root, "grid.json")

    def cell_dir(self, cell: str) -> str:
        return join(self.root, "cells", cell)

    def run(self, cell: str) -> RunLayout:
        """The cell's run directory."""
        return RunLayout.at(self.cell_dir(cell), self.storage)

    def cell_config(self, cell: str) -> str:
        return join(self.cell_dir(cell), "config.yaml")

    def cell_state(self, cell: str) -> str:
        return join(self.cell_dir(cell), "cell.json")

    def report(self, group: str) -> str:
        return join(self.root, "reports", group)
