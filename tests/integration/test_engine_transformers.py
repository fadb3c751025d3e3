"""The transformers engine with the real SmolLM2-135M-Instruct model on CPU.

Asserts mechanics only (status, token counts, determinism, isolation of failures, schema-valid
judge replies under constrained decoding), never the quality of what the 135M model writes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from wbray.config import JudgeConfig, SamplingParams, TransformersEngineConfig
from wbray.engines import ChatRequest, Completion, create_engine
from wbray.engines._smollm2 import smollm2_model_dir
from wbray.engines._transformers import TransformersEngine
from wbray.errors import WbrayError
from wbray.judge import JudgeVerdict, parse_judge_reply

from .conftest import model_cache

pytestmark = pytest.mark.integration

PROMPTS = ["Say hello in one short sentence.", "Name three colours.", "What is the capital of France?"]

JUDGE_PROMPT = """You are an expert evaluator of writing. Score the response to the writing request below
against one criterion, on a scale from 1 to 10.

[Writing request]
Write a two-sentence product description for a stainless steel water bottle.

[Response]
{response}

[Criterion]
Name: Accuracy and relevance
Description: The description states true, relevant facts about the product and stays on topic.
Scoring: 1-2 off-topic or false; 3-4 mostly generic; 5-6 adequate; 7-8 specific and accurate; 9-10 vivid,
accurate and persuasive.

