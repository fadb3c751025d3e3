"""Turn a criteria writer's reply into five checklist items, or say exactly why not.

Strict JSON only: a reply is never ``eval``-ed or read as a Python literal, and nothing is repaired
(no renaming a duplicate, no filling a blank band). The same item rules check a checklist that an
input row already brings (``wbray curate``). Every problem of a reply is found in one pass, so a
re-ask can tell the model all of them at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from wbray.criteria._prompt import CRITERIA_COUNT, REPLY_KEY
from wbray.records import CRITERION_KEYS

FailureCode = Literal["empty", "no_json_object", "ambiguous", "invalid_criteria"]

_THINK_END: Final[str] = "</think>"
_KEYS_TEXT: Final[str] = ", ".join(CRITERION_KEYS)


@dataclass(frozen=True)
class CriteriaParseFailure:
    """A reply that does not yield valid criteria.

    Attributes:
        raw: The full reply, unchanged.
        why: ``empty``, ``no_json_object`` (no object with a ``criteria`` key), ``ambiguous``
            (several different ones) or ``invalid_criteria`` (the list breaks an item rule).
        detail: Every problem found, ``; ``-separated, each naming its place (``criteria[2].name``).
    """

    raw: str
    why: FailureCode
    detail: str


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _PairsDict(dict[str, Any]):
    repeated: frozenset[str] = frozenset()


def _pairs_hook(pairs: list[tuple[str, Any]]) -> _PairsDict:
    out = _PairsDict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        repeated: set[str] = set()
        for key, _ in pairs:
            (repeated if key in seen else seen).add(key)
        out.repeated = frozenset(repeated)
    return out


_DECODER: Final[json.JSONDecoder] = json.JSONDecoder(
    object_pairs_hook=_pairs_hook, parse_constant=_reject_constant
)


def _objects(text: str) -> list[tuple[int, int, Any]]:
    """Every top-level JSON object in ``text`` as ``(start, end, value)``, left to right."""
    found = []
    pos = text.find("{")
    while pos != -1:
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError):
            pos = text.find("{", pos + 1)
            continue
        found.append((pos, end, value))
        pos = text.find("{", end)
    return found


def _after_thoughts(text: str) -> str:
    # A reasoning model thinks first: only what follows its first </think> outside any JSON object
    # is the answer (the tag inside a JSON string is data).
    if _THINK_END not in text:
        return text
    spans = [(s, e) for s, e, _ in _objects(text)]
    pos = text.find(_THINK_END)
    while pos != -1:
        if not any(s <= pos < e for s, e in spans):
            return text[pos + len(_THINK_END) :]
        pos = text.find(_THINK_END, pos + 1)
    return text


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _utf8_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"unpaired surrogate at character {exc.start + 1}"
    return None


def item_problems(item: Any, where: str) -> list[str]:
    """What is wrong with one checklist item (empty when it is valid).

    Rules: a JSON object with exactly the keys ``name, criteria_description, 1-2, 3-4, 5-6, 7-8,
    9-10``, each a string that is not blank and is valid UTF-8 (no lone surrogates).
    """
    if not isinstance(item, Mapping):
        return [f"{where}: expected an object with keys {_KEYS_TEXT}, got {_json_type(item)}"]
    problems = []
    missing = [k for k in CRITERION_KEYS if k not in item]
    extra = [str(k) for k in item if k not in CRITERION_KEYS]
    if missing:
        problems.append(f"{where}: missing key(s) {', '.join(missing)}")
    if extra:
        problems.append(
            f"{where}: unknown key(s) {', '.join(repr(k) for k in extra)} (allowed: {_KEYS_TEXT})"
        )
    repeated: frozenset[str] = getattr(item, "repeated", frozenset())
    if repeated:
        problems.append(f"{where}: key(s) {', '.join(sorted(repeated))} given twice")
    for key in CRITERION_KEYS:
        if key not in item:
            continue
        value = item[key]
        if not isinstance(value, str):
            problems.append(f"{where}.{key}: expected a string, got {_json_type(value)}")
        elif not value.strip():
            problems.append(f"{where}.{key}: empty")
        elif (why := _utf8_problem(value)) is not None:
            problems.append(f"{where}.{key}: {why}")
    return problems


def checklist_problems(
    items: Any, *, count: int | None = CRITERIA_COUNT, where: str = REPLY_KEY
) -> list[str]:
    """What is wrong with a list of checklist items (empty when it is valid).

    Args:
        items: The decoded list.
        count: The exact number of items required; None = at least one.
        where: How the list is named in the problems.

    Rules: a list of ``count`` items (see :func:`item_problems`) whose names are distinct once
    surrounding whitespace and letter case are ignored (two criteria named "Tone" and "tone " would
    be one criterion to a grader).
    """
    if not isinstance(items, list):
        return [f"{where}: expected an array of criteria, got {_json_type(items)}"]
    problems = []
    if count is not None and len(items) != count:
        problems.append(f"{where}: expected exactly {count} criteria, got {len(items)}")
    elif not items:
        problems.append(f"{where}: empty (at least one criterion is needed)")
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        problems += item_problems(item, f"{where}[{i}]")
        name = item.get("name") if isinstance(item, Mapping) else None
        if isinstance(name, str) and name.strip():
            folded = " ".join(name.split()).casefold()
            if folded in seen:
                problems.append(f"{where}[{i}].name: {name.strip()!r} repeats {where}[{seen[folded]}]'s name")
            else:
                seen[folded] = i
    return problems


def normalise_item(item: Mapping[str, str]) -> dict[str, str]:
    """A valid item in checklist key order with surrounding whitespace removed (the judge prompt
    embeds the item's repr, so its key order is fixed)."""
    return {k: item[k].strip() for k in CRITERION_KEYS}


def parse_criteria_reply(text: str | None) -> list[dict[str, str]] | CriteriaParseFailure:
    """Parse a criteria writer's reply, strictly.

    Rules: text after the first ``</think>`` outside any JSON object is the answer; JSON objects are
    found anywhere in it (bare, fenced, wrapped in prose) and those with a ``"criteria"`` key are
    candidates; more than one different candidate is ambiguous. The candidate must hold exactly
    five valid items with distinct names (:func:`checklist_problems`); other top-level keys are
    not allowed.

    Returns:
        The five items (checklist key order, whitespace trimmed), or a :class:`CriteriaParseFailure`.
    """
    raw = text or ""
    answer = _after_thoughts(raw)
    if not answer.strip():
        return CriteriaParseFailure(raw, "empty", "the reply has no text")
    candidates = [v for _, _, v in _objects(answer) if isinstance(v, dict) and REPLY_KEY in v]
    if not candidates:
        return CriteriaParseFailure(
            raw, "no_json_object", f'no JSON object with a "{REPLY_KEY}" key (strict JSON: double quotes)'
        )
    distinct = {json.dumps(c, sort_keys=True, ensure_ascii=False): c for c in candidates}
    if len(distinct) > 1:
        return CriteriaParseFailure(
            raw, "ambiguous", f'{len(distinct)} different JSON objects with a "{REPLY_KEY}" key'
        )
    value = candidates[0]
    problems = []
    extra = sorted(str(k) for k in value if k != REPLY_KEY)
    if extra:
        problems.append(f"unknown top-level key(s) {', '.join(repr(k) for k in extra)}")
    if REPLY_KEY in getattr(value, "repeated", frozenset()):
        problems.append(f'"{REPLY_KEY}" given twice')
    problems += checklist_problems(value[REPLY_KEY])
    if problems:
        return CriteriaParseFailure(raw, "invalid_criteria", "; ".join(problems))
    return [normalise_item(item) for item in value[REPLY_KEY]]
