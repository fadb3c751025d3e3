"""The generation step: which (model, query, sample) rows exist, and how a batch of them is answered.

Pure logic over an :class:`~wbray.engines.Engine`; the Ray Data stage is a thin shim over
:func:`generate_batch`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wbray.config import CandidateConfig, GenerationConfig, SamplingParams, content_hash
from wbray.engines import ChatRequest, Completion, Engine
from wbray.prompts import render_generation_messages
from wbray.records import Query
from wbray.steps._common import now, require_columns

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


def generation_rows(
    queries: Sequence[Query], candidate: CandidateConfig, generation: GenerationConfig, data_version: str
) -> list[dict[str, Any]]:
    """One row per (query, sample) for ``candidate``, each with a content-derived ``row_id``.

    The id hashes what changes the answer — model identity, data version, query index, sample
    number, system prompt and sampling — and nothing else (not batch sizes, not concurrency), so a
    re-run recognises finished work.
    """
    sampling = candidate_sampling(candidate, generation)
    system = candidate.system_prompt if candidate.system_prompt is not None else generation.system_prompt
    base = {
        "kind": "generation",
        "model": candidate.name,
        "engine": candidate.engine.identity(),
        "data": data_version,
        "system": system,
        "sampling": sampling.model_dump(),
    }
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


async def generate_batch(
    engine: Engine, rows: Sequence[dict[str, Any]], sampling: SamplingParams
) -> list[dict[str, Any]]:
    """Answer a batch of generation rows; every row comes back, failures with status and reason."""
    require_columns(rows, GENERATION_INPUT, "generation")
    requests = [ChatRequest(messages=json.loads(r["messages_json"]), request_id=r["row_id"]) for r in rows]
    return apply_generations(rows, await engine.generate(requests, sampling))


def apply_generations(
    rows: Sequence[dict[str, Any]], completions: Sequence[Completion]
) -> list[dict[str, Any]]:
    """Merge completions into their generation rows (also used by processor backends such as vLLM)."""
    out = []
    stamp = now()
    for row, c in zip(rows, completions, strict=True):
        text = c.text if c.status == "ok" else None
        status, error = c.status, c.error
        if status == "ok" and not (text or "").strip():
            # An empty answer cannot be judged; keep it as a failure row rather than score it.
            status, error = "failed", "empty response"
        out.append(
            {
                **row,
                "response": text,
                "status": status,
                "error": error,
                "finish_reason": c.finish_reason,
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "latency_s": c.latency_s,
                "created_at": stamp,
            }
        )
    return out
