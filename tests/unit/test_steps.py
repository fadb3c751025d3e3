"""The per-batch steps, with a scripted engine that injects judge faults (no Ray, no model)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence

from wbray.config import (
    CandidateConfig,
    GenerationConfig,
    JudgeConfig,
    SamplingParams,
    TransformersEngineConfig,
)
from wbray.engines import ChatRequest, Completion
from wbray.prompts import load_judge_template
from wbray.records import Criterion, Query
from wbray.steps import generate_batch, generation_rows, score_batch, scoring_rows

QUERY = Query(
    index=7,
    domain1="Education",
    domain2="Lesson Plan",
    query="Write a lesson plan.",
    checklist=(
        Criterion("Clarity", {"name": "Clarity", "criteria_description": "clear"}),
        Criterion("Structure", {"name": "Structure", "criteria_description": "structured"}),
    ),
    lang="en",
)


class ScriptedEngine:
    """Answers from a script: a function of (request, call number) -> Completion. Records calls."""

    model_id = "scripted"

    def __init__(self, script: Callable[[ChatRequest, int], Completion]) -> None:
        self.script = script
        self.calls: list[list[ChatRequest]] = []

    async def generate(self, requests: Sequence[ChatRequest], sampling: SamplingParams) -> list[Completion]:
        self.calls.append(list(requests))
        return [self.script(r, len(self.calls)) for r in requests]

    async def close(self) -> None:
        return None


def _candidate(**kw: object) -> CandidateConfig:
    return CandidateConfig(name="m", engine=TransformersEngineConfig(**kw))  # type: ignore[arg-type]


def test_generation_row_ids_hash_what_changes_results() -> None:
    gen = GenerationConfig()
    a = generation_rows([QUERY], _candidate(), gen, "v1")
    assert a == generation_rows([QUERY], _candidate(), gen, "v1")
    assert a[0]["row_id"] == generation_rows([QUERY], _candidate(batch_size=32), gen, "v1")[0]["row_id"]
    assert a[0]["row_id"] != generation_rows([QUERY], _candidate(), gen, "v2")[0]["row_id"]
    hot = GenerationConfig(sampling=SamplingParams(temperature=1.3))
    assert a[0]["row_id"] != generation_rows([QUERY], _candidate(), hot, "v1")[0]["row_id"]
    two = generation_rows([QUERY], _candidate(), GenerationConfig(samples=2), "v1")
    assert len({r["row_id"] for r in two}) == 2
    assert json.loads(a[0]["messages_json"]) == [{"role": "user", "content": "Write a lesson plan."}]


def test_empty_answer_is_judged_and_engine_error_is_a_failure_row() -> None:
    # Upstream judges whatever text was saved (evaluate_benchmark.py sends the stored response
    # as is), so an empty answer gets low scores instead of leaving the mean.
    rows = generation_rows([QUERY], _candidate(), GenerationConfig(), "v1")
    engine = ScriptedEngine(lambda r, n: Completion(text="   ", completion_tokens=3))
    (out,) = asyncio.run(generate_batch(engine, rows, SamplingParams()))
    assert out["status"] == "ok" and out["error"] is None and out["response"] == "   "
    (none,) = asyncio.run(
        generate_batch(ScriptedEngine(lambda r, n: Completion(text=None)), rows, SamplingParams())
    )
    assert none["status"] == "ok" and none["response"] == ""
    judge = JudgeConfig()
    template = load_judge_template(None, "builtin")
    judged = ScriptedEngine(lambda r, n: Completion(text='{"score": 1, "reason": "empty"}'))
    scored = asyncio.run(score_batch(judged, scoring_rows(out, QUERY, judge, template), template, judge))
    assert [r["status"] for r in scored] == ["ok", "ok"] and [r["score"] for r in scored] == [1.0, 1.0]
    assert "Write a lesson plan." in judged.calls[0][0].messages[-1]["content"]
    failed = ScriptedEngine(lambda r, n: Completion.failed("timeout after 60 s"))
    (err,) = asyncio.run(generate_batch(failed, rows, SamplingParams()))
    assert err["status"] == "failed" and err["response"] is None and err["error"] == "timeout after 60 s"


def _score_rows(
    judge: JudgeConfig, response: str | None = "An answer.", gen_status: str = "ok"
) -> list[dict]:
    template = load_judge_template(None, "builtin")
    gen = {
        "row_id": "g1",
        "model": "m",
        "index": 7,
        "response": response,
        "status": gen_status,
        "error": None,
    }
    if gen_status != "ok":
        gen["error"] = "timeout after 60 s"
    return scoring_rows(gen, QUERY, judge, template)


def test_reask_then_success_and_bounded_failure() -> None:
    judge = JudgeConfig(max_reasks=2)
    template = load_judge_template(None, "builtin")

    def script(req: ChatRequest, call: int) -> Completion:
        # "Clarity" parses on the second call; "Structure" never parses.
        clarity = "'name': 'Clarity'" in req.messages[-1]["content"]
        if clarity and call >= 2:
            return Completion(text='{"score": 6, "reason": "fine"}', prompt_tokens=10, completion_tokens=5)
        return Completion(text="I think it deserves a {score: 11", prompt_tokens=10, completion_tokens=5)

    engine = ScriptedEngine(script)
    rows = asyncio.run(score_batch(engine, _score_rows(judge), template, judge))
    by = {r["criterion"]: r for r in rows}
    assert (
        by["Clarity"]["status"] == "ok" and by["Clarity"]["score"] == 6.0 and by["Clarity"]["attempts"] == 2
    )
    bad = by["Structure"]
    assert bad["status"] == "failed" and bad["score"] is None  # never a guessed score, never zero
    assert bad["attempts"] == 3 and bad["raw"] == "I think it deserves a {score: 11"
    assert bad["error"].startswith("unparseable reply (")
    assert bad["prompt_tokens"] == 30
    assert [len(c) for c in engine.calls] == [2, 2, 1]  # only unparsed rows are asked again
    assert "query" not in bad and "response" not in bad  # bulky inputs are not stored with scores


def test_engine_failure_and_failed_generation_are_not_reasked() -> None:
    judge = JudgeConfig(max_reasks=3)
    template = load_judge_template(None, "builtin")
    engine = ScriptedEngine(lambda r, n: Completion.failed("http 503 after 4 retries"))
    rows = asyncio.run(score_batch(engine, _score_rows(judge), template, judge))
    assert all(r["status"] == "failed" and r["error"] == "engine: http 503 after 4 retries" for r in rows)
    assert len(engine.calls) == 1
    engine = ScriptedEngine(lambda r, n: Completion(text='{"score": 9, "reason": "x"}'))
    rows = asyncio.run(score_batch(engine, _score_rows(judge, None, "failed"), template, judge))
    assert engine.calls == []
    assert all(r["error"] == "generation failed: timeout after 60 s" for r in rows)


def test_constrained_judge_sends_the_schema_and_ids_change() -> None:
    free, strict = JudgeConfig(), JudgeConfig(constrained=True, reason_max_chars=50)
    template = load_judge_template(None, "builtin")
    engine = ScriptedEngine(lambda r, n: Completion(text='{"score": 3, "reason": "meh"}'))
    asyncio.run(score_batch(engine, _score_rows(strict), template, strict))
    schema = engine.calls[0][0].json_schema
    assert schema is not None and schema["properties"]["reason"]["maxLength"] == 50
    assert {r["row_id"] for r in _score_rows(free)}.isdisjoint(r["row_id"] for r in _score_rows(strict))
    assert len({r["row_id"] for r in _score_rows(JudgeConfig(repeats=3))}) == 6
