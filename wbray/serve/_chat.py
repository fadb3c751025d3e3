"""The chat deployment: a wbray engine behind OpenAI's chat-completions schema.

Two layers. Pure functions translate between OpenAI request/response bodies and wbray's
:class:`~wbray.engines.ChatRequest` / :class:`~wbray.engines.Completion` (testable without Ray).
:class:`ChatServer` is the replica: it owns one engine, queues requests itself and groups them
into engine batches (``_Scheduler``), and streams answers token by token from engines that can;
the gateway (``_gateway.py``) and the critic call it through a DeploymentHandle.

Nothing here imports Ray: the builder wraps :class:`ChatServer` with ``serve.deployment``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from wbray.config import SamplingParams
from wbray.engines import ChatRequest, Completion, Engine, create_engine
from wbray.serve._config import ModelDeploymentConfig

logger = logging.getLogger(__name__)


class RequestError(ValueError):
    """A request the model cannot serve as asked (becomes a 4xx naming ``param``)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.status = status


# -- OpenAI request schema --------------------------------------------------------------------------


class ContentPart(BaseModel):
    """One part of a multi-part message; only text parts are served."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Part type; only 'text' is supported.")
    text: str | None = Field(None, description="The text of a 'text' part.")


class ChatMessage(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"] = Field(description="Who speaks.")
    content: str | list[ContentPart] = Field(description="Text, or a list of text parts.")


class JsonSchemaFormat(BaseModel):
    """The ``json_schema`` member of a ``response_format``."""

    model_config = ConfigDict(extra="allow")

    name: str = Field("response", description="Schema name (informational).")
    schema_: dict[str, Any] = Field(alias="schema", description="The JSON schema the reply must match.")
    strict: bool | None = Field(None, description="Accepted for compatibility; decoding is always strict.")


class ResponseFormat(BaseModel):
    """OpenAI ``response_format``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"] = Field(description="Output format.")
    json_schema: JsonSchemaFormat | None = Field(None, description="Required when type is json_schema.")


class StreamOptions(BaseModel):
    """OpenAI ``stream_options``."""

    model_config = ConfigDict(extra="allow")

    include_usage: bool = Field(False, description="Send a last chunk carrying token usage.")


class ChatCompletionBody(BaseModel):
    """The body of ``POST /v1/chat/completions`` (the subset of OpenAI's schema that is served).

    Unknown top-level fields are ignored, as OpenAI-compatible servers commonly do, so that newer
    clients keep working; fields that would change the answer but cannot be honoured (``n`` > 1,
    non-text content) are refused with 400 instead.
    """

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="Served model name (see GET /v1/models).")
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation.")
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus mass.")
    max_tokens: int | None = Field(None, ge=1, description="Most new tokens (legacy name).")
    max_completion_tokens: int | None = Field(None, ge=1, description="Most new tokens.")
    seed: int | None = Field(None, description="Sampling seed.")
    n: int | None = Field(None, ge=1, description="Choices per request; only 1 is served.")
    stream: bool = Field(False, description="Answer as server-sent events.")
    stream_options: StreamOptions | None = Field(None, description="Streaming options.")
    response_format: ResponseFormat | None = Field(None, description="Constrain the reply's format.")
    top_k: int | None = Field(None, ge=-1, description="vLLM extension: top-k cut-off.")
    repetition_penalty: float | None = Field(None, gt=0, description="vLLM extension.")

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError("only n=1 is served")
        return value


# -- translation ------------------------------------------------------------------------------------


def _message_text(message: ChatMessage, position: int) -> str:
    if isinstance(message.content, str):
        return message.content
    texts = []
    for j, part in enumerate(message.content):
        if part.type != "text" or part.text is None:
            raise RequestError(
                f"messages[{position}].content[{j}]: only text parts are supported, got type {part.type!r}",
                param=f"messages[{position}].content[{j}].type",
            )
        texts.append(part.text)
    return "".join(texts)


