"""The one narrow contract every model backend implements.

An engine turns chat requests into completions. Per-request problems (timeouts, HTTP errors, a
reply cut off) come back as a :class:`Completion` with ``status="failed"`` and a reason — never as
an exception that would sink the whole batch; only a broken setup (missing extra, bad model path)
raises, from the factory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from wbray.config import SamplingParams

Message = Mapping[str, str]


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion request.

    Attributes:
        messages: OpenAI-style messages (``role``, ``content``).
        json_schema: When set, the reply must be JSON matching this schema; backends that can
            constrain decoding do so, others ask for it (``response_format``) and the caller parses.
        request_id: Caller's id, echoed in logs and errors.
    """

    messages: Sequence[Message]
    json_schema: Mapping[str, Any] | None = None
    request_id: str = ""


@dataclass(frozen=True)
class Completion:
    """The result of one request.

    Attributes:
        text: The generated text (None when failed before any text existed).
        status: "ok", or "failed" with ``error`` saying why.
        error: Short reason for a failure, e.g. "http 500 after 4 retries", "timeout after 60 s".
        finish_reason: "stop", "length" (hit max_tokens) or None.
        prompt_tokens: Tokens in the rendered prompt (0 when unknown).
        completion_tokens: Tokens generated (0 when unknown).
        latency_s: Wall time spent on this request, including retries.
    """

    text: str | None
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, error: str, latency_s: float = 0.0, text: str | None = None) -> Completion:
        return cls(text=text, status="failed", error=error, latency_s=latency_s)


@runtime_checkable
class Engine(Protocol):
    """What a backend implements: one async batch call and a close."""

    #: The model identifier the engine serves (for logs and manifests).
    model_id: str

    async def generate(self, requests: Sequence[ChatRequest], sampling: SamplingParams) -> list[Completion]:
        """Return one completion per request, in order. Never raises for a per-request failure."""
        ...

    async def close(self) -> None:
        """Release models, sessions and threads."""
        ...
