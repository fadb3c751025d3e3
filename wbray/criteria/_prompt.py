"""The criteria writer's prompt and the JSON schema its reply is asked in.

wbray's own wording (the paper describes its criteria prompt but the official repository ships none).
The reply is one JSON object ``{"criteria": [5 items]}``, each item exactly the benchmark's checklist
item: ``name``, ``criteria_description`` and the five score bands ``"1-2"`` .. ``"9-10"``. The schema
bounds every string, so a constrained backend (xgrammar, vLLM structured outputs, an API's
``response_format``) always returns parseable JSON within a known token budget; uniqueness of names
and non-blank texts cannot be said in a grammar and are checked after parsing (``_parse``).
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from wbray.records import CRITERION_KEYS

#: Criteria per query, as in every WritingBench query.
CRITERIA_COUNT: Final[int] = 5
#: The score bands, lowest first (the checklist keys after name and description).
BANDS: Final[tuple[str, ...]] = CRITERION_KEYS[2:]
#: The reply's top-level key.
REPLY_KEY: Final[str] = "criteria"

SYSTEM: Final[str] = (
    "You design grading rubrics for writing tasks. Each rubric you write is handed to a separate "
    "grader, who reads one response to the task and gives it a score from 1 to 10 on each of your "
    "criteria in turn, using only your wording to decide."
)

USER: Final[str] = """A writing task ({domain1} / {domain2}):
<task>
{query}
</task>

Write exactly {count} criteria for grading responses to this task. Each criterion must be specific to this \
task: it checks something the task asks for or clearly implies (required content and facts, audience and \
purpose, structure, tone, format, length), not writing quality in general. The {count} criteria cover \
different aspects and have different names.

For each criterion give:
- "name": a short title of a few words;
- "criteria_description": one or two sentences saying what the criterion checks in a response;
- "1-2", "3-4", "5-6", "7-8", "9-10": what a response that earns a score in that band looks like, from \
failing (1-2) to excellent (9-10), concrete enough that two graders would agree.

Write every text in {language}. Reply with one JSON object and nothing else, in this shape:
{{"criteria": [{{"name": "...", "criteria_description": "...", "1-2": "...", "3-4": "...", "5-6": "...", \
"7-8": "...", "9-10": "..."}}, ... {count} objects in all]}}"""

#: Sent after a rejected reply (with that reply as the assistant turn before it).
RETRY: Final[str] = (
    "That reply cannot be used: {problem}. Reply again with the complete JSON object only, "
    "{count} criteria with different names, every field a non-empty string."
)

_LANGUAGE: Final[dict[str, str]] = {"en": "English", "zh": "Simplified Chinese"}


def prompt_version() -> str:
    """``criteria-`` plus 12 hex digits of the prompt texts' sha256 (recorded with every output)."""
    blob = "\x00".join((SYSTEM, USER, RETRY)).encode("utf-8")
    return f"criteria-{hashlib.sha256(blob).hexdigest()[:12]}"


def criteria_schema(name_max_chars: int, text_max_chars: int) -> dict[str, Any]:
    """The JSON schema of a criteria reply: exactly :data:`CRITERIA_COUNT` checklist items.

    Args:
        name_max_chars: Longest name allowed.
        text_max_chars: Longest description or band text allowed.
    """

    def text(limit: int) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": limit}

    item = {
        "type": "object",
        # Properties in checklist order: grammar-constrained backends emit them in this order.
        "properties": {k: text(name_max_chars if k == "name" else text_max_chars) for k in CRITERION_KEYS},
        "required": list(CRITERION_KEYS),
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            REPLY_KEY: {
                "type": "array",
                "items": item,
                "minItems": CRITERIA_COUNT,
                "maxItems": CRITERIA_COUNT,
            }
        },
        "required": [REPLY_KEY],
        "additionalProperties": False,
    }


def render_criteria_messages(
    query: str, domain1: str, domain2: str, lang: str, retry: tuple[str, str] | None = None
) -> list[dict[str, str]]:
    """The criteria writer's messages for one query.

    Args:
        query: The writing task.
        domain1: Its primary domain (context for the writer).
        domain2: Its subdomain.
        lang: ``"en"`` or ``"zh"``: the language the criteria are written in.
        retry: ``(previous reply, what was wrong with it)`` when asking again.
    """
    user = USER.format(
        domain1=domain1, domain2=domain2, query=query, count=CRITERIA_COUNT, language=_LANGUAGE[lang]
    )
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    if retry is not None:
        previous, problem = retry
        messages += [
            {"role": "assistant", "content": previous},
            {"role": "user", "content": RETRY.format(problem=problem, count=CRITERIA_COUNT)},
        ]
    return messages
