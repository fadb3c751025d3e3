"""The scoring step: one row per (model, query, criterion, judge, repeat), judged and parsed strictly.

Pure logic over an :class:`~wbray.engines.Engine`; the Ray Data stage is a thin shim over
:func:`score_batch`. A reply that does not parse is asked again a bounded number of times; after
that it is a failure row with the raw text and the reason — never a guessed score, never a zero.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wbray.config import JudgeConfig, content_hash
from wbray.engines import ChatRequest, Completion, Engine
from wbray.judge import JudgeParseFailure, JudgeVerdict, parse_judge_reply
from wbray.prompts import JudgeTemplate, render_judge_messages
from wbray.records import Query
from wbray.steps._common import now, require_columns

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


def judge_identity(judge: JudgeConfig, template: JudgeTemplate) -> dict[str, Any]:
    """What changes a judge's scores (hashed into score row ids)."""
    ident: dict[str, Any] = {
        "judge": judge.name,
        "engine": judge.engine.identity() if judge.engine is not None else None,
        "template": template.version,
        "sampling": judge.sampling.model_dump(),
        "constrained": judge.constrained,
    }
    if judge.constrained:
        ident["reason_max_chars"] = judge.reason_max_chars
    return ident


def scoring_rows(
    generation: dict[str, Any], query: Query, judge: JudgeConfig, template: JudgeTemplate
) -> list[dict[str, Any]]:
    """The scoring rows of one generation row: every criterion of its query, ``judge.repeats`` times."""
    ident = judge_identity(judge, template)
    rows = []
    for crit in query.checklist:
        for repeat in range(judge.repeats):
            rows.append(
                {
                    "row_id": content_hash(
                        {**ident, "gen": generation["row_id"], "criterion": crit.name, "repeat": repeat}
                    ),
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


def judge_messages(row: dict[str, Any], template: JudgeTemplate) -> list[dict[str, str]]:
    """The judge messages of one scoring row."""
    return render_judge_messages(template, row["query"], json.loads(row["criterion_json"]), row["response"])


async def score_batch(
    engine: Engine, rows: Sequence[dict[str, Any]], template: JudgeTemplate, judge: JudgeConfig
) -> list[dict[str, Any]]:
    """Judge a batch of scoring rows; every row comes back with status, score or reason for failure."""
    require_columns(rows, SCORING_INPUT, "scoring")
    schema = judge.reply_schema() if judge.constrained else None
    results = [_fresh_result() for _ in rows]
    pending: list[int] = []
    for i, row in enumerate(rows):
        if row["gen_status"] != "ok" or row["response"] is None:
            results[i]["error"] = f"generation failed: {row['gen_error'] or 'no response'}"
        else:
            pending.append(i)
    messages = {i: judge_messages(rows[i], template) for i in pending}
    for _attempt in range(judge.max_reasks + 1):
        if not pending:
            break
        requests = [
            ChatRequest(messages=messages[i], json_schema=schema, request_id=rows[i]["row_id"])
            for i in pending
        ]
        completions = await engine.generate(requests, judge.sampling)
        pending = [i for i, c in zip(pending, completions, strict=True) if _absorb(results[i], c)]
    return _finish(rows, results)


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


def _absorb(res: dict[str, Any], c: Completion) -> bool:
    """Fold one judge completion into a result; True when the reply did not parse (worth re-asking)."""
    res["attempts"] += 1
    res["prompt_tokens"] += c.prompt_tokens
    res["completion_tokens"] += c.completion_tokens
    res["latency_s"] += c.latency_s
    res["raw"] = c.text
    if c.status != "ok":
        # The engine already retried transport errors; asking again would not help.
        res["error"] = f"engine: {c.error}"
        return False
    parsed = parse_judge_reply(c.text or "")
    if isinstance(parsed, JudgeVerdict):
        res.update(score=float(parsed.score), reason=parsed.reason, status="ok", error=None)
        return False
    assert isinstance(parsed, JudgeParseFailure)
    res["error"] = f"unparseable reply ({parsed.why}): {parsed.detail}"
    return True


def apply_judgements(
    rows: Sequence[dict[str, Any]], completions: Sequence[Completion | None]
) -> list[dict[str, Any]]:
    """Single-pass scoring from ready completions (processor backends such as vLLM; no re-asks).

    ``None`` marks a row that was not sent to the judge because its generation failed.
    """
    results = []
    for row, c in zip(rows, completions, strict=True):
        res = _fresh_result()
        if c is None:
            res["error"] = f"generation failed: {row.get('gen_error') or 'no response'}"
        else:
            _absorb(res, c)
        results.append(res)
    return _finish(rows, results)


def _finish(rows: Sequence[dict[str, Any]], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stamp = now()
    out = []
    for row, res in zip(rows, results, strict=True):
        kept = {k: v for k, v in row.items() if k not in _BULKY}
        out.append({**kept, **res, "created_at": stamp})
    return out
