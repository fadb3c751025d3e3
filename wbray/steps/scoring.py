"""The scoring step: one row per (model, query, criterion, judge, repeat), judged and parsed strictly.

Pure logic over an :class:`~wbray.engines.Engine`; pipeline stages drive :class:`ScoringTask`. A
reply that does not parse is asked again a bounded number of times; after that it is a failure row
with the raw text and the reason — never a guessed score, never a zero.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from wbray.config import JudgeConfig, content_hash
from wbray.engines import ChatRequest, Completion, Engine
from wbray.judge import JudgeParseFailure, JudgeVerdict, parse_judge_reply
from wbray.prompts import JudgeTemplate, render_judge_messages
from wbray.records import Query
from wbray.steps._common import now, require_columns
from wbray.steps._task import run_task

#: Columns a scoring row carries into the step.
SCORING_INPUT = (
    "row_id",
    "gen_row_id",
    "model",
    "judge",
    "index",
    "criterion",
    "repeat",
    "query",
    "criterion_json",
    "response",
    "gen_status",
    "gen_error",
)
#: Columns the step adds.
SCORING_OUTPUT = (
    "score",
    "reason",
    "raw",
    "status",
    "error",
    "attempts",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "created_at",
)
#: Input columns dropped from the stored result (they are in the benchmark and the generations).
_BULKY = ("query", "criterion_json", "response")


def judge_identity(
    judge: JudgeConfig, template: JudgeTemplate, served: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What names a judge's verdicts: every result-changing field of the judge config (by
    exclusion, see ``wbray.config._Identified``), the prompt version, and what a served engine
    said it serves (``served``)."""
    ident = judge.identity()
    if served and ident.get("engine") is not None:
        ident["engine"] = {**ident["engine"], "served": dict(served)}
    return {"judge": ident, "template": template.version}


def scoring_rows(
    generation: dict[str, Any],
    query: Query,
    judge: JudgeConfig,
    template: JudgeTemplate,
    served: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The scoring rows of one generation row: every criterion of its query, ``judge.repeats`` times."""
    ident = judge_identity(judge, template, served)
    rows = []
    for crit in query.checklist:
        for repeat in range(judge.repeats):
            rows.append(
                {
                    "row_id": score_row_id(ident, generation["row_id"], crit.name, repeat),
                    "gen_row_id": generation["row_id"],
                    "model": generation["model"],
                    "judge": judge.name,
                    "index": query.index,
                    "criterion": crit.name,
                    "repeat": repeat,
                    "prompt_version": template.version,
                    "data_version": generation.get("data_version"),
                    "query": query.query,
                    # JSON keeps the item's key order, so the prompt gets the same repr as upstream.
                    "criterion_json": json.dumps(dict(crit.item), ensure_ascii=False),
                    "response": generation.get("response"),
                    "gen_status": generation.get("status", "ok"),
                    "gen_error": generation.get("error"),
                }
            )
    return rows


def score_row_id(ident: Mapping[str, Any], gen_row_id: str, criterion: str, repeat: int) -> str:
    """The id of one verdict: the judge identity, the answer, the criterion and the repeat number."""
    return content_hash({**ident, "gen": gen_row_id, "criterion": criterion, "repeat": repeat})


def cache_identity(ident: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a judge identity (:func:`judge_identity`) that decides a verdict: everything but
    the judge's name (two names for the same judge share verdicts). The prompt enters the cache
    key as rendered text, so its version is left out too."""
    judge = {k: v for k, v in ident["judge"].items() if k != "name"}
    return {"judge": judge}


def cache_key(identity: Mapping[str, Any], messages: Sequence[Mapping[str, str]], repeat: int) -> str:
    """The judge cache key of one call: judge identity, the exact messages and the repeat number."""
    return content_hash({**identity, "messages": [dict(m) for m in messages], "repeat": repeat}, length=32)


def judge_messages(row: Mapping[str, Any], template: JudgeTemplate) -> list[dict[str, str]]:
    """The judge messages of one scoring row."""
    return render_judge_messages(template, row["query"], json.loads(row["criterion_json"]), row["response"])


#: Status of a scoring row that still waits for a (first or repeated) judge call.
PENDING = "pending"


class ScoringTask:
    """Judge scoring rows, parse strictly, and re-ask a reply that does not parse — at most
    ``judge.max_reasks`` times — before it becomes a failure row with the raw text and the reason.

    Rows whose generation failed (an engine error: no text at all) are failure rows at once and
    never sent; an empty answer is judged like any other text.
    """

    kind = "score"

    def __init__(self, judge: JudgeConfig, template: JudgeTemplate) -> None:
        self.judge = judge
        self.template = template
        self.sampling = judge.sampling
        self.max_passes = judge.max_reasks + 1
        self.schema = judge.reply_schema() if judge.constrained else None

    def prepare(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        require_columns(rows, SCORING_INPUT, "scoring")
        out = []
        for row in rows:
            if "attempts" in row and row.get("status") is not None:
                out.append(dict(row))  # already prepared (a later pass of a processor backend)
                continue
            state = _fresh_result()
            if row["gen_status"] != "ok" or row["response"] is None:
                state["error"] = f"generation failed: {row['gen_error'] or 'no response'}"
            else:
                state["status"] = PENDING
            out.append({**row, **state})
        return out

    def requests(self, rows: Sequence[dict[str, Any]]) -> list[ChatRequest | None]:
        return [
            ChatRequest(
                messages=judge_messages(r, self.template), json_schema=self.schema, request_id=r["row_id"]
            )
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
        stamp = now()
        out = []
        for row in rows:
            kept = {k: v for k, v in row.items() if k not in _BULKY}
            if kept["status"] == PENDING:
                # Out of passes: the last reply's parse failure is the reason.
                kept["status"] = "failed"
            out.append({**kept, "created_at": stamp})
        return out


async def score_batch(
    engine: Engine, rows: Sequence[dict[str, Any]], template: JudgeTemplate, judge: JudgeConfig
) -> list[dict[str, Any]]:
    """Judge a batch of scoring rows; every row comes back with status, score or reason for failure."""
    return await run_task(engine, ScoringTask(judge, template), rows)


def _fresh_result() -> dict[str, Any]:
    return {
        "score": None,
        "reason": None,
        "raw": None,
        "status": "failed",
        "error": None,
        "attempts": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "latency_s": 0.0,
    }


def _absorb(res: dict[str, Any], c: Completion) -> None:
    """Fold one judge completion into a row: ok, failed, or still pending (worth re-asking)."""
    res["attempts"] = int(res.get("attempts") or 0) + 1
    res["prompt_tokens"] = int(res.get("prompt_tokens") or 0) + c.prompt_tokens
    res["completion_tokens"] = int(res.get("completion_tokens") or 0) + c.completion_tokens
    res["latency_s"] = float(res.get("latency_s") or 0.0) + c.latency_s
    res["raw"] = c.text
    if c.status != "ok":
        # The engine already retried transport errors; asking again would not help.
        res.update(status="failed", error=f"engine: {c.error}")
        return
    parsed = parse_judge_reply(c.text or "")
    if isinstance(parsed, JudgeVerdict):
        res.update(score=float(parsed.score), reason=parsed.reason, status="ok", error=None)
        return
    assert isinstance(parsed, JudgeParseFailure)
    res.update(status=PENDING, error=f"unparseable reply ({parsed.why}): {parsed.detail}")
