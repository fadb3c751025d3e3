"""The gateway's HTTP behaviour without a cluster: its FastAPI app, called over raw ASGI, routing to
real :class:`ChatServer` objects (with scripted engines) through in-process stand-ins for handles.

Covers what a client sees: the bad-body corpus (4xx naming the field or the problem, never a 500 or
a traceback), the status and code of each kind of handle failure (overload vs dead replica vs
timeout), token streaming as server-sent events, and the stable identity of served models.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import pytest

from wbray.config import SamplingParams
from wbray.engines import ChatRequest, Completion
from wbray.serve import load_serve_config
from wbray.serve._chat import ChatServer
from wbray.serve._config import HttpSettings, ModelDeploymentConfig
from wbray.serve._gateway import Gateway, failure_response

pytest.importorskip("fastapi")
ray_exceptions = pytest.importorskip("ray.exceptions")
serve_exceptions = pytest.importorskip("ray.serve.exceptions")

MODEL = {
    "name": "m",
    "engine": {"backend": "transformers", "model": "smollm2", "batch_size": 2},
    "sampling": {"temperature": 0, "max_tokens": 32},
}


# -- stand-ins ----------------------------------------------------------------------------------------


class EchoEngine:
    """Answers "echo <last message>"; can stream it in pieces, or fail a request on cue."""

    model_id = "echo"

    def __init__(self, pieces: Sequence[str] | None = None, fail_after: int | None = None) -> None:
        self.pieces = list(pieces) if pieces is not None else None
        self.fail_after = fail_after
        self.closed_streams = 0

    async def generate(self, requests: Sequence[ChatRequest], sampling: SamplingParams) -> list[Completion]:
        out = []
        for r in requests:
            content = str(r.messages[-1]["content"])
            if content == "too long":
                out.append(
                    Completion(
                        text=None,
                        status="failed",
                        error="prompt has 10030 tokens, model context is 8192",
                        extra={"param": "messages", "code": "context_length_exceeded"},
                    )
                )
            elif content == "break":
                out.append(Completion.failed("CUDA out of memory"))
            else:
                out.append(Completion(text=f"echo {content}", prompt_tokens=3, completion_tokens=2))
        return out

    async def close(self) -> None:
        return None


class StreamingEchoEngine(EchoEngine):
    async def stream(
        self, request: ChatRequest, sampling: SamplingParams
    ) -> AsyncGenerator[Completion, None]:
        assert self.pieces is not None
        try:
            for i, piece in enumerate(self.pieces):
                if self.fail_after is not None and i == self.fail_after:
                    yield Completion.failed("engine died midway")
                    return
                yield Completion(text=piece)
                await asyncio.sleep(0)
            yield Completion(
                text="", finish_reason="length", prompt_tokens=4, completion_tokens=len(self.pieces)
            )
        finally:
            self.closed_streams += 1


class _Response:
    """A DeploymentResponse stand-in: awaitable, cancellable."""

    def __init__(self, coro: Any) -> None:
        self._task = asyncio.ensure_future(coro)
        self.cancelled = False

    def __await__(self) -> Any:
        return self._task.__await__()

    def cancel(self) -> None:
        self.cancelled = True
        if self._task.done() and not self._task.cancelled() and self._task.exception() is not None:
            raise self._task.exception()  # type: ignore[misc]  # as Serve does for a failed call
        self._task.cancel()


class _Generator:
    """A DeploymentResponseGenerator stand-in over an async generator."""

    def __init__(self, agen: AsyncIterator[Any]) -> None:
        self._agen = agen
        self.cancelled = False

    def __aiter__(self) -> _Generator:
        return self

    async def __anext__(self) -> Any:
        return await self._agen.__anext__()

    def cancel(self) -> None:
        self.cancelled = True


class LocalHandle:
    """Calls methods of an in-process object the way a DeploymentHandle calls a replica."""

    def __init__(self, target: Any, stream: bool = False) -> None:
        self._target = target
        self._stream = stream

    def options(self, stream: bool = False) -> LocalHandle:
        return LocalHandle(self._target, stream)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)
        stream = self._stream

        class _Method:
            def remote(self, *args: Any) -> Any:
                return _Generator(method(*args)) if stream else _Response(method(*args))

        return _Method()


class FailingHandle:
    """A handle whose every call raises ``exc`` (or never answers, when ``exc`` is None).

    With ``at_call``, ``remote()`` itself raises, as Serve does when a queue is already full.
    """

    def __init__(self, exc: BaseException | None, at_call: bool = False) -> None:
        self.exc = exc
        self.at_call = at_call
        self.responses: list[Any] = []

    def options(self, stream: bool = False) -> FailingHandle:
        return self

    def __getattr__(self, name: str) -> Any:
        outer = self

        async def fail(*_args: Any) -> Any:
            if outer.exc is None:
                await asyncio.sleep(3600)
            raise outer.exc  # type: ignore[misc]

        async def fail_stream(*_args: Any) -> AsyncIterator[Any]:
            await fail()
            yield {}

        class _Method:
            def remote(self, *args: Any) -> Any:
                if outer.at_call and outer.exc is not None:
                    raise outer.exc
                response: Any = _Generator(fail_stream()) if name == "stream" else _Response(fail())
                outer.responses.append(response)
                return response

        return _Method()


def _config(**extra: Any) -> ModelDeploymentConfig:
    return load_serve_config({"models": [{**MODEL, **extra}]}).models[0]


def _gateway(
    engine: Any = None,
    handle: Any = None,
    http: dict[str, Any] | None = None,
    config: ModelDeploymentConfig | None = None,
) -> tuple[Gateway, Any]:
    config = config or _config()
    if handle is None:
        handle = LocalHandle(ChatServer(config, engine=engine or EchoEngine()))
    settings = HttpSettings(**(http or {}))
    return Gateway({"m": handle}, {"m": config}, None, settings, None), handle


# -- raw ASGI ---------------------------------------------------------------------------------------


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


async def _call(
    app: Any,
    method: str,
    path: str,
    body: bytes = b"",
    content_type: str | None = "application/json",
    chunked: bool = False,
    leave: bool = False,
) -> Reply:
    headers = [] if content_type is None else [(b"content-type", content_type.encode())]
    if not chunked:
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        if leave:  # the client goes away once the response has started
            while not any(m["type"] == "http.response.start" for m in sent):
                await asyncio.sleep(0.001)
            return {"type": "http.disconnect"}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    reply_headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Reply(int(start["status"]), reply_headers, payload)


def call(gateway: Gateway, method: str, path: str, body: Any = None, **kw: Any) -> Reply:
    raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    return asyncio.run(_call(gateway.asgi_app(), method, path, raw, **kw))


def chat(content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


def sse(reply: Reply) -> list[Any]:
    assert reply.headers["content-type"].startswith("text/event-stream"), reply.headers
    events = [e.removeprefix("data: ") for e in reply.text.split("\n\n") if e.strip()]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


# -- the happy path and identity ---------------------------------------------------------------------


def test_chat_completion_through_the_gateway() -> None:
    gateway, _ = _gateway()
    r = call(gateway, "POST", "/v1/chat/completions", chat("q"))
    assert r.status == 200, r.text
    body = r.json()
    assert body["choices"][0]["message"]["content"] == "echo q"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert call(gateway, "GET", "/health").json() == {"status": "ok"}


def test_models_carry_the_served_identity_and_the_handle_says_the_same() -> None:
    config = _config()
    server = ChatServer(config, engine=EchoEngine())
    gateway, _ = _gateway(config=config)
    (entry,) = call(gateway, "GET", "/v1/models").json()["data"]
    want = {
        "engine": {"backend": "transformers", "model": "smollm2", "dtype": "auto", "device": "auto"},
        "sampling": {"temperature": 0.0, "max_tokens": 32},
    }
    assert entry["id"] == "m" and entry["metadata"] == want
    assert entry["metadata"]["engine"] == config.engine.identity()  # the engine's own method
    assert server.identity() == want
    # Stable: settings that do not change results (batching, scaling) leave it alone...
    other = _config(max_batch_size=1, deployment={"max_ongoing_requests": 99})
    assert ChatServer(other, engine=EchoEngine()).identity() == want
    later, _ = _gateway(config=other)
    assert call(later, "GET", "/v1/models").json()["data"][0]["metadata"] == want
    # ...while a different default sampling is a different served model.
    assert _config(sampling={"temperature": 0.7}).identity() != want


# -- the bad-body corpus -----------------------------------------------------------------------------

NESTED = b'{"model": "m", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
SHALLOW_NESTED = {"model": "m", "messages": [{"role": "user", "content": [[[[[["deep"]]]]]]}]}

SCORE = {"path": "/v1/score"}
SMALL = {"max_body_bytes": 20_000}
BAD_BODIES: list[tuple[str, Any, dict[str, Any], int, str]] = [
    # (case, body, call options, status, text the error message must contain)
    ("truncated JSON", b'{"model": "m", "messages": [{"role": "us', {}, 422, "not valid JSON"),
    ("not JSON at all", b"model=m", {}, 422, "not valid JSON"),
    ("empty body", b"", {}, 422, "request body"),
    ("a JSON list, not an object", b"[1, 2]", {}, 422, "valid dictionary"),
    ("missing model", {"messages": [{"role": "user", "content": "x"}]}, {}, 422, "model"),
    ("missing messages", {"model": "m"}, {}, 422, "messages"),
    ("empty messages", {"model": "m", "messages": []}, {}, 422, "messages"),
    ("message without role", {"model": "m", "messages": [{"content": "x"}]}, {}, 422, "messages.0.role"),
    ("unknown role", {"model": "m", "messages": [{"role": "x", "content": "x"}]}, {}, 422, "messages.0.role"),
    ("messages is a string", {"model": "m", "messages": "hi"}, {}, 422, "messages"),
    ("content is a number", {"model": "m", "messages": [{"role": "user", "content": 7}]}, {}, 422, "content"),
    ("temperature is a word", chat(temperature="hot"), {}, 422, "temperature"),
    ("temperature out of range", chat(temperature=9), {}, 422, "temperature"),
    ("max_tokens zero", chat(max_tokens=0), {}, 422, "max_tokens"),
    ("max_tokens a float", chat(max_tokens=1.5), {}, 422, "max_tokens"),
    ("stream is a list", chat(stream=[1]), {}, 422, "stream"),
    ("n above 1", chat(n=3), {}, 422, "n"),
    ("unknown model", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, {}, 404, "nope"),
    ("image part", chat(content=[{"type": "image_url"}]), {}, 400, "image_url"),
    ("schema format without schema", chat(response_format={"type": "json_schema"}), {}, 400, "json_schema"),
    (
        "non-UTF-8 bytes",
        b'{"model": "m", "messages": [{"role": "user", "content": "\xff"}]}',
        {},
        400,
        "UTF-8",
    ),
    ("deeply nested JSON", NESTED, {"http": {"max_body_bytes": 1_000_000}}, 400, "nested too deeply"),
    ("nesting where text belongs", SHALLOW_NESTED, {}, 422, "messages.0.content"),
    ("40,000-character message", chat("x" * 40_000), {"http": SMALL}, 413, "max_body_bytes"),
    ("oversized body", chat("y" * 2_000_000), {}, 413, "max_body_bytes"),
    ("oversized, chunked", chat("z" * 30_000), {"http": SMALL, "chunked": True}, 413, "max_body_bytes"),
    ("prompt over the model's context", chat("too long"), {}, 400, "messages: prompt has 10030 tokens"),
    ("score without response", {"index": 1}, SCORE, 422, "response"),
    ("score: query and index", {"index": 1, "query": "q", "response": "r"}, SCORE, 422, "exactly one of"),
    ("score index is text", {"index": "one", "response": "r"}, SCORE, 422, "index"),
    ("score items empty", {"items": []}, SCORE, 422, "items"),
    ("score unknown key", {"index": 1, "response": "r", "critera": "all"}, SCORE, 422, "critera"),
]


@pytest.mark.parametrize(
    ("case", "body", "options", "status", "named"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES]
)
def test_bad_bodies_get_a_4xx_naming_the_problem(
    case: str, body: Any, options: dict[str, Any], status: int, named: str
) -> None:
    options = dict(options)
    gateway, _ = _gateway(http=options.pop("http", None))
    r = call(gateway, "POST", options.pop("path", "/v1/chat/completions"), body, **options)
    assert r.status == status, (case, r.status, r.text[:300])
    error = r.json()["error"]
    assert named in error["message"], (case, error)
    assert "Traceback" not in r.text and 'File "' not in r.text
    # A huge or binary body is never echoed back in the error.
    assert len(r.body) < 4_000, (case, len(r.body))


# -- handle failures: each kind answers differently -------------------------------------------------


def _failures() -> list[tuple[str, BaseException | None, int, str]]:
    died = ray_exceptions.ActorDiedError()
    wrapped = ray_exceptions.RayTaskError("complete", "Traceback ...", died)
    return [
        ("overload", serve_exceptions.BackPressureError(4, 4), 503, "overloaded"),
        ("dead replica", died, 502, "replica_unavailable"),
        ("dead replica, wrapped", wrapped, 502, "replica_unavailable"),
        (
            "unreachable",
            ray_exceptions.ActorUnavailableError("gone", b"\x00" * 16),
            502,
            "replica_unavailable",
        ),
        (
            "failed deploy",
            serve_exceptions.DeploymentUnavailableError("app#chat-m"),
            502,
            "replica_unavailable",
        ),
        ("replica raised", RuntimeError("bug"), 502, "upstream_error"),
        ("no answer in time", None, 504, "timeout"),
    ]


@pytest.mark.parametrize("at_call", [False, True], ids=["awaited", "at-call"])
@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize(("case", "exc", "status", "code"), _failures(), ids=[f[0] for f in _failures()])
def test_handle_failures_are_told_apart(
    case: str, exc: BaseException | None, status: int, code: str, stream: bool, at_call: bool
) -> None:
    handle = FailingHandle(exc, at_call=at_call)
    gateway, _ = _gateway(handle=handle, http={"request_timeout_s": 0.2})
    r = call(gateway, "POST", "/v1/chat/completions", chat(stream=stream))
    assert r.status == status, (case, r.text)
    assert r.json()["error"]["code"] == code
    assert ("retry-after" in r.headers) == (code == "overloaded")
    if code == "overloaded":
        assert int(r.headers["retry-after"]) >= 1
    if code == "timeout":
        assert handle.responses[-1].cancelled  # the abandoned call is cancelled, not left running


def test_failure_response_names_the_callee() -> None:
    status, body, _ = failure_response(ray_exceptions.ActorDiedError(), "model 'm'", 5)
    assert status == 502 and "model 'm'" in body["error"]["message"]


def test_engine_failure_is_a_500_with_the_reason() -> None:
    gateway, _ = _gateway()
    for stream in (False, True):
        r = call(gateway, "POST", "/v1/chat/completions", chat("break", stream=stream))
        assert r.status == 500 and r.json()["error"]["code"] == "engine_error"
        assert "CUDA out of memory" in r.json()["error"]["message"]


# -- streaming --------------------------------------------------------------------------------------


def test_stream_sends_each_piece_as_it_comes() -> None:
    engine = StreamingEchoEngine(pieces=["Hel", "lo", ", wor", "ld"])
    gateway, _ = _gateway(engine=engine)
    r = call(
        gateway, "POST", "/v1/chat/completions", chat(stream=True, stream_options={"include_usage": True})
    )
    assert r.status == 200
    events = sse(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert [d.get("content") for d in deltas if d.get("content")] == ["Hel", "lo", ", wor", "ld"]
    assert deltas[0]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}
    assert len({c["id"] for c in chunks}) == 1
    assert engine.closed_streams == 1


def test_stream_from_an_engine_that_cannot_stream_is_one_piece() -> None:
    gateway, _ = _gateway(engine=EchoEngine())
    events = sse(call(gateway, "POST", "/v1/chat/completions", chat("q", stream=True)))
    contents = [c["choices"][0]["delta"].get("content") for c in events[:-1] if c["choices"]]
    assert [c for c in contents if c] == ["echo q"]


def test_stream_failing_midway_ends_with_an_error_event() -> None:
    engine = StreamingEchoEngine(pieces=["a", "b", "c"], fail_after=2)
    gateway, _ = _gateway(engine=engine)
    r = call(gateway, "POST", "/v1/chat/completions", chat(stream=True))
    assert r.status == 200  # the status line went out with the first piece
    events = sse(r)
    assert [c["choices"][0]["delta"].get("content") for c in events[:-1]] == ["a", "b"]
    assert events[-1]["error"]["code"] == "engine_error" and "midway" in events[-1]["error"]["message"]
    assert "[DONE]" not in events


class RecordingHandle(LocalHandle):
    """A LocalHandle that remembers the stream calls it made."""

    calls: list[_Generator] = []  # noqa: RUF012

    def options(self, stream: bool = False) -> LocalHandle:
        return RecordingHandle(self._target, stream)

    def __getattr__(self, name: str) -> Any:
        method = super().__getattr__(name)

        class _Recorded:
            def remote(self, *args: Any) -> Any:
                call = method.remote(*args)
                RecordingHandle.calls.append(call)
                return call

        return _Recorded()


def test_a_client_leaving_midstream_cancels_the_replica_call() -> None:
    class Endless(StreamingEchoEngine):
        async def stream(
            self, request: ChatRequest, sampling: SamplingParams
        ) -> AsyncGenerator[Completion, None]:
            for i in range(10_000):
                await asyncio.sleep(0.001)
                yield Completion(text=f"{i} ")

    config = _config()
    handle = RecordingHandle(ChatServer(config, engine=Endless()))
    gateway, _ = _gateway(handle=handle, config=config)
    RecordingHandle.calls.clear()
    body = json.dumps(chat(stream=True)).encode()
    r = asyncio.run(_call(gateway.asgi_app(), "POST", "/v1/chat/completions", body, leave=True))
    assert r.status == 200
    (call,) = RecordingHandle.calls
    assert call.cancelled  # Serve would cancel the replica's generator, and the engine stops
    assert r.body.count(b"data: ") < 10_000


def test_stream_overload_is_refused_before_any_event() -> None:
    handle = FailingHandle(serve_exceptions.BackPressureError(num_queued_requests=1, max_queued_requests=1))
    gateway, _ = _gateway(handle=handle)
    r = call(gateway, "POST", "/v1/chat/completions", chat(stream=True))
    assert r.status == 503 and r.headers["content-type"] == "application/json"


def _server_stream(server: ChatServer, request: dict[str, Any]) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [part async for part in server.stream(request)]

    return asyncio.run(collect())


def test_chat_server_stream_holds_an_engine_slot_and_releases_it() -> None:
    engine = StreamingEchoEngine(pieces=["x", "y"])
    server = ChatServer(_config(max_concurrent_batches=1), engine=engine)
    parts = _server_stream(server, {"messages": [{"role": "user", "content": "q"}]})
    assert [p["text"] for p in parts] == ["x", "y", ""] and parts[-1]["finish_reason"] == "length"
    assert server._scheduler.running == 0
