"""Turn a judge's reply into ``{"score": int 1..10, "reason": str}`` or say exactly why not.

Strict JSON only: a reply is never ``eval``-ed or read as a Python literal, and nothing is guessed
(no regex for a bare number). A failure is data: the caller records ``why`` and the raw text,
retries a bounded number of times, and leaves the row out of means explicitly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

FailureCode = Literal[
    "empty",
    "no_json_object",
    "invalid_json",
    "missing_score",
    "missing_reason",
    "score_not_integer",
    "score_out_of_range",
    "reason_not_string",
    "ambiguous",
]

SCORE_MIN: Final[int] = 1
SCORE_MAX: Final[int] = 10

# Reasoning judges think first; only what follows their first closing tag is the answer.
_THINK_END: Final[str] = "</think>"
# A ```json fenced block (the format the prompt asks for); the body is matched lazily so two fences
# in one reply stay two blocks.
_JSON_FENCE: Final[re.Pattern[str]] = re.compile(
    r"```[ \t]*json[ \t]*\r?\n?(.*?)```", re.DOTALL | re.IGNORECASE
)
# What a "score" key looks like when the object around it did not decode.
_SCORE_KEY_TEXT: Final[tuple[str, ...]] = ('"score"', "'score'")


@dataclass(frozen=True)
class JudgeVerdict:
    """A valid judge reply.

    Attributes:
        score: An integer from 1 to 10.
        reason: The judge's justification.
    """

    score: int
    reason: str


@dataclass(frozen=True)
class JudgeParseFailure:
    """A judge reply that does not yield a verdict.

    Attributes:
        raw: The full reply text, unchanged.
        why: A short code: "empty", "no_json_object", "invalid_json", "missing_score",
            "missing_reason", "score_not_integer", "score_out_of_range", "reason_not_string" or
            "ambiguous".
        detail: One human-readable sentence.
    """

    raw: str
    why: FailureCode
    detail: str


@dataclass(slots=True)
class _Object:
    """One JSON object decoded from the reply: its value, its span, and any repeated keys."""

    value: dict[str, Any]
    start: int
    end: int
    repeated: frozenset[str]
    fenced: bool = False


class _PairsDict(dict[str, Any]):
    # Remembers which keys occurred more than once (json keeps the last silently).
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


def _reject_constant(name: str) -> Any:
    # NaN / Infinity are Python's extension, not JSON.
    raise ValueError(f"{name} is not JSON")


_DECODER: Final[json.JSONDecoder] = json.JSONDecoder(
    object_pairs_hook=_pairs_hook, parse_constant=_reject_constant
)


def _decode_objects(text: str) -> list[_Object]:
    """Every top-level JSON object in ``text``, left to right.

    Scanning resumes after a decoded object, so objects nested inside one are not reported again.
    """
    found: list[_Object] = []
    pos = text.find("{")
    while pos != -1:
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except ValueError:  # JSONDecodeError, a rejected constant, an over-long integer
            pos = text.find("{", pos + 1)
            continue
        repeated = value.repeated if isinstance(value, _PairsDict) else frozenset()
        found.append(_Object(value, pos, end, repeated))
        pos = text.find("{", end)
    return found


def _mark_fenced(text: str, objects: list[_Object]) -> None:
    fences = [(m.start(1), m.end(1)) for m in _JSON_FENCE.finditer(text)]
    for obj in objects:
        obj.fenced = any(lo <= obj.start and obj.end <= hi for lo, hi in fences)


def _outside(text: str, objects: list[_Object]) -> str:
    """``text`` with the decoded objects cut out."""
    parts, last = [], 0
    for obj in objects:
        parts.append(text[last : obj.start])
        last = obj.end
    parts.append(text[last:])
    return "".join(parts)


def _verdict(raw: str, value: dict[str, Any]) -> JudgeVerdict | JudgeParseFailure:
    score, reason = value["score"], value["reason"]
    # bool is a subclass of int in Python, but `true` is not a score.
    if isinstance(score, bool) or not isinstance(score, int | float):
        return JudgeParseFailure(
            raw,
            "score_not_integer",
            f"score must be a JSON integer, got {json.dumps(score, ensure_ascii=False)}",
        )
    if isinstance(score, float):
        if not score.is_integer():
            return JudgeParseFailure(raw, "score_not_integer", f"score must be a whole number, got {score!r}")
        score = int(score)
    if not SCORE_MIN <= score <= SCORE_MAX:
        return JudgeParseFailure(
            raw, "score_out_of_range", f"score must be between {SCORE_MIN} and {SCORE_MAX}, got {score}"
        )
    if not isinstance(reason, str):
        return JudgeParseFailure(
            raw, "reason_not_string", f"reason must be a JSON string, got {type(reason).__name__}"
        )
    return JudgeVerdict(score=score, reason=reason)


def _key(obj: _Object) -> str:
    # Two candidates agree when their score and reason are the same JSON values.
    return json.dumps([obj.value["score"], obj.value["reason"]], sort_keys=True)


def _after_thoughts(text: str) -> tuple[str, bool]:
    """The reply after the reasoning: the text following the first ``</think>`` that is not inside
    a JSON object (a tag within a JSON string — say, a reason quoting the candidate — is data).

    Returns:
        ``(text, cut)``; ``cut`` is False when no such tag exists and the text is unchanged.
    """
    if _THINK_END not in text:
        return text, False
    spans = [(o.start, o.end) for o in _decode_objects(text)]
    pos = text.find(_THINK_END)
    while pos != -1:
        if not any(start <= pos < end for start, end in spans):
            return text[pos + len(_THINK_END) :], True
        pos = text.find(_THINK_END, pos + 1)
    return text, False


def parse_judge_reply(text: str) -> JudgeVerdict | JudgeParseFailure:
    """Parse a judge's reply into a verdict, strictly.

    Rules: thoughts come before the verdict — with a ``</think>`` outside any JSON object, only the
    text after the first such tag counts (a ``</think>`` inside a JSON string is data). JSON objects
    are found anywhere (bare, in a ```json fence, wrapped in prose); those with a ``"score"`` key
    are candidates, and those with both ``"score"`` and ``"reason"`` win over ones lacking a reason
    (e.g. a quoted ``{"score": 10}`` from the candidate response). Several differing complete
    candidates are resolved only when exactly one of them sits inside a ```json fence; otherwise
    the reply is ambiguous. ``score`` must be an integer 1..10 (``7.0`` counts as 7; ``"7"``,
    ``7.5``, ``true`` and ``null`` do not); ``reason`` must be a string; other keys are ignored.

    Args:
        text: The judge's full reply.

    Returns:
        A :class:`JudgeVerdict`, or a :class:`JudgeParseFailure` whose ``why`` names the rule broken.
    """
    raw = text
    text, cut = _after_thoughts(text)
    if not text.strip():
        where = " after </think>" if cut else ""
        return JudgeParseFailure(raw, "empty", f"the reply has no text{where}")

    objects = _decode_objects(text)
    candidates = [o for o in objects if "score" in o.value]
    if not candidates:
        if any(k in _outside(text, objects) for k in _SCORE_KEY_TEXT):
            return JudgeParseFailure(
                raw,
                "invalid_json",
                "the reply mentions a score key but holds no valid JSON object with it "
                "(strict JSON: double quotes, no trailing commas)",
            )
        if objects:
            keys = ", ".join(sorted({k for o in objects for k in o.value})) or "none"
            return JudgeParseFailure(
                raw, "missing_score", f"no JSON object has a 'score' key (keys seen: {keys})"
            )
        return JudgeParseFailure(raw, "no_json_object", "the reply holds no JSON object")

    complete = [o for o in candidates if "reason" in o.value]
    if not complete:
        return JudgeParseFailure(raw, "missing_reason", "the JSON object with a 'score' has no 'reason' key")

    for obj in complete:
        if obj.repeated & {"score", "reason"}:
            keys = " and ".join(repr(k) for k in sorted(obj.repeated & {"score", "reason"}))
            return JudgeParseFailure(raw, "ambiguous", f"a JSON object repeats the key {keys}")

    distinct: dict[str, _Object] = {}
    fenced_keys: set[str] = set()
    _mark_fenced(text, complete)
    for obj in complete:
        distinct.setdefault(_key(obj), obj)
        if obj.fenced:
            fenced_keys.add(_key(obj))
    if len(distinct) == 1:
        chosen = next(iter(distinct.values()))
    elif len(fenced_keys) == 1:
        chosen = distinct[next(iter(fenced_keys))]
    else:
        scores = ", ".join(json.dumps(o.value["score"]) for o in distinct.values())
        return JudgeParseFailure(
            raw,
            "ambiguous",
            f"{len(distinct)} different score objects (scores {scores}) and no single fenced one",
        )
    return _verdict(raw, chosen.value)
