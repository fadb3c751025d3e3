"""The serve layer without Ray: config schema, OpenAI translation, batching, critic logic, HTTP guard."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from wbray.config import SamplingParams
from wbray.dataset import load_benchmark
from wbray.engines import ChatRequest, Completion
from wbray.errors import ConfigError
from wbray.prompts import load_judge_template
from wbray.serve import ServeAppConfig, load_serve_config
from wbray.serve._app import build_app
from wbray.serve._chat import (
    ChatCompletionBody,
    ChatServer,
    RequestError,
    _Scheduler,
    completion_body,
    completion_from_dict,
    completion_to_dict,
    engine_request,
    stream_events,
)
from wbray.serve._critic import HandleEngine, ScoreRefused, ScoreRequest, resolve_rows, result_body
from wbray.serve._gateway import GuardMiddleware, read_token_digest, token_digest

REPO = Path(__file__).resolve().parents[2]
MODEL = {"name": "m", "engine": {"backend": "transformers"}}


def _cfg(**extra: Any) -> ServeAppConfig:
    return load_serve_config({"models": [MODEL], **extra})


# -- config -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["local.yaml"])
def test_shipped_configs_validate(name: str) -> None:
    cfg = load_serve_config(REPO / "configs" / "serve" / name)
    assert cfg.http.host == "127.0.0.1" and cfg.http.port == 8000
    for m in cfg.models:
        # A whole CPU per replica starves everything else on small boxes.
        assert m.deployment.resources.num_cpus < 1
    assert cfg.critic is not None and cfg.critic.deployment.resources.num_cpus < 1


def test_serve_native_yaml_points_at_the_builder() -> None:
    doc = yaml.safe_load((REPO / "configs" / "serve" / "local.serve.yaml").read_text())
    (app,) = doc["applications"]
    assert app["import_path"] == "wbray.serve:build_app"
    cfg = load_serve_config(REPO / app["args"]["config"])
    assert cfg.name == app["name"] and app["route_prefix"] == cfg.http.route_prefix


def test_defaults_and_serve_options() -> None:
    cfg = _cfg()
    opts = cfg.models[0].deployment.serve_options()
    assert opts["ray_actor_options"] == {"num_cpus": 0.5}
    assert opts["autoscaling_config"]["min_replicas"] == 1
    assert opts["max_queued_requests"] == 32
    gpu = load_serve_config(
        {
            "models": [
                {**MODEL, "deployment": {"resources": {"num_gpus": 1, "accelerator_type": "H100"}}},
            ]
        }
    )
    assert gpu.models[0].deployment.serve_options()["ray_actor_options"] == {
        "num_cpus": 0.5,
        "num_gpus": 1,
        "accelerator_type": "H100",
    }


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"models": [MODEL], "htp": {}}, "did you mean 'http'"),
        ({"models": []}, "models"),
        ({"models": [MODEL, MODEL]}, "repeated: m"),
        ({"models": [MODEL], "critic": {"model": "other"}}, "'other' is not a served model"),
        (
            {"models": [{**MODEL, "deployment": {"autoscaling": {"min_replicas": 3, "max_replicas": 2}}}]},
            "must not exceed",
        ),
        ({"models": [{**MODEL, "name": "a b"}]}, "letters, digits"),
        ({"models": [MODEL], "http": {"route_prefix": "v1"}}, "must start with '/'"),
    ],
)
def test_bad_configs_name_the_key(tree: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="<args>") as info:
        load_serve_config(tree)
    assert message in str(info.value)


def test_overrides_and_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"models": [MODEL]}))
    cfg = load_serve_config(path, ["http.port=9001", "critic.model=m"])
    assert cfg.http.port == 9001 and cfg.critic is not None
    assert cfg.critic.sampling.top_p == 0.95  # paper defaults stay under partial overrides
    with pytest.raises(ConfigError, match="cannot read"):
        load_serve_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="only 'overrides'"):
        build_app({"config": str(path), "port": 1})


def test_token_is_read_by_name_and_only_hashed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_token_digest(None) is None
    monkeypatch.delenv("WBRAY_T", raising=False)
    with pytest.raises(ConfigError, match="'WBRAY_T'") as info:
        read_token_digest("WBRAY_T")
    monkeypatch.setenv("WBRAY_T", "abc")
    digest = read_token_digest("WBRAY_T")
    assert digest == token_digest("abc") and "abc" not in str(info.value)


def test_vllm_models_are_refused_with_a_pointer() -> None:
    cfg = load_serve_config({"models": [{"name": "v", "engine": {"backend": "vllm", "model": "x"}}]})
    pytest.importorskip("ray.serve")
    from wbray.serve import build_application

    with pytest.raises(ConfigError, match=r"ray\.serve\.llm"):
        build_application(cfg)


# -- OpenAI translation -----------------------------------------------------------------------------


def _body(**kw: Any) -> ChatCompletionBody:
    return ChatCompletionBody.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **kw}
    )


def test_engine_request_merges_sampling_and_maps_formats() -> None:
    defaults = SamplingParams(temperature=0.5, max_tokens=10)
    req = engine_request(_body(max_completion_tokens=3, max_tokens=99, seed=1), defaults)
    assert req["sampling"] == {"temperature": 0.5, "max_tokens": 3, "seed": 1}
    assert req["json_schema"] is None
    schema = {"type": "object"}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert engine_request(_body(response_format=fmt), defaults)["json_schema"] == schema
    assert engine_request(_body(response_format={"type": "json_object"}), defaults)["json_schema"] == schema
    with pytest.raises(RequestError, match=r"response_format\.json_schema"):
        engine_request(_body(response_format={"type": "json_schema"}), defaults)
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    dev = _body(messages=[{"role": "developer", "content": parts}])
    assert engine_request(dev, defaults)["messages"] == [{"role": "system", "content": "ab"}]


def test_bodies_refuse_what_cannot_be_served() -> None:
    with pytest.raises(ValueError, match="n=1"):
        _body(n=2)
    with pytest.raises(ValueError, match="messages"):
        ChatCompletionBody.model_validate({"model": "m", "messages": []})
    with pytest.raises(RequestError, match="image"):
        engine_request(_body(messages=[{"role": "user", "content": [{"type": "image"}]}]), SamplingParams())


def test_response_and_stream_shapes() -> None:
    c = Completion(text="hey", finish_reason="length", prompt_tokens=5, completion_tokens=2)
    assert completion_from_dict(completion_to_dict(c)) == c
    body = completion_body(c, "m", "id1", 7)
    assert body["choices"][0]["message"]["content"] == "hey"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    events = stream_events(c, "m", "id1", 7, include_usage=True)
    assert events[-1] == "data: [DONE]\n\n"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "hey"}
    assert chunks[1]["choices"][0]["finish_reason"] == "length"
    assert chunks[2]["choices"] == [] and chunks[2]["usage"]["total_tokens"] == 7
    assert len(stream_events(c, "m", "id1", 7, include_usage=False)) == 3


# -- batching and the replica -----------------------------------------------------------------------


class RecordingEngine:
    model_id = "rec"

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[tuple[list[str], SamplingParams]] = []
        self.fail = fail

    async def generate(self, requests: Sequence[ChatRequest], sampling: SamplingParams) -> list[Completion]:
        self.batches.append(([r.request_id for r in requests], sampling))
        if self.fail:
            raise RuntimeError("boom")
        return [Completion(text=f"echo {r.messages[-1]['content']}") for r in requests]

    async def close(self) -> None:
        return None


def _req(i: int) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": str(i)}], request_id=str(i))


def test_scheduler_groups_concurrent_requests_by_sampling() -> None:
    engine = RecordingEngine()
    scheduler = _Scheduler(engine, max_batch=2, max_concurrent=None, wait_s=0.05)
    greedy, hot = SamplingParams(temperature=0), SamplingParams(temperature=1)

    async def run() -> list[Completion]:
        calls = [scheduler.submit(_req(i), s) for i, s in enumerate([greedy, greedy, greedy, hot])]
        return list(await asyncio.gather(*calls))

    out = asyncio.run(run())
    assert [c.text for c in out] == ["echo 0", "echo 1", "echo 2", "echo 3"]
    assert sorted(ids for ids, _ in engine.batches) == [["0", "1"], ["2"], ["3"]]


class GatedEngine:
    """Each generate call waits until the test opens it: the test decides when a call ends."""

    model_id = "gated"

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], asyncio.Future[None]]] = []

    async def generate(self, requests: Sequence[ChatRequest], sampling: SamplingParams) -> list[Completion]:
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.calls.append(([r.request_id for r in requests], gate))
        await gate
        return [Completion(text=r.request_id) for r in requests]

    async def close(self) -> None:
        return None

    def finish(self, call: int) -> None:
        self.calls[call][1].set_result(None)


async def _ticks(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_scheduler_refills_a_freed_slot_at_once_and_bounds_engine_calls() -> None:
    # The P4 finding: waiting requests must start the moment a slot frees, not on a later poll.
    engine = GatedEngine()
    # wait_s is huge, so a start that waited for a timer would never happen within the test.
    scheduler = _Scheduler(engine, max_batch=1, max_concurrent=2, wait_s=3600)

    async def run() -> list[Completion]:
        tasks = [asyncio.ensure_future(scheduler.submit(_req(i), SamplingParams())) for i in range(5)]
        await _ticks()
        assert [ids for ids, _ in engine.calls] == [["0"], ["1"]]  # two engine calls, three wait
        assert (scheduler.running, scheduler.waiting) == (2, 3)
        engine.finish(1)
        await _ticks()
        assert [ids for ids, _ in engine.calls] == [["0"], ["1"], ["2"]]  # first come, first served
        for call in (0, 2):
            engine.finish(call)
        await _ticks()
        engine.finish(3)
        engine.finish(4)
        return list(await asyncio.gather(*tasks))

    assert [c.text for c in asyncio.run(run())] == ["0", "1", "2", "3", "4"]


def test_requests_arriving_while_the_engine_is_busy_form_the_next_batch() -> None:
    engine = GatedEngine()
    scheduler = _Scheduler(engine, max_batch=4, max_concurrent=1, wait_s=0)

    async def run() -> None:
        first = asyncio.ensure_future(scheduler.submit(_req(0), SamplingParams()))
        await _ticks()
        rest = [asyncio.ensure_future(scheduler.submit(_req(i), SamplingParams())) for i in range(1, 7)]
        await _ticks()
        assert [ids for ids, _ in engine.calls] == [["0"]]
        engine.finish(0)
        await _ticks()
        assert [ids for ids, _ in engine.calls][1] == ["1", "2", "3", "4"]
        engine.finish(1)
        await _ticks()
        assert [ids for ids, _ in engine.calls][2] == ["5", "6"]
        engine.finish(2)
        await asyncio.gather(first, *rest)

    asyncio.run(run())


def test_callers_that_gave_up_never_reach_the_engine_and_streams_wait_in_line() -> None:
    engine = GatedEngine()
    scheduler = _Scheduler(engine, max_batch=1, max_concurrent=1, wait_s=0)
    order: list[str] = []

    async def stream() -> None:
        async with scheduler.slot():
            order.append("stream")
            assert scheduler.running == 1

    async def run() -> None:
        busy = asyncio.ensure_future(scheduler.submit(_req(0), SamplingParams()))
        await _ticks()
        gone = asyncio.ensure_future(scheduler.submit(_req(1), SamplingParams()))
        streaming = asyncio.ensure_future(stream())
        later = asyncio.ensure_future(scheduler.submit(_req(2), SamplingParams()))
        await _ticks()
        gone.cancel()
        await _ticks()
        assert order == [] and len(engine.calls) == 1
        engine.finish(0)
        await _ticks()
        assert order == ["stream"]  # the stream took its turn, the cancelled request was skipped
        assert [ids for ids, _ in engine.calls] == [["0"], ["2"]]
        engine.finish(1)
        await asyncio.gather(busy, streaming, later)
        assert scheduler.running == 0 and scheduler.waiting == 0

    asyncio.run(run())


def test_engine_exception_fails_the_batch_instead_of_hanging() -> None:
    server = ChatServer(load_serve_config({"models": [MODEL]}).models[0], engine=RecordingEngine(fail=True))
    out = asyncio.run(server.complete({"messages": [{"role": "user", "content": "x"}]}))
    assert out["status"] == "failed" and "boom" in out["error"]


def test_chat_server_generator_yields_one_openai_body() -> None:
    server = ChatServer(load_serve_config({"models": [MODEL]}).models[0], engine=RecordingEngine())

    async def first() -> dict[str, Any]:
        gen = server.chat({"model": "m", "messages": [{"role": "user", "content": "q"}], "idx_in_batch": 0})
        return await anext(gen)

    assert first_choice(asyncio.run(first())) == "echo q"


def first_choice(body: dict[str, Any]) -> str:
    return str(body["choices"][0]["message"]["content"])


# -- the critic -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> Any:
    return load_benchmark("example")


def test_resolve_rows_names_unknown_things(example: Any) -> None:
    q = example.queries[0]
    names = [c.name for c in q.checklist]
    req = ScoreRequest.model_validate({"index": q.index, "response": "r", "criteria": names[:2]})
    rows = resolve_rows(req, example, "critic", 100)
    assert [r["criterion"] for r in rows] == names[:2]
    assert json.loads(rows[0]["criterion_json"]) == dict(q.checklist[0].item)
    all_rows = resolve_rows(
        ScoreRequest.model_validate({"index": q.index, "response": "r"}), example, "c", 100
    )
    assert len(all_rows) == len(q.checklist)
    cases = [
        ({"index": q.index, "response": "r", "criteria": ["Zzz"]}, "'Zzz'", 422),
        ({"index": -5, "response": "r"}, "no query with index -5", 422),
        ({"index": q.index, "data_version": "x", "response": "r"}, example.data_version, 409),
        ({"query": "q", "response": "r"}, "'all' needs a benchmark", 422),
        ({"query": "q", "response": "r", "criteria": ["A"]}, "needs a benchmark 'index'", 422),
    ]
    for body, text, code in cases:
        with pytest.raises(ScoreRefused) as info:
            resolve_rows(ScoreRequest.model_validate(body), example, "c", 100)
        assert text in str(info.value) and info.value.status == code
    with pytest.raises(ScoreRefused, match="at most 1") as info:
        resolve_rows(ScoreRequest.model_validate({"index": q.index, "response": "r"}), example, "c", 1)
    with pytest.raises(ScoreRefused, match="no benchmark"):
        resolve_rows(ScoreRequest.model_validate({"index": q.index, "response": "r"}), None, "c", 100)


class FakeHandle:
    """Stands in for a DeploymentHandle: ``complete.remote(payload)`` returns an awaitable."""

    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies
        self.payloads: list[dict[str, Any]] = []
        self.complete = self

    def remote(self, payload: dict[str, Any]) -> Any:
        self.payloads.append(payload)
        reply = self.replies.pop(0)

        async def answer() -> dict[str, Any]:
            if isinstance(reply, Exception):
                raise reply
            return completion_to_dict(Completion(text=reply, prompt_tokens=3, completion_tokens=2))

        return answer()


def test_critic_scoring_reasks_then_fails_without_guessing() -> None:
    from wbray.steps import score_batch

    cfg = load_serve_config(
        {
            "models": [MODEL],
            "critic": {"model": "m", "template": "builtin", "max_reasks": 1, "constrained": True},
        }
    )
    assert cfg.critic is not None
    judge = cfg.critic.judge_config()
    template = load_judge_template(None, "builtin")
    req = ScoreRequest.model_validate(
        {
            "items": [
                {"query": "q", "response": "r", "criteria": [{"name": "A", "criteria_description": "d"}]},
                {"query": "q", "response": "r", "criteria": [{"name": "B", "criteria_description": "d"}]},
                {"query": "q", "response": "r", "criteria": [{"name": "C", "criteria_description": "d"}]},
            ]
        }
    )
    rows = resolve_rows(req, None, "critic", 10)
    handle = FakeHandle(
        [
            '{"score": 7, "reason": "fine"}',
            "no json here",
            RuntimeError("replica died"),
            "score: 8",  # the re-ask of B, still unparseable
        ]
    )
    scored = asyncio.run(score_batch(HandleEngine(handle, "m"), rows, template, judge))
    body = result_body(req, rows, scored, template, "critic", "m", None)
    a, b, c = (item["results"][0] for item in body["items"])
    assert (a["status"], a["score"], a["reason"], a["tokens"]) == (
        "ok",
        7,
        "fine",
        {"prompt": 3, "completion": 2},
    )
    assert (b["status"], b["score"], b["attempts"]) == ("failed", None, 2)
    assert "unparseable" in b["error"] and b["raw"] == "score: 8"
    assert (c["status"], c["score"], c["attempts"]) == ("failed", None, 1)
    assert "replica died" in c["error"]
    assert handle.payloads[0]["json_schema"] == judge.reply_schema()
    assert body["prompt_version"] == template.version


def test_handle_engine_bounds_calls_in_flight() -> None:
    in_flight = peak = 0

    class SlowHandle:
        def __init__(self) -> None:
            self.complete = self

        def remote(self, payload: dict[str, Any]) -> Any:
            async def answer() -> dict[str, Any]:
                nonlocal in_flight, peak
                in_flight += 1
                peak = max(peak, in_flight)
                await asyncio.sleep(0.01)
                in_flight -= 1
                return completion_to_dict(Completion(text="x"))

            return answer()

    engine = HandleEngine(SlowHandle(), "m", max_in_flight=3)
    requests = [ChatRequest([{"role": "user", "content": str(i)}]) for i in range(10)]
    out = asyncio.run(engine.generate(requests, SamplingParams()))
    assert [c.text for c in out] == ["x"] * 10 and peak == 3


# -- the HTTP guard (raw ASGI, no server) -----------------------------------------------------------


async def _asgi(
    guard: GuardMiddleware, path: str, headers: dict[str, str], chunks: list[bytes]
) -> tuple[int, Any]:
    sent: list[dict[str, Any]] = []
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "path": path,
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    await guard(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(start["status"]), json.loads(body)


async def _echo_app(scope: Any, receive: Any, send: Any) -> None:
    data = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        data += message.get("body", b"")
        if not message.get("more_body"):
            break
    payload = json.dumps({"len": len(data)}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": payload})


def test_guard_auth_and_size_limits() -> None:
    guard = GuardMiddleware(_echo_app, digest=token_digest("t0k"), max_body_bytes=10)
    ok = {"Authorization": "Bearer t0k"}
    assert asyncio.run(_asgi(guard, "/health", {}, [b""])) == (200, {"len": 0})
    status, body = asyncio.run(_asgi(guard, "/v1/models", {}, [b""]))
    assert status == 401 and body["error"]["type"] == "authentication_error"
    assert asyncio.run(_asgi(guard, "/v1/models", {"Authorization": "Bearer nope"}, [b""]))[0] == 401
    assert asyncio.run(_asgi(guard, "/v1/models", {"Authorization": "Basic t0k"}, [b""]))[0] == 401
    assert asyncio.run(_asgi(guard, "/v1/x", ok, [b"12345"])) == (200, {"len": 5})
    status, body = asyncio.run(_asgi(guard, "/v1/x", {**ok, "Content-Length": "11"}, [b"x" * 11]))
    assert status == 413 and "max_body_bytes" in body["error"]["message"]
    assert asyncio.run(_asgi(guard, "/v1/x", ok, [b"123456", b"123456"]))[0] == 413  # chunked
    assert asyncio.run(_asgi(guard, "/v1/x", {**ok, "Content-Length": "abc"}, [b""]))[0] == 400
    open_guard = GuardMiddleware(_echo_app, digest=None, max_body_bytes=10)
    assert asyncio.run(_asgi(open_guard, "/v1/models", {}, [b""]))[0] == 200


# -- GPU translation (ray.serve.llm itself needs vLLM; only the config is checked here) ------------


def test_vllm_model_becomes_an_llm_config() -> None:
    from wbray.serve._gpu import llm_config, llm_serving_args

    cfg = load_serve_config(
        {
            "models": [
                {
                    "name": "qwen",
                    "engine": {"backend": "vllm", "model": "Qwen/Qwen2.5-7B-Instruct", "max_model_len": 8192},
                    "deployment": {
                        "resources": {"accelerator_type": "H100"},
                        "autoscaling": {"min_replicas": 1, "max_replicas": 4},
                    },
                }
            ]
        }
    )
    d = llm_config(cfg.models[0])
    assert d["model_loading_config"] == {"model_id": "qwen", "model_source": "Qwen/Qwen2.5-7B-Instruct"}
    assert d["engine_kwargs"]["max_model_len"] == 8192 and d["accelerator_type"] == "H100"
    assert d["deployment_config"]["autoscaling_config"]["max_replicas"] == 4
    assert llm_serving_args(cfg) == {"llm_configs": [d]}
    internal = pytest.importorskip("ray.llm._internal.serve.core.configs.llm_config")
    parsed = internal.LLMConfig(**d)  # Ray's own schema accepts it
    assert parsed.model_loading_config.model_id == "qwen"
    with pytest.raises(ConfigError, match="only engine backend 'vllm'"):
        llm_config(_cfg().models[0])
    with pytest.raises(ConfigError, match="critic"):
        llm_serving_args(load_serve_config({"models": [MODEL], "critic": {"model": "m"}}))


def test_cli_refuses_detach_without_address_before_starting_ray() -> None:
    import argparse

    from wbray.cli import _serve
    from wbray.errors import WbrayError

    parser = argparse.ArgumentParser()
    _serve.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", str(REPO / "configs" / "serve" / "local.yaml"), "--detach"])
    with pytest.raises(WbrayError, match="--detach needs --address"):
        args.func(args)
    bad = parser.parse_args(["serve", str(REPO / "configs" / "serve" / "local.yaml"), "-o", "http.port=-1"])
    with pytest.raises(ConfigError, match=r"http\.port"):
        bad.func(bad)
