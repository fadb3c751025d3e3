"""The criteria step as a batch task: every backend (actor pools, the vLLM processor) drives it.

One row per query. A reply that does not validate is asked again, at most ``max_reasks`` times,
with the rejected reply and every problem found in it; after that the row is a failure with the
last problems as its reason and the raw reply — never a repaired or partial checklist.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from wbray.config import SamplingParams
from wbray.criteria._config import CriteriaConfig
from wbray.criteria._parse import CriteriaParseFailure, parse_criteria_reply
from wbray.criteria._prompt import criteria_schema, render_criteria_messages
from wbray.engines import ChatRequest, Completion
from wbray.steps._common import require_columns

#: Columns a criteria row carries into the step.
CRITERIA_INPUT: Final[tuple[str, ...]] = ("key", "query", "domain1", "domain2", "lang")
#: Columns the step adds (``checklist_json`` is the items as a JSON array when ``status`` is ok).
CRITERIA_OUTPUT: Final[tuple[str, ...]] = (
    "checklist_json",
    "status",
    "error",
    "raw",
    "attempts",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
)
#: Status of a row still waiting for a (first or repeated) call.
PENDING: Final[str] = "pending"


class CriteriaTask:
    """Ask a model for five criteria per query, validate strictly, re-ask with the problems."""

    kind = "criteria"

    def __init__(self, config: CriteriaConfig) -> None:
        self.sampling: SamplingParams = config.sampling
        self.max_passes = config.max_reasks + 1
        self.schema = criteria_schema(config.name_max_chars, config.text_max_chars)

    def prepare(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        require_columns(rows, CRITERIA_INPUT, "criteria")
        out = []
        for row in rows:
            if row.get("status") is not None and "attempts" in row:
                out.append(dict(row))  # prepared by an earlier pass (a processor backend)
                continue
            out.append(
                {
                    **row,
                    "checklist_json": None,
                    "status": PENDING,
                    "error": None,
                    "raw": None,
                    "attempts": 0,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "latency_s": 0.0,
                }
            )
        return out

    def messages(self, row: Mapping[str, Any]) -> list[dict[str, str]]:
        """The messages of a row's next call (with the rejected reply and its problems on a re-ask)."""
        asked_before = bool(row.get("attempts")) and row.get("error") is not None
        retry = (str(row["raw"] or ""), str(row["error"])) if asked_before else None
        return render_criteria_messages(
            row["query"], row["domain1"], row["domain2"], row["lang"], retry=retry
        )

    def requests(self, rows: Sequence[dict[str, Any]]) -> list[ChatRequest | None]:
        return [
            ChatRequest(messages=self.messages(r), json_schema=self.schema, request_id=str(r["key"]))
            if r["status"] == PENDING
            else None
            for r in rows
        ]

    def absorb(
        self, rows: Sequence[dict[str, Any]], completions: Mapping[int, Completion]
    ) -> list[dict[str, Any]]:
        out = [dict(r) for r in rows]
        for i, completion in completions.items():
            _absorb(out[i], completion)
        return out

    def finish(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for row in rows:
            row = dict(row)
            if row["status"] == PENDING:
                # Out of passes: the last reply's problems are the reason.
                row["status"] = "failed"
                row["error"] = f"no valid criteria after {row['attempts']} call(s): {row['error']}"
            out.append(row)
        return out


def _absorb(row: dict[str, Any], c: Completion) -> None:
    row["attempts"] = int(row.get("attempts") or 0) + 1
    row["prompt_tokens"] = int(row.get("prompt_tokens") or 0) + c.prompt_tokens
    row["completion_tokens"] = int(row.get("completion_tokens") or 0) + c.completion_tokens
    row["latency_s"] = float(row.get("latency_s") or 0.0) + c.latency_s
    row["raw"] = c.text
    if c.status != "ok":
        # The engine already retried transport errors; asking again would not help.
        row.update(status="failed", error=f"engine: {c.error}")
        return
    parsed = parse_criteria_reply(c.text)
    if isinstance(parsed, CriteriaParseFailure):
        cut = " (the reply was cut off at max_tokens)" if c.finish_reason == "length" else ""
        row.update(status=PENDING, error=f"{parsed.why}{cut}: {parsed.detail}")
        return
    row.update(status="ok", error=None, checklist_json=json.dumps(parsed, ensure_ascii=False))
