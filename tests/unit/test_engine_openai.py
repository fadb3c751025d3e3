"""The ``openai`` engine against a real scripted server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from tests.helpers.scripted_openai import (
    Action,
    ScriptedOpenAIServer,
    close_connection,
    malformed,
    reply,
    sleep,
    status,
)
from wbray.config import OpenAIEngineConfig, SamplingParams
from wbray.engines._base import ChatRequest, Completion, Engine
from wbray.engines._openai import OpenAIEngine
from wbray.engines._registry import create_engine
from wbray.errors import ConfigError

SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "seed", "top_k", "repetition_penalty")


def config(base_url: str, **overrides: Any) -> OpenAIEngineConfig:
    """A config with test-sized backoffs and timeouts."""
    values: dict[str, Any] = {
        "base_url": base_url,
        "model": "test-model",
        "initial_backoff_s": 0.01,
        "max_backoff_s": 0.05,
        "timeout_s": 5.0,
        "max_retries": 2,
    }
    values.update(overrides)
    return OpenAIEngineConfig(**values)


def ask(text: str, **kwargs: Any) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kwargs)


def run(
    cfg: OpenAIEngineConfig, requests: Sequence[ChatRequest], sampling: SamplingParams | None = None
) -> list[Completion]:
    """Build an engine, generate once, close it (all in one event loop)."""

    async def go() -> list[Completion]:
        engine = OpenAIEngine(cfg)
        try:
            return await engine.generate(requests, sampling or SamplingParams())
        finally:
            await engine.close()

    return asyncio.run(go())


def echo(request: Any, attempt: int) -> Action:
    return reply(f"echo:{request['messages'][-1]['content']}")


# -- success and malformed replies ----------------------------------------------------------------


def test_valid_reply_fills_the_completion() -> None:
    script = [reply("hello", finish_reason="length", usage={"prompt_tokens": 11, "completion_tokens": 5})]
    with ScriptedOpenAIServer(script) as srv:
        [out] = run(config(srv.base_url), [ask("hi")])
        [received] = srv.requests
    assert out.status == "ok" and out.error is None
    assert out.text == "hello"
    assert out.finish_reason == "length"
    assert (out.prompt_tokens, out.completion_tokens) == (11, 5)
    assert out.latency_s > 0
    assert received.path == "/v1/chat/completions"
    assert received.body["model"] == "test-model"
    assert received.body["messages"] == [{"role": "user", "content": "hi"}]
    assert "authorization" not in received.headers


def test_missing_usage_counts_zero_tokens() -> None:
    with ScriptedOpenAIServer([reply("x", usage=None)]) as srv:
        [out] = run(config(srv.base_url), [ask("hi")])
    assert out.status == "ok" and (out.prompt_tokens, out.completion_tokens) == (0, 0)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>oops</html>", "malformed response: not JSON"),
        (b'{"object": "chat.completion", "choices": []}', "malformed response: no choices"),
        (b'{"error": {"message": "overloaded"}}', "malformed response: no choices (error: "),
        (b"[1, 2]", "malformed response: expected a JSON object"),
        (b'{"choices": [{"finish_reason": "stop"}]}', "malformed response: choices[0] has no message"),
    ],
)
def test_malformed_body_fails_without_retry(body: bytes, reason: str) -> None:
    with ScriptedOpenAIServer([malformed(body)]) as srv:
        [out] = run(config(srv.base_url), [ask("hi")])
        assert srv.request_count == 1
    assert out.status == "failed" and out.text is None
    assert out.error is not None and out.error.startswith(reason), out.error


def test_null_content_is_malformed() -> None:
    with ScriptedOpenAIServer([reply(None, finish_reason="content_filter")]) as srv:
        [out] = run(config(srv.base_url), [ask("hi")])
    assert out.status == "failed"
    assert (
        out.error == "malformed response: choices[0].message.content is null (finish_reason='content_filter')"
    )


# -- retries --------------------------------------------------------------------------------------


def test_429_is_retried_honouring_retry_after() -> None:
    # Backoff alone would wait 5 s; a Retry-After of 0.05 s must win.
    script: list[Action] = [status(429, "slow down", {"Retry-After": "0.05"}), reply("after wait")]
    with ScriptedOpenAIServer(script) as srv:
        [out] = run(config(srv.base_url, initial_backoff_s=5.0, max_backoff_s=10.0), [ask("hi")])
        assert srv.request_count == 2
        assert [r.attempt for r in srv.requests] == [1, 2]
    assert out.status == "ok" and out.text == "after wait"
    assert 0.05 <= out.latency_s < 2.0


def test_retry_after_is_capped_by_max_backoff() -> None:
    script: list[Action] = [status(503, headers={"Retry-After": "120"}), reply("ok")]
    with ScriptedOpenAIServer(script) as srv:
        [out] = run(config(srv.base_url, max_backoff_s=0.05), [ask("hi")])
    assert out.status == "ok" and out.latency_s < 2.0


def test_retry_after_as_past_http_date_retries_at_once() -> None:
    script: list[Action] = [status(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), reply()]
    with ScriptedOpenAIServer(script) as srv:
        [out] = run(config(srv.base_url, initial_backoff_s=5.0, max_backoff_s=10.0), [ask("hi")])
    assert out.status == "ok" and out.latency_s < 2.0


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    engine = OpenAIEngine(config("http://127.0.0.1:9/v1", initial_backoff_s=1.0, max_backoff_s=30.0))
    for retries, nominal in [(0, 1.0), (1, 2.0), (3, 8.0)]:
        delays = [engine._backoff(retries, None) for _ in range(50)]
        assert all(0.8 * nominal <= d <= 1.2 * nominal for d in delays)
        assert len(set(delays)) > 1  # jittered
    assert engine._backoff(10, None) == 30.0
    assert engine._backoff(10_000, None) == 30.0
    assert engine._backoff(0, 7.5) == 7.5  # Retry-After replaces the schedule
    assert engine._backoff(0, 99.0) == 30.0


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
def test_retryable_status_exhausts_retries(code: int) -> None:
    with ScriptedOpenAIServer([status(code)] * 4) as srv:
        [out] = run(config(srv.base_url, max_retries=3), [ask("hi")])
        assert srv.request_count == 4
    assert out.status == "failed"
    assert out.error == f"http {code} after 3 retries"
    assert out.latency_s > 0


def test_zero_retries_means_one_attempt() -> None:
    with ScriptedOpenAIServer([status(500)]) as srv:
        [out] = run(config(srv.base_url, max_retries=0), [ask("hi")])
        assert srv.request_count == 1
    assert out.error == "http 500 after 0 retries"


@pytest.mark.parametrize("code", [400, 401, 404, 422])
def test_other_4xx_fails_at_once_with_body_excerpt(code: int) -> None:
    body = "invalid request: " + "x" * 500
    with ScriptedOpenAIServer([status(code, body)]) as srv:
        [out] = run(config(srv.base_url), [ask("hi")])
        assert srv.request_count == 1
    assert out.status == "failed"
    assert out.error == f"http {code}: {body[:200]}"


def test_slow_reply_times_out_and_is_retried() -> None:
    with ScriptedOpenAIServer([sleep(3.0), sleep(3.0)]) as srv:
        [out] = run(config(srv.base_url, timeout_s=0.2, max_retries=1), [ask("hi")])
        assert srv.request_count == 2
    assert out.status == "failed"
    assert out.error == "timeout after 0.2 s (1 retries)"
    assert 0.4 <= out.latency_s < 2.0


def test_timeout_then_success() -> None:
    with ScriptedOpenAIServer([sleep(3.0), reply("second time")]) as srv:
        [out] = run(config(srv.base_url, timeout_s=0.2), [ask("hi")])
        assert srv.request_count == 2
    assert out.status == "ok" and out.text == "second time"


def test_dropped_connection_is_retried_then_succeeds() -> None:
    with ScriptedOpenAIServer([close_connection(), close_connection(), reply("back")]) as srv:
        [out] = run(config(srv.base_url, max_retries=2), [ask("hi")])
        assert srv.request_count == 3
    assert out.status == "ok" and out.text == "back"


def test_connection_refused_exhausts_retries() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more.
    [out] = run(config(f"http://127.0.0.1:{port}/v1", max_retries=1), [ask("hi")])
    assert out.status == "failed"
    assert out.error is not None
    assert out.error.startswith("connection error: ") and out.error.endswith("(1 retries)")


# -- concurrency and order ------------------------------------------------------------------------


def test_concurrency_bound_is_respected() -> None:
    def slow_echo(request: Any, attempt: int) -> Action:
        return sleep(0.05, echo(request, attempt))

    with ScriptedOpenAIServer(slow_echo) as srv:
        outs = run(config(srv.base_url, max_concurrency=3), [ask(str(i)) for i in range(15)])
        assert srv.request_count == 15
        assert 1 < srv.max_in_flight <= 3
    assert all(o.status == "ok" for o in outs)


def test_results_follow_request_order_under_concurrency() -> None:
    def later_is_faster(request: Any, attempt: int) -> Action:
        n = int(request["messages"][-1]["content"])
        return sleep(0.02 * (8 - n), echo(request, attempt))

    with ScriptedOpenAIServer(later_is_faster) as srv:
        outs = run(config(srv.base_url, max_concurrency=8), [ask(str(i)) for i in range(8)])
        arrival = [r.body["messages"][-1]["content"] for r in srv.requests]
    assert [o.text for o in outs] == [f"echo:{i}" for i in range(8)]
    assert len(arrival) == 8


def test_mixed_batch_returns_one_completion_per_request_in_order() -> None:
    def by_content(request: Any, attempt: int) -> Action:
        text = request["messages"][-1]["content"]
        if text == "bad":
            return status(400, "no")
        if text == "broken":
            return malformed("not json")
        if text == "flaky" and attempt == 1:
            return status(503)
        return echo(request, attempt)

    texts = ["a", "bad", "flaky", "broken", "b"]
    with ScriptedOpenAIServer(by_content) as srv:
        outs = run(config(srv.base_url, max_concurrency=2), [ask(t) for t in texts])
    assert [o.status for o in outs] == ["ok", "failed", "ok", "failed", "ok"]
    assert [o.text for o in outs] == ["echo:a", None, "echo:flaky", None, "echo:b"]
    assert outs[1].error == "http 400: no"
    assert outs[3].error is not None and outs[3].error.startswith("malformed response")


def test_empty_batch_sends_nothing() -> None:
    with ScriptedOpenAIServer([]) as srv:
        assert run(config(srv.base_url), []) == []
        assert srv.request_count == 0


# -- request body ---------------------------------------------------------------------------------

FULL_SAMPLING = SamplingParams(
    temperature=0.7, top_p=0.8, top_k=20, max_tokens=64, repetition_penalty=1.05, seed=3
)


def test_all_set_sampling_fields_are_sent() -> None:
    with ScriptedOpenAIServer([reply()]) as srv:
        run(config(srv.base_url), [ask("hi")], FULL_SAMPLING)
        [received] = srv.requests
    assert {k: received.body[k] for k in SAMPLING_KEYS} == {
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "max_tokens": 64,
        "repetition_penalty": 1.05,
        "seed": 3,
    }


def test_omit_sampling_removes_fields() -> None:
    with ScriptedOpenAIServer([reply()]) as srv:
        run(config(srv.base_url, omit_sampling=["top_p", "top_k", "seed"]), [ask("hi")], FULL_SAMPLING)
        [received] = srv.requests
    assert {k for k in SAMPLING_KEYS if k in received.body} == {
        "temperature",
        "max_tokens",
        "repetition_penalty",
    }


def test_unset_sampling_fields_are_absent() -> None:
    with ScriptedOpenAIServer([reply()]) as srv:
        run(config(srv.base_url), [ask("hi")], SamplingParams(temperature=0.0))
        [received] = srv.requests
    # temperature 0 is a value, not "unset".
    assert {k for k in SAMPLING_KEYS if k in received.body} == {"temperature"}
    assert received.body["temperature"] == 0.0
    assert set(received.body) == {"model", "messages", "temperature"}


def test_the_paper_judge_sampling_is_sent_in_full_unless_omitted() -> None:
    # A vLLM server fills absent fields from the model's generation_config (a Qwen critic: top_k
    # 20, repetition_penalty 1.05), so upstream's SamplingParams(temperature=1.0, top_p=0.95,
    # max_tokens=2048) — top_k -1 and repetition_penalty 1.0 implied — is sent explicitly.
    from wbray.config import PAPER_JUDGE_SAMPLING

    with ScriptedOpenAIServer([reply(), reply()]) as srv:
        run(config(srv.base_url), [ask("hi")], PAPER_JUDGE_SAMPLING)
        run(
            config(srv.base_url, omit_sampling=["top_k", "repetition_penalty"]),
            [ask("hi")],
            PAPER_JUDGE_SAMPLING,
        )
        vllm_server, hosted_api = (r.body for r in srv.requests)
    assert {k: vllm_server[k] for k in SAMPLING_KEYS if k in vllm_server} == {
        "temperature": 1.0,
        "top_p": 0.95,
        "max_tokens": 2048,
        "top_k": -1,
        "repetition_penalty": 1.0,
    }
    assert "top_k" not in hosted_api and "repetition_penalty" not in hosted_api


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            "json_schema",
            {"type": "json_schema", "json_schema": {"name": "judge_reply", "schema": SCHEMA, "strict": True}},
        ),
        ("json_object", {"type": "json_object"}),
        ("none", None),
    ],
)
def test_response_format_per_structured_output_mode(mode: str, expected: dict[str, Any] | None) -> None:
    with ScriptedOpenAIServer([reply(), reply()]) as srv:
        run(config(srv.base_url, structured_output=mode), [ask("judge", json_schema=SCHEMA), ask("free")])
        by_text = {r.body["messages"][-1]["content"]: r.body for r in srv.requests}
    assert by_text["judge"].get("response_format") == expected
    assert "response_format" not in by_text["free"]


# -- API key --------------------------------------------------------------------------------------


def test_api_key_from_env_is_sent_as_bearer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WBRAY_TEST_KEY", "sk-secret-123")
    with ScriptedOpenAIServer([reply()]) as srv:
        cfg = config(srv.base_url, api_key_env="WBRAY_TEST_KEY")
        assert "sk-secret" not in repr(OpenAIEngine(cfg))
        run(cfg, [ask("hi")])
        [received] = srv.requests
    assert received.headers["authorization"] == "Bearer sk-secret-123"


@pytest.mark.parametrize("value", [None, ""])
def test_unset_api_key_env_is_a_config_error(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("WBRAY_TEST_KEY", raising=False)
    else:
        monkeypatch.setenv("WBRAY_TEST_KEY", value)
    with pytest.raises(ConfigError, match="WBRAY_TEST_KEY"):
        OpenAIEngine(config("http://127.0.0.1:9/v1", api_key_env="WBRAY_TEST_KEY"))


def test_base_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        OpenAIEngine(config("127.0.0.1:8000/v1"))


def test_trailing_slash_in_base_url() -> None:
    with ScriptedOpenAIServer([reply()]) as srv:
        [out] = run(config(srv.base_url + "/"), [ask("hi")])
        [received] = srv.requests
    assert out.status == "ok" and received.path == "/v1/chat/completions"


# -- lifecycle ------------------------------------------------------------------------------------


def test_registered_as_openai_backend() -> None:
    engine = create_engine(config("http://127.0.0.1:9/v1"))
    assert isinstance(engine, OpenAIEngine)
    assert isinstance(engine, Engine)
    assert engine.model_id == "test-model"


def test_close_is_idempotent_and_engine_reopens() -> None:
    async def go(engine: OpenAIEngine) -> list[Completion]:
        await engine.close()  # before any session exists
        first = await engine.generate([ask("1")], SamplingParams())
        await engine.close()
        await engine.close()
        second = await engine.generate([ask("2")], SamplingParams())
        await engine.close()
        return first + second

    with ScriptedOpenAIServer(echo) as srv:
        outs = asyncio.run(go(OpenAIEngine(config(srv.base_url))))
    assert [o.text for o in outs] == ["echo:1", "echo:2"]


def test_engine_survives_a_new_event_loop_per_call() -> None:
    # Ray actors may call asyncio.run once per batch: each call has a fresh loop.
    with ScriptedOpenAIServer(echo) as srv:
        engine = OpenAIEngine(config(srv.base_url))
        first = asyncio.run(engine.generate([ask("a"), ask("b")], SamplingParams()))
        second = asyncio.run(engine.generate([ask("c")], SamplingParams()))
        asyncio.run(engine.close())
    assert [o.text for o in first + second] == ["echo:a", "echo:b", "echo:c"]


def test_engine_shared_by_threads_with_their_own_loops() -> None:
    # A threaded Ray actor can call generate() from several threads at once, each in its own loop.
    with ScriptedOpenAIServer(lambda request, attempt: sleep(0.05, echo(request, attempt))) as srv:
        engine = OpenAIEngine(config(srv.base_url))
        results: dict[str, list[Completion]] = {}

        def work(tag: str) -> None:
            results[tag] = asyncio.run(
                engine.generate([ask(f"{tag}{i}") for i in range(4)], SamplingParams())
            )

        threads = [threading.Thread(target=work, args=(tag,)) for tag in "xyz"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        asyncio.run(engine.close())
    for tag in "xyz":
        assert [o.text for o in results[tag]] == [f"echo:{tag}{i}" for i in range(4)]
