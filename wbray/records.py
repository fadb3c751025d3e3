"""Plain records shared by every layer: benchmark queries, criteria, evaluation rows.

No heavy imports here: these types cross process boundaries (Ray tasks, HTTP) as plain data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

#: The six domains, in the order upstream's leaderboard (calculate_scores.py) lists them.
DOMAIN1_ORDER: Final[tuple[str, ...]] = (
    "Academic & Engineering",
    "Finance & Business",
    "Politics & Law",
    "Literature & Arts",
    "Education",
    "Advertising & Marketing",
)
#: Requirement dimensions, in upstream's column order.
REQUIREMENTS: Final[tuple[str, ...]] = ("style", "format", "length")
#: The seven keys of a checklist item, in file order.
CRITERION_KEYS: Final[tuple[str, ...]] = ("name", "criteria_description", "1-2", "3-4", "5-6", "7-8", "9-10")
LANGS: Final[tuple[str, ...]] = ("zh", "en")


@dataclass(frozen=True)
class Criterion:
    """One query-specific checklist item.

    Attributes:
        name: The criterion name (unique within its query).
        item: The item exactly as in the file, key order preserved: its ``repr`` is what the
            official judge prompt embeds.
    """

    name: str
    item: Mapping[str, str]


@dataclass(frozen=True)
class Query:
    """One benchmark query with its criteria."""

    index: int
    domain1: str
    domain2: str
    query: str
    checklist: tuple[Criterion, ...]
    lang: str | None = None

    def criterion(self, name: str) -> Criterion:
        """Return the criterion called ``name`` (KeyError naming the choices otherwise)."""
        for c in self.checklist:
            if c.name == name:
                return c
        names = ", ".join(repr(c.name) for c in self.checklist)
        raise KeyError(f"query {self.index} has no criterion {name!r} (it has {names})")


@dataclass(frozen=True)
class RequirementSubset:
    """A requirement dimension: R = the query indices of ``{x}_subset.jsonl``; C = per index, the
    criterion names kept in ``{x}_subset_C.jsonl``."""

    name: str
    r_indices: tuple[int, ...]
    c_criteria: Mapping[int, tuple[str, ...]] = field(default_factory=dict)

    @property
    def c_count(self) -> int:
        return sum(len(v) for v in self.c_criteria.values())


EvalStatus = Literal["ok", "failed"]

#: Columns of the long "evaluations" table aggregation consumes: one row per judge call
#: (model, query index, criterion, repeat). ``score`` is null when ``status`` is "failed".
EVAL_COLUMNS: Final[tuple[str, ...]] = (
    "model",
    "index",
    "criterion",
    "repeat",
    "score",
    "reason",
    "status",
    "error",
)