def engine_request(body: ChatCompletionBody, defaults: SamplingParams) -> dict[str, Any]:
    """The handle payload of :meth:`ChatServer.complete` for an OpenAI body.

    Args:
        body: The validated request body.
        defaults: The deployment's sampling defaults; fields the request sets replace them.

    Returns:
        ``{"messages", "json_schema", "sampling", "request_id"}`` (plain data, crosses processes).

    Raises:
        RequestError: The body asks for something this server cannot honour.
    """
    messages = [
        # "developer" is OpenAI's newer name for the system role; chat templates know only "system".
        {"role": "system" if m.role == "developer" else m.role, "content": _message_text(m, i)}
        for i, m in enumerate(body.messages)
    ]
    schema: dict[str, Any] | None = None
    fmt = body.response_format
    if fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None:
            raise RequestError(
                "response_format.json_schema is required when response_format.type is 'json_schema'",
                param="response_format.json_schema",
            )
        schema = fmt.json_schema.schema_
    elif fmt is not None and fmt.type == "json_object":
        schema = {"type": "object"}
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    override = SamplingParams(
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        max_tokens=max_tokens,
        repetition_penalty=body.repetition_penalty,
        seed=body.seed,
    )
    return {
        "messages": messages,
        "json_schema": schema,
        "sampling": defaults.merged(override).model_dump(exclude_none=True),
        "request_id": f"chatcmpl-{uuid.uuid4().hex}",
    }


def completion_to_dict(completion: Completion) -> dict[str, Any]:
    """A :class:`Completion` as plain data (what crosses the handle)."""
    out = dataclasses.asdict(completion)
    out["extra"] = dict(completion.extra)
    return out


def completion_from_dict(data: dict[str, Any]) -> Completion:
    """The inverse of :func:`completion_to_dict`."""
    return Completion(**data)


def completion_body(completion: Completion, model: str, request_id: str, created: int) -> dict[str, Any]:
    """The OpenAI ``chat.completion`` body of a successful completion."""
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text or ""},
                "logprobs": None,
                "finish_reason": completion.finish_reason or "stop",
            }
        ],
        "usage": _usage(completion),
    }


def _usage(completion: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }


class ChunkEncoder:
    """The server-sent events of one streamed answer, in the order OpenAI clients expect.

    Content chunks as the parts arrive (the first also names the role), then one finish chunk, an
    optional usage chunk and ``[DONE]``; or, when generation fails midway, an ``error`` event (which
    the ``openai`` SDK raises as an APIError).

    Args:
        model: The served model name.
        request_id: The ``chatcmpl-`` id of the answer.
        created: Unix time of the answer.
        include_usage: Send the usage chunk (``stream_options.include_usage``).
    """

    def __init__(self, model: str, request_id: str, created: int, include_usage: bool) -> None:
        self._model = model
        self._id = request_id
        self._created = created
        self._include_usage = include_usage
        self._started = False

    def _chunk(self, delta: dict[str, Any], finish: str | None, usage: dict[str, int] | None = None) -> str:
        data: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": []
            if usage is not None
            else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if usage is not None:
            data["usage"] = usage
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    def content(self, part: Completion) -> list[str]:
        """The chunk of one part's new text (none for an empty part after the first)."""
        if self._started and not part.text:
            return []
        delta: dict[str, Any] = {"content": part.text or ""}
        if not self._started:
            delta = {"role": "assistant", **delta}
            self._started = True
        return [self._chunk(delta, None)]

    def close(self, last: Completion) -> list[str]:
        """The closing events: the finish chunk (reason of the last part), usage, ``[DONE]``."""
        events = [self._chunk({}, last.finish_reason or "stop")]
        if self._include_usage:
            events.append(self._chunk({}, None, _usage(last)))
        events.append("data: [DONE]\n\n")
        return events

    @staticmethod
    def error(message: str, kind: str, code: str | None = None) -> str:
        """The event that ends a stream which failed after it started."""
        return f"data: {json.dumps(error_body(message, kind, code=code), ensure_ascii=False)}\n\n"


