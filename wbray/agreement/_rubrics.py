"""Static rubrics for the agreement study: one global rubric and one rubric per primary domain.

They are data (``rubrics.json``, original wording written for wbray) in the benchmark's checklist
schema, so the judge sees them exactly as it sees a query's own criteria.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wbray.errors import DataError, Defect
from wbray.records import CRITERION_KEYS, Criterion

#: The bundled rubrics.
BUNDLED_RUBRICS = Path(__file__).resolve().parent / "rubrics.json"


@dataclass(frozen=True)
class Rubrics:
    """The two static rubric sets.

    Attributes:
        version: The file's ``version`` (recorded in agreement reports).
        global_criteria: Applied to every query.
        domain: Primary domain -> its criteria.
    """

    version: str
    global_criteria: tuple[Criterion, ...]
    domain: Mapping[str, tuple[Criterion, ...]]


def criteria_defects(items: Any, path: str, where: str, line: int = 0) -> list[Defect]:
    """What is wrong with a list of checklist items (empty when it is valid).

    Each item must be an object with exactly the keys ``name, criteria_description, 1-2, 3-4, 5-6,
    7-8, 9-10``, every value a non-empty string, names unique within the list.
    """
    if not isinstance(items, list) or not items:
        return [Defect(path, line, where, "must be a non-empty list of criteria")]
    defects: list[Defect] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        field = f"{where}[{i}]"
        if not isinstance(item, dict):
            defects.append(Defect(path, line, field, f"must be an object, got {type(item).__name__}"))
            continue
        keys = set(item)
        if keys != set(CRITERION_KEYS):
            missing = [k for k in CRITERION_KEYS if k not in keys]
            extra = sorted(keys - set(CRITERION_KEYS))
            defects.append(
                Defect(
                    path,
                    line,
                    field,
                    f"keys must be exactly {', '.join(CRITERION_KEYS)} (missing {missing}, extra {extra})",
                )
            )
            continue
        for k in CRITERION_KEYS:
            if not isinstance(item[k], str) or not item[k].strip():
                defects.append(Defect(path, line, f"{field}.{k}", "must be a non-empty string"))
        name = item["name"]
        if isinstance(name, str) and name in seen:
            defects.append(Defect(path, line, f"{field}.name", f"duplicate criterion name {name!r}"))
        seen.add(str(name))
    return defects


def to_criteria(items: list[dict[str, str]]) -> tuple[Criterion, ...]:
    """Checklist items as :class:`~wbray.records.Criterion` records, key order as in the schema."""
    return tuple(Criterion(str(it["name"]), {k: str(it[k]) for k in CRITERION_KEYS}) for it in items)


def load_rubrics(path: str | Path | None = None) -> Rubrics:
    """Load a rubrics file (default: the bundled one).

    The file is JSON: ``{"version": str, "global": [items], "domain": {domain1: [items]}}`` with
    items in the checklist schema.

    Raises:
        DataError: every defect, with the file and the field.
    """
    p = Path(path) if path is not None else BUNDLED_RUBRICS
    where = str(p)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError([Defect(where, 0, "", f"cannot read ({exc.strerror})")]) from None
    except json.JSONDecodeError as exc:
        raise DataError([Defect(where, exc.lineno, "", f"not valid JSON ({exc.msg})")]) from None
    if not isinstance(data, dict):
        raise DataError([Defect(where, 0, "", "must be a JSON object with version, global and domain")])
    defects: list[Defect] = []
    version = data.get("version")
    if not isinstance(version, str) or not version:
        defects.append(Defect(where, 0, "version", "must be a non-empty string"))
    defects += criteria_defects(data.get("global"), where, "global")
    domains = data.get("domain")
    if not isinstance(domains, dict) or not domains:
        defects.append(Defect(where, 0, "domain", "must be an object of domain1 -> criteria"))
        domains = {}
    for name, items in domains.items():
        defects += criteria_defects(items, where, f"domain.{name}")
    if defects:
        raise DataError(defects)
    return Rubrics(
        version=str(version),
        global_criteria=to_criteria(data["global"]),
        domain={str(k): to_criteria(v) for k, v in domains.items()},
    )