Return the result as JSON in exactly this format, and nothing else:
{{"score": <an integer from 1 to 10>, "reason": "<one short sentence>"}}"""

RESPONSES = [
    "Keeps drinks cold for 24 hours and hot for 12. Made of 18/8 stainless steel, it fits any cup holder.",
    "This bottle is a bottle. It holds water.",
    "BEST BOTTLE IN THE WORLD!!! Made of pure gold and it can fly.",
    "A leak-proof, double-walled steel bottle that goes from the gym to the office without a drip.",
]


def _chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _run(
    engine: TransformersEngine, requests: Sequence[ChatRequest], sampling: SamplingParams
) -> list[Completion]:
    return asyncio.run(engine.generate(requests, sampling))


@pytest.fixture(scope="module")
def engine(smollm2_dir: Path) -> Iterator[TransformersEngine]:
    # dtype auto: bf16 where the CPU has bf16 instructions, float32 elsewhere (bf16 is ~20x slower there).
    built = create_engine(TransformersEngineConfig(model=str(smollm2_dir), dtype="auto", batch_size=2))
    assert isinstance(built, TransformersEngine)
    yield built
    asyncio.run(built.close())


def test_smollm2_model_dir_is_idempotent(smollm2_dir: Path) -> None:
    started = time.perf_counter()
    again = smollm2_model_dir(model_cache())
    assert again == smollm2_dir
    assert time.perf_counter() - started < 1.0
    assert {"config.json", "model.safetensors", "tokenizer.json", "wbray-source.json"} <= {
        p.name for p in smollm2_dir.iterdir()
    }


def test_greedy_generation_is_complete_and_deterministic(engine: TransformersEngine) -> None:
    requests = [ChatRequest(_chat(p), request_id=str(i)) for i, p in enumerate(PROMPTS)]
    greedy = SamplingParams(temperature=0, max_tokens=20)
    first = _run(engine, requests, greedy)
    assert len(first) == len(PROMPTS)
    for completion in first:
        assert completion.status == "ok", completion.error
        assert completion.text
        assert completion.prompt_tokens > 0
        assert 0 < completion.completion_tokens <= 20
        assert completion.finish_reason in {"stop", "length"}
        assert completion.latency_s > 0
    second = _run(engine, requests, greedy)
    assert [c.text for c in second] == [c.text for c in first]


def test_seeded_sampling_is_reproducible(engine: TransformersEngine) -> None:
    requests = [ChatRequest(_chat(p)) for p in PROMPTS[:2]]
    sampling = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=16, seed=7)
    first = _run(engine, requests, sampling)
    assert all(c.status == "ok" for c in first)
    assert [c.text for c in _run(engine, requests, sampling)] == [c.text for c in first]


def test_over_long_prompt_fails_alone(engine: TransformersEngine) -> None:
    long_text = "The quick brown fox jumps over the lazy dog. " * 1000  # about 10,000 tokens
    requests = [ChatRequest(_chat(PROMPTS[0])), ChatRequest(_chat(long_text)), ChatRequest(_chat(PROMPTS[1]))]
    short, too_long, other = _run(engine, requests, SamplingParams(temperature=0, max_tokens=8))
    assert too_long.status == "failed"
    assert too_long.error is not None
    assert "model context is 8192" in too_long.error
    assert int(too_long.error.split()[2]) > 8192  # "prompt has N tokens, ..."
    assert short.status == "ok" and short.text
    assert other.status == "ok" and other.text


def test_a_failing_chunk_fails_only_its_requests(
    engine: TransformersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = engine._model
    assert model is not None
    real_generate = model.generate
    calls = []

    def flaky_generate(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected out of memory")
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", flaky_generate)
    requests = [ChatRequest(_chat(p)) for p in PROMPTS]  # batch_size 2: chunks [0, 1] and [2]
    first, second, third = _run(engine, requests, SamplingParams(temperature=0, max_tokens=4))
    assert first.status == second.status == "failed"
    assert first.error == "RuntimeError: injected out of memory"
    assert third.status == "ok" and third.text
    assert _run(engine, [], SamplingParams(max_tokens=4)) == []


def _judge_requests(schema: dict[str, object] | None) -> list[ChatRequest]:
    return [ChatRequest(_chat(JUDGE_PROMPT.format(response=r)), json_schema=schema) for r in RESPONSES]


JUDGE_SAMPLING = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=96)


def _assert_valid_verdict(completion: Completion, max_chars: int) -> None:
    assert completion.status == "ok", completion.error
    assert completion.finish_reason == "stop"
    assert completion.text is not None
    reply = json.loads(completion.text)
    assert set(reply) == {"score", "reason"}
    assert type(reply["score"]) is int and 1 <= reply["score"] <= 10
    assert isinstance(reply["reason"], str) and len(reply["reason"]) <= max_chars
    assert isinstance(parse_judge_reply(completion.text), JudgeVerdict)


def test_constrained_judge_replies_always_parse(engine: TransformersEngine) -> None:
    schema = JudgeConfig(reason_max_chars=60).reply_schema()
    for completion in _run(engine, _judge_requests(schema), JUDGE_SAMPLING):
        _assert_valid_verdict(completion, 60)


def test_unconstrained_judge_prompts_run(engine: TransformersEngine) -> None:
    # The tiny model's free-form replies usually do not parse; only the mechanics are asserted (and
    # fewer tokens: free replies run to the cap).
    completions = _run(engine, _judge_requests(None), JUDGE_SAMPLING.merged(SamplingParams(max_tokens=48)))
    assert all(c.status == "ok" and c.text is not None for c in completions)


def test_mixed_batch_keeps_each_request_in_place(engine: TransformersEngine) -> None:
    # 13 fixed tokens + at most 20 ASCII characters fit in 40 new tokens.
    schema = JudgeConfig(reason_max_chars=20).reply_schema()
    free = _judge_requests(None)
    constrained = _judge_requests(schema)
    requests = [free[0], constrained[1], free[2], constrained[3]]
    completions = _run(engine, requests, SamplingParams(temperature=1.0, top_p=0.95, max_tokens=40, seed=3))
    assert all(c.status == "ok" for c in completions)
    _assert_valid_verdict(completions[1], 20)
    _assert_valid_verdict(completions[3], 20)


def test_generate_after_close_raises(smollm2_dir: Path) -> None:
    engine = create_engine(TransformersEngineConfig(model=str(smollm2_dir), dtype="auto"))
    assert (
        asyncio.run(engine.generate([ChatRequest(_chat("Hi"))], SamplingParams(max_tokens=4)))[0].status
        == "ok"
    )
    asyncio.run(engine.close())
    with pytest.raises(WbrayError, match="after close"):
        asyncio.run(engine.generate([ChatRequest(_chat("Hi"))], SamplingParams(max_tokens=4)))


def test_prefix_cache_reuses_shared_prompt_starts_and_replies_do_not_depend_on_it(smollm2_dir: Path) -> None:
    from wbray.dataset import load_benchmark
    from wbray.prompts import load_judge_template, render_judge_messages

    # Real judge prompts: one query and criterion, three candidates' answers. Everything before
    # the answer (instructions, criterion, query) is the same in all three.
    query = load_benchmark("example").queries[0]
    template = load_judge_template(None)
    criterion = dict(query.checklist[0].item)
    requests = [
        ChatRequest(render_judge_messages(template, query.query, criterion, answer))
        for answer in ("A short answer.", "Another, quite different answer.", "A third one.")
    ]
    sampling = SamplingParams(temperature=0, max_tokens=6)
    engine = create_engine(TransformersEngineConfig(model=str(smollm2_dir), batch_size=1))
    assert isinstance(engine, TransformersEngine)
    try:
        cold = _run(engine, requests, sampling)
        reused, computed = engine.prefix_stats
        prompt_tokens = sum(c.prompt_tokens for c in cold)
        assert reused + computed == prompt_tokens
        # The second and third prompts take the shared start (several 128-token blocks) from the store.
        assert reused >= 2 * 4 * 128, engine.prefix_stats
        warm = _run(engine, requests, sampling)
        reused_again = engine.prefix_stats[0] - reused
        # Asked again: every full block of every prompt is found, and the replies are the same ones.
        assert reused_again == sum((c.prompt_tokens - 1) // 128 * 128 for c in cold)
        assert [c.text for c in warm] == [c.text for c in cold]
        assert all(c.status == "ok" and c.text for c in cold)
    finally:
        asyncio.run(engine.close())