def stream_events(
    completion: Completion, model: str, request_id: str, created: int, include_usage: bool
) -> list[str]:
    """The server-sent events of an answer that arrives in one piece."""
    encoder = ChunkEncoder(model, request_id, created, include_usage)
    return [*encoder.content(completion), *encoder.close(completion)]


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body (what the SDK's exceptions read ``message`` from)."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# -- scheduling -------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class _Waiting:
    """A request (or a stream's claim on a slot) waiting in a replica's line."""

    #: Requests with equal keys may share a batch; None marks a claim that runs alone (a stream).
    key: str | None
    sampling: SamplingParams
    request: ChatRequest | None
    #: Resolves to the Completion of a request, or to None when a claim gets its slot.
    future: asyncio.Future[Any]
    arrived: float


class _Scheduler:
    """Feeds one replica's engine: first come first served, in batches, a bounded number at once.

    Requests wait here, inside the replica, rather than in the caller's queue: Serve's router
    retries a full replica with back-off of up to 0.5 s and nothing wakes it when a slot frees,
    which left a 0.5 s backend idle ~40% of the time (BENCHMARKS P4); here a finished call starts
    the next one at once.

    The oldest waiting request decides the next batch: it takes every waiting request with the same
    sampling (up to ``max_batch``), and starts when the batch is full, or once the oldest has
    waited ``wait_s`` (so on an idle engine concurrent arrivals can join, and on a busy one the
    batch is whatever queued meanwhile). At most ``max_concurrent`` engine calls run at once
    (None: no bound here; Serve's ``max_ongoing_requests`` bounds them). Streams claim a slot of
    their own in the same line.

    Not ``@serve.batch``: it cannot keep requests with different sampling apart (one engine call
    takes one sampling), it forms a batch before a slot is free, so requests arriving while the
    engine is busy cannot join it, and it needs Serve to test.
    """

    def __init__(self, engine: Engine, max_batch: int, max_concurrent: int | None, wait_s: float) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._max_concurrent = max_concurrent
        self._wait_s = wait_s
        self._line: collections.deque[_Waiting] = collections.deque()
        self._running = 0
        self._timer: asyncio.TimerHandle | None = None
        # Running batches are referenced here so the event loop does not collect them mid-flight.
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> int:
        """Engine calls (batches and streams) running now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Requests and claims waiting for an engine slot."""
        return sum(1 for w in self._line if not w.future.done())

    async def submit(self, request: ChatRequest, sampling: SamplingParams) -> Completion:
        """Run one request on the engine (in some batch) and return its completion."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(sampling.model_dump_json(), sampling, request, loop.create_future(), loop.time())
        self._line.append(waiting)
        self._dispatch()
        # A caller that gives up cancels its future; the dispatcher then skips it.
        result: Completion = await waiting.future
        return result

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one engine slot for the body of the ``async with`` (waiting in line for it)."""
        loop = asyncio.get_running_loop()
        claim = _Waiting(None, SamplingParams(), None, loop.create_future(), loop.time())
        self._line.append(claim)
        self._dispatch()
        try:
            await claim.future
        except asyncio.CancelledError:
            if claim.future.done() and not claim.future.cancelled():
                self._release()  # granted just as the caller gave up
            raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        self._running -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._line and (self._max_concurrent is None or self._running < self._max_concurrent):
            head = self._line[0]
            if head.future.done():
                self._line.popleft()
                continue
            if head.key is None:
                self._line.popleft()
                self._running += 1
                head.future.set_result(None)
                continue
            batch = [w for w in self._line if w.key == head.key and not w.future.done()][: self._max_batch]
            due = head.arrived + self._wait_s
            if len(batch) < self._max_batch and loop.time() < due:
                self._wake_at(loop, due)
                return
            for w in batch:
                self._line.remove(w)
            self._running += 1
            task = loop.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _wake_at(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    async def _run(self, batch: Sequence[_Waiting]) -> None:
        try:
            live = [w for w in batch if not w.future.done()]  # callers that gave up are skipped
            if not live:
                return
            requests = [w.request for w in live if w.request is not None]
            try:
                completions = await self._engine.generate(requests, live[0].sampling)
            except Exception as exc:
                # Engines report per-request failures as data; an exception is a bug or a broken
                # engine. Fail this batch's requests with the reason instead of leaving callers waiting.
                logger.exception("engine %s raised on a batch of %d", self._engine.model_id, len(live))
                completions = [Completion.failed(f"engine error: {type(exc).__name__}: {exc}")] * len(live)
            for w, c in zip(live, completions, strict=True):
                if not w.future.done():
                    w.future.set_result(c)
        finally:
            self._release()


@runtime_checkable
class StreamingEngine(Protocol):
    """An engine that can also hand out an answer as it is generated (``transformers``)."""

    def stream(self, request: ChatRequest, sampling: SamplingParams) -> AsyncGenerator[Completion, None]:
        """Completions whose text is the new text; the last carries finish_reason and usage."""
        ...


# -- the replica ------------------------------------------------------------------------------------


class ChatServer:
    """One chat model replica (wrapped by ``serve.deployment`` in the builder).

    Args:
        config: The model deployment's settings.
        engine: An engine to use instead of building one from ``config.engine`` (tests).
    """

    def __init__(self, config: ModelDeploymentConfig, engine: Engine | None = None) -> None:
        self._config = config
        self._engine = engine if engine is not None else create_engine(config.engine)
        self._scheduler = _Scheduler(
            self._engine,
            max_batch=config.batch_limit(),
            max_concurrent=config.max_concurrent_batches,
            wait_s=config.batch_wait_timeout_s,
        )
        logger.info("chat deployment %s: engine %s ready", config.name, self._engine.model_id)

    def _parse(self, request: dict[str, Any]) -> tuple[ChatRequest, SamplingParams]:
        sampling = self._config.sampling.merged(SamplingParams(**request.get("sampling") or {}))
        chat = ChatRequest(
            messages=list(request["messages"]),
            json_schema=request.get("json_schema"),
            request_id=str(request.get("request_id", "")),
        )
        return chat, sampling

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one request; the in-cluster API (DeploymentHandle) of this deployment.

        Args:
            request: ``{"messages": [...], "json_schema": dict | None, "sampling": dict,
                "request_id": str}``; ``sampling`` fields left out take the deployment's defaults.

        Returns:
            The :class:`~wbray.engines.Completion` as a dict (``status`` "failed" with ``error``
            on failure; this method does not raise for a failed generation).
        """
        chat, sampling = self._parse(request)
        started = time.monotonic()
        completion = await self._scheduler.submit(chat, sampling)
        if not completion.latency_s:
            completion = dataclasses.replace(completion, latency_s=time.monotonic() - started)
        return completion_to_dict(completion)

    async def stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Answer one request as it is generated (call with ``handle.options(stream=True)``).

        Args:
            request: As :meth:`complete`.

        Yields:
            Completion dicts whose ``text`` is the text added since the previous one; the last
            has ``finish_reason`` and the token counts, or ``status`` "failed" with ``error``.
            An engine that cannot stream answers in one piece (a single, last dict).
        """
        chat, sampling = self._parse(request)
        if not isinstance(self._engine, StreamingEngine):
            yield await self.complete(request)
            return
        # aclosing: when the caller goes away mid-answer, the engine hears it and stops.
        async with self._scheduler.slot(), contextlib.aclosing(self._engine.stream(chat, sampling)) as parts:
            async for part in parts:
                yield completion_to_dict(part)

    async def chat(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """An OpenAI chat body in, one ``chat.completion`` dict out, as an async generator.

        The generator form is what ``ray.data.llm.ServeDeploymentProcessorConfig`` calls
        (``method="chat"``); it yields exactly one item. Extra keys the processor adds
        (``request_id``, ``idx_in_batch``) are ignored.
        """
        body = ChatCompletionBody.model_validate(request)
        payload = engine_request(body, SamplingParams())
        result = completion_from_dict(await self.complete(payload))
        if result.status != "ok":
            yield error_body(result.error or "generation failed", "engine_error")
            return
        yield completion_body(result, body.model, payload["request_id"], int(time.time()))

    def identity(self) -> dict[str, Any]:
        """What this deployment serves (engine identity and default sampling; stable data).

        The same dict as the ``metadata`` of this model in ``GET /v1/models``.
        """
        return self._config.identity()

    def model_id(self) -> str:
        """The engine's model identifier."""
        return self._engine.model_id
