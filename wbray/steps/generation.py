"""The generation step: which (model, query, sample) rows exist, and how a batch of them is answered.

Pure logic over an :class:`~wbray.engines.Engine`; pipeline stages drive :class:`GenerationTask`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from wbray.config import CandidateConfig, GenerationConfig, SamplingParams, content_hash
from wbray.engines import ChatRequest, Completion, Engine
from wbray.prompts import render_generation_messages
from wbray.records import Query
from wbray.steps._common import now, require_columns
from wbray.steps._task import run_task

#: Columns a generation row carries into the step.
GENERATION_INPUT = ("row_id", "model", "index", "sample", "messages_json", "data_version")
#: Columns the step adds.
GENERATION_OUTPUT = (
    "response",
    "status",
    "error",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "created_at",
)


def candidate_sampling(candidate: CandidateConfig, generation: GenerationConfig) -> SamplingParams:
    """The sampling a candidate generates with: the generation defaults, then its own overrides."""
    return generation.sampling.merged(candidate.sampling)


def candidate_system_prompt(candidate: CandidateConfig, generation: GenerationConfig) -> str | None:
    """The system prompt a candidate generates with: its own, else the generation default."""
    return candidate.system_prompt if candidate.system_prompt is not None else generation.system_prompt


def generation_identity(
    candidate: CandidateConfig, generation: GenerationConfig, served: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What names a candidate's answers: every result-changing field of the candidate (by exclusion,
    see ``wbray.config._Identified``) with its *effective* sampling and system prompt, plus what the
    endpoint said it serves (``served``) for served engines."""
    ident = candidate.identity()
    ident["sampling"] = candidate_sampling(candidate, generation).identity()
    ident["system_prompt"] = candidate_system_prompt(candidate, generation)
    if served:
        ident["engine"] = {**ident["engine"], "served": dict(served)}
    return ident


def generation_rows(
    queries: Sequence[Query],
    candidate: CandidateConfig,
    generation: GenerationConfig,
    data_version: str,
    served: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per (query, sample) for ``candidate``, each with a content-derived ``row_id``.

    The id hashes what changes the answer (:func:`generation_identity`), the data version, the
    query index and the sample number — nothing else (not batch sizes, not concurrency), so a
    re-run recognises finished work.
    """
    base = {
        "kind": "generation",
        "candidate": generation_identity(candidate, generation, served),
        "data": data_version,
    }
    system = candidate_system_prompt(candidate, generation)
    rows = []
    for q in queries:
        messages = render_generation_messages(q.query, system)
        for sample in range(generation.samples):
            rows.append(
                {
                    "row_id": content_hash({**base, "index": q.index, "sample": sample}),
                    "model": candidate.name,
                    "index": q.index,
                    "sample": sample,
                    "messages_json": json.dumps(messages, ensure_ascii=False),
                    "data_version": data_version,
                }
            )
    return rows


class GenerationTask:
    """Answer generation rows: one engine call per row (the engine already retried transport
    errors, so a failed generation is a failure row, not asked again)."""

    kind = "generate"
    max_passes = 1

    def __init__(self, sampling: SamplingParams) -> None:
        self.sampling = sampling

    def prepare(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        require_columns(rows, GENERATION_INPUT, "generation")
        return [dict(r) for r in rows]

    def requests(self, rows: Sequence[dict[str, Any]]) -> list[ChatRequest | None]:
        return [
            None
            if "status" in r
            else ChatRequest(messages=json.loads(r["messages_json"]), request_id=r["row_id"])
            for r in rows
        ]

    def absorb(
        self, rows: Sequence[dict[str, Any]], completions: Mapping[int, Completion]
    ) -> list[dict[str, Any]]:
        positions = sorted(completions)
        done = apply_generations([rows[i] for i in positions], [completions[i] for i in positions])
        out = [dict(r) for r in rows]
        for i, row in zip(positions, done, strict=True):
            out[i] = row
        return out

    def finish(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return [dict(r) for r in rows]


async def generate_batch(
    engine: Engine, rows: Sequence[dict[str, Any]], sampling: SamplingParams
) -> list[dict[str, Any]]:
    """Answer a batch of generation rows; every row comes back, failures with status and reason."""
    return await run_task(engine, GenerationTask(sampling), rows)


def apply_generations(
    rows: Sequence[dict[str, Any]], completions: Sequence[Completion]
) -> list[dict[str, Any]]:
    """Merge completions into their generation rows.

    An empty or blank answer is kept as an ok row and judged, as upstream judges whatever text a
    model saved: a model that sometimes answers nothing must score low on those queries, not drop
    them from its mean. Only engine failures (exceptions, timeouts, HTTP errors) are failure rows.
    """
    out = []
    stamp = now()
    for row, c in zip(rows, completions, strict=True):
        ok = c.status == "ok"
        out.append(
            {
                **row,
                "response": (c.text or "") if ok else None,
                "status": c.status,
                "error": c.error,
                "finish_reason": c.finish_reason,
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "latency_s": c.latency_s,
                "created_at": stamp,
            }
        )
    return out
