"""Sweeps: a grid of evaluations (candidates x judges x subsets x samples), each cell a run.

The schema and grid expansion (:func:`load_sweep`, :func:`expand`) are pure: no Ray, no storage.
"""

from wbray.sweeps._config import (
    CELL_SEPARATOR,
    Cell,
    JobOptions,
    Subset,
    SweepConfig,
    cell_name,
    expand,
    load_sweep,
    sweep_yaml,
)

__all__ = [
    "CELL_SEPARATOR",
    "Cell",
    "JobOptions",
    "Subset",
    "SweepConfig",
    "cell_name",
    "expand",
    "load_sweep",
    "sweep_yaml",
]
