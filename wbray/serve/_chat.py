"""The chat deployment: a wbray engine behind OpenAI's chat-completions schema.

Two layers. Pure functions translate between OpenAI request/response bodies and wbray's
:class:`~wbray.engines.ChatRequest` / :class:`~wbray.engines.Completion` (testable without Ray).
:class:`ChatServer` is the replica: it owns one engine and groups concurrent requests into engine
batches; the gateway (``_app.py``) and the critic call it through a DeploymentHandle.

Nothing here imports Ray: the builder wraps :class:`ChatServer` with ``serve.deployment``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

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


def stream_events(
    completion: Completion, model: str, request_id: str, created: int, include_usage: bool
) -> list[str]:
    """The server-sent events of a streamed answer.

    The engines are not token-streaming, so the whole text is one content chunk, followed by the
    finish chunk, an optional usage chunk and ``[DONE]`` — the sequence OpenAI clients expect.
    """

    def chunk(delta: dict[str, Any], finish: str | None, usage: dict[str, int] | None = None) -> str:
        data: dict[str, Any] = {
            "id": request_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            if usage is None
            else [],
        }
        if usage is not None:
            data["usage"] = usage
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    events = [
        chunk({"role": "assistant", "content": completion.text or ""}, None),
        chunk({}, completion.finish_reason or "stop"),
    ]
    if include_usage:
        events.append(chunk({}, None, _usage(completion)))
    events.append("data: [DONE]\n\n")
    return events


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body (what the SDK's exceptions read ``message`` from)."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# -- micro-batching ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _Waiting:
    request: ChatRequest
    future: asyncio.Future[Completion]


class _Batcher:
    """Groups concurrent requests with equal sampling into one ``engine.generate`` call.

    Callers arrive one request at a time (HTTP, handle calls), while engines are fastest on
    batches; a short wait (``wait_s``) lets concurrent requests share a batch. Requests with
    different sampling cannot share a call, so each sampling setting queues separately.
    """

    def __init__(self, engine: Engine, max_batch: int, wait_s: float) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._wait_s = wait_s
        self._pending: dict[str, tuple[SamplingParams, list[_Waiting]]] = {}
        # Running batches are referenced here so the event loop does not collect them mid-flight.
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, request: ChatRequest, sampling: SamplingParams) -> Completion:
        loop = asyncio.get_running_loop()
        key = sampling.model_dump_json()
        waiting = _Waiting(request, loop.create_future())
        _, queue = self._pending.setdefault(key, (sampling, []))
        queue.append(waiting)
        if len(queue) >= self._max_batch:
            self._flush(key)
        elif len(queue) == 1:
            loop.call_later(self._wait_s, self._flush, key)
        return await waiting.future

    def _flush(self, key: str) -> None:
        entry = self._pending.pop(key, None)
        if entry is None:
            return
        sampling, queue = entry
        task = asyncio.get_running_loop().create_task(self._run(queue, sampling))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: Sequence[_Waiting], sampling: SamplingParams) -> None:
        live = [w for w in batch if not w.future.done()]  # callers that gave up are skipped
        if not live:
            return
        try:
            completions = await self._engine.generate([w.request for w in live], sampling)
        except Exception as exc:
            # Engines report per-request failures as data; an exception is a bug or a broken
            # engine. Fail this batch's requests with the reason instead of leaving callers waiting.
            logger.exception("engine %s raised on a batch of %d", self._engine.model_id, len(live))
            completions = [Completion.failed(f"engine error: {type(exc).__name__}: {exc}")] * len(live)
        for w, c in zip(live, completions, strict=True):
            if not w.future.done():
                w.future.set_result(c)


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
        max_batch = int(getattr(config.engine, "batch_size", 8))
        self._batcher = _Batcher(self._engine, max_batch=max_batch, wait_s=config.batch_wait_timeout_s)
        logger.info("chat deployment %s: engine %s ready", config.name, self._engine.model_id)

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one request; the in-cluster API (DeploymentHandle) of this deployment.

        Args:
            request: ``{"messages": [...], "json_schema": dict | None, "sampling": dict,
                "request_id": str}``; ``sampling`` fields left out take the deployment's defaults.

        Returns:
            The :class:`~wbray.engines.Completion` as a dict (``status`` "failed" with ``error``
            on failure; this method does not raise for a failed generation).
        """
        sampling = self._config.sampling.merged(SamplingParams(**request.get("sampling") or {}))
        chat = ChatRequest(
            messages=list(request["messages"]),
            json_schema=request.get("json_schema"),
            request_id=str(request.get("request_id", "")),
        )
        started = time.monotonic()
        completion = await self._batcher.submit(chat, sampling)
        if not completion.latency_s:
            completion = dataclasses.replace(completion, latency_s=time.monotonic() - started)
        return completion_to_dict(completion)

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

    def model_id(self) -> str:
        """The engine's model identifier."""
        return self._engine.model_id
