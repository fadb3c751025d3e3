"""Reading and writing what a sweep keeps in storage: the grid, each cell's config and state, and
the record of the last sweep command (paths from :class:`SweepLayout`)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wbray import __version__
from wbray.config import dump_config
from wbray.errors import WbrayError
from wbray.storage import StorageOptions, exists, read_bytes, write_bytes
from wbray.sweeps._config import Cell, SweepConfig, sweep_yaml
from wbray.sweeps._layout import SweepLayout
from wbray.sweeps._state import CellState


class _Record(BaseModel):
    # Lenient like the run manifest: these files outlive the wbray version that wrote them.
    model_config = ConfigDict(extra="allow")


M = TypeVar("M", bound=_Record)


class GridEntry(_Record):
    """One cell in ``grid.json``."""

    cell: str
    candidate: str
    judge: str
    subset: str | None = None
    samples: int | None = None
    group: str
    config_hash: str
    demand: dict[str, float] = Field(
        default_factory=dict, description="CPUs and GPUs the cell's engine pools reserve while it runs."
    )


class Grid(_Record):
    """``grid.json``: the sweep's cells in order."""

    name: str
    key: str
    baseline: str | None = None
    max_concurrent: int = 1
    cells: list[GridEntry] = Field(default_factory=list)


class SweepRecord(_Record):
    """``sweep.json``: the last ``wbray sweep`` command on this prefix."""

    name: str
    key: str
    mode: Literal["jobs", "local"]
    address: str | None = Field(None, description="The jobs API cells were submitted to.")
    storage: dict[str, Any] = Field(default_factory=dict, description="Storage options (no credentials).")
    wbray_version: str = ""
    started_at: float = 0.0
    cancelled_at: float | None = Field(None, description="Set by `wbray sweep cancel`.")


def demand(cell: Cell) -> dict[str, float]:
    """What the cell's pools reserve at once (its candidate's generation pool and its judge pool)."""
    from wbray.engines import get_backend

    config = cell.config
    total: dict[str, float] = {"CPU": 0.0, "GPU": 0.0}
    pools = [(config.judge.engine, config.judge.resources)]
    for cand in config.candidates:
        if cand.engine is not None:
            pools.append((cand.engine, cand.resources or config.generation.resources))
    for engine, resources in pools:
        if engine is None:
            continue
        for kind, amount in get_backend(engine.backend).demand(engine, resources).items():
            total[kind] = total.get(kind, 0.0) + float(amount)
    return total


def storage_dict(storage: StorageOptions) -> dict[str, Any]:
    """Storage options as plain data (they hold no credentials), for records and job arguments."""
    return {
        k: v
        for k, v in (
            ("endpoint_url", storage.endpoint_url),
            ("region", storage.region),
            ("addressing_style", storage.addressing_style),
        )
        if v
    }


def storage_from(data: Mapping[str, Any] | None) -> StorageOptions:
    data = data or {}
    return StorageOptions(
        endpoint_url=data.get("endpoint_url"),
        region=data.get("region"),
        addressing_style=data.get("addressing_style"),
    )


def write_sweep(layout: SweepLayout, sweep: SweepConfig, cells: Sequence[Cell], key: str) -> dict[str, str]:
    """Write the sweep, its grid and each cell's config; return cell name -> config hash.

    Each cell's config gets its run directory and the storage options this command uses, so a job
    on any node reaches the same store without the submitting shell's environment.
    """
    write_bytes(layout.sweep_yaml, sweep_yaml(sweep).encode("utf-8"), layout.storage)
    grid = Grid(
        name=sweep.name,
        key=key,
        baseline=sweep.baseline,
        max_concurrent=sweep.max_concurrent,
        cells=[
            GridEntry(
                cell=c.name,
                candidate=c.candidate,
                judge=c.judge,
                subset=c.subset,
                samples=c.samples,
                group=c.group,
                config_hash=c.config_hash,
                demand=demand(c),
            )
            for c in cells
        ],
    )
    write_bytes(layout.grid, _json(grid.model_dump(mode="json")), layout.storage)
    storage = storage_dict(layout.storage)
    for cell in cells:
        config = cell.config.model_copy(
            update={
                "run": cell.config.run.model_copy(update={"out": layout.cell_dir(cell.name)}),
                "storage": cell.config.storage.model_copy(update=storage),
            }
        )
        write_bytes(layout.cell_config(cell.name), dump_config(config).encode("utf-8"), layout.storage)
    return {c.name: c.config_hash for c in cells}


def read_grid(layout: SweepLayout) -> Grid:
    if not exists(layout.grid, layout.storage):
        raise WbrayError(f"{layout.root}: not a wbray sweep (no grid.json); start it with `wbray sweep FILE`")
    return _model(Grid, read_bytes(layout.grid, layout.storage), layout.grid)


def read_state(layout: SweepLayout, cell: str) -> CellState | None:
    uri = layout.cell_state(cell)
    if not exists(uri, layout.storage):
        return None
    return CellState.parse(read_bytes(uri, layout.storage), uri)


def write_state(layout: SweepLayout, state: CellState) -> None:
    write_bytes(layout.cell_state(state.cell), state.to_json(), layout.storage)


def read_record(layout: SweepLayout) -> SweepRecord | None:
    if not exists(layout.record, layout.storage):
        return None
    return _model(SweepRecord, read_bytes(layout.record, layout.storage), layout.record)


def write_record(layout: SweepLayout, record: SweepRecord) -> None:
    write_bytes(layout.record, _json(record.model_dump(mode="json")), layout.storage)


def new_record(sweep: SweepConfig, key: str, layout: SweepLayout, address: str | None) -> SweepRecord:
    return SweepRecord(
        name=sweep.name,
        key=key,
        mode="jobs" if address else "local",
        address=address,
        storage=storage_dict(layout.storage),
        wbray_version=__version__,
        started_at=time.time(),
    )


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")


def _model(cls: type[M], data: bytes, source: str) -> M:
    try:
        return cls.model_validate(json.loads(data.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError, ValidationError, RecursionError) as exc:
        what = str(exc).splitlines()[0]
        raise WbrayError(
            f"{source}: damaged sweep file ({what}); re-run `wbray sweep FILE` to rewrite it"
        ) from None


__all__ = [
    "Grid",
    "GridEntry",
    "SweepRecord",
    "demand",
    "new_record",
    "read_grid",
    "read_record",
    "read_state",
    "storage_dict",
    "storage_from",
    "write_record",
    "write_state",
    "write_sweep",
]
