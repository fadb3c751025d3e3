"""The ``openai`` backend: any OpenAI-compatible ``/v1/chat/completions`` endpoint.

wbray's own served endpoints, vLLM's OpenAI server and hosted APIs all speak this protocol. The
engine sends one HTTP request per :class:`ChatRequest`, at most ``max_concurrency`` at a time,
retries what is worth retrying (429, 5xx, 408, timeouts, dropped connections) with bounded,
jittered exponential backoff, and turns everything else into a failed :class:`Completion` — a
batch never raises because one request went wrong.

aiohttp (a Ray dependency) is imported only when a request is made, so importing this module stays
cheap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import logging
import os
import random
import threading
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from wbray.config import OpenAIEngineConfig, SamplingParams
from wbray.engines._base import ChatRequest, Completion, Engine
from wbray.engines._registry import register_engine
from wbray.errors import ConfigError

if TYPE_CHECKING:
    import aiohttp

logger = logging.getLogger(__name__)

#: Statuses that say "try again later" rather than "this request is wrong".
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: How much of an error body goes into a failure reason.
_ERROR_BODY_CHARS = 200
#: Sampling fields in the order they are sent. top_k and repetition_penalty are not part of
#: OpenAI's API; vLLM's server reads them as extra top-level fields (what the SDK's ``extra_body``
#: sends) and fills them from the model's generation_config when absent, so a set value — top_k -1
#: ("off") included — is always sent. Hosted APIs may reject them: drop them with ``omit_sampling``.
_SAMPLING_FIELDS = ("temperature", "top_p", "max_tokens", "seed", "top_k", "repetition_penalty")
#: ±20 % jitter keeps replicas that failed together from retrying in lockstep.
_JITTER = 0.2


@dataclass(frozen=True)
class _Retryable:
    """An attempt that failed in a way worth retrying."""

    kind: Literal["http", "timeout", "connection"]
    detail: str
    retry_after_s: float | None = None


@dataclass
class _LoopState:
    """The session and concurrency bound belonging to one event loop.

    ``closer`` is a started async generator whose ``finally`` closes the session. asyncio finalizes
    open async generators when a loop shuts down (``asyncio.run`` calls ``shutdown_asyncgens``),
    so a session whose loop ends without :meth:`OpenAIEngine.close` is still closed inside its own
    loop instead of leaking sockets that no loop can close any more.
    """

    session: aiohttp.ClientSession
    semaphore: asyncio.Semaphore
    closer: AsyncGenerator[None, None]


class OpenAIEngine:
    """An :class:`~wbray.engines.Engine` over an OpenAI-compatible chat completions endpoint.

    The aiohttp session is created lazily in the event loop that calls :meth:`generate`. Ray
    actors may drive one engine from several loops (``asyncio.run`` per batch, or several threads),
    so each loop gets its own session and semaphore; sessions of loops that have since closed are
    released on the next call. ``max_concurrency`` therefore bounds requests in flight per loop.

    Args:
        config: The endpoint, model, retry and timeout settings.

    Raises:
        ConfigError: ``base_url`` is not an http(s) URL, or ``api_key_env`` names a variable that
            is unset or empty.
    """

    def __init__(self, config: OpenAIEngineConfig) -> None:
        self.model_id = config.model
        self._config = config
        self._url = _base_url(config) + "/chat/completions"
        self._headers = _auth_headers(config)
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}

    def __repr__(self) -> str:
        # Explicit so that no repr ever shows the headers (they carry the API key).
        return f"OpenAIEngine(model={self.model_id!r}, url={self._url!r})"

    async def generate(self, requests: Sequence[ChatRequest], sampling: SamplingParams) -> list[Completion]:
        """Send every request and return one completion per request, in request order.

        Args:
            requests: The chat requests.
            sampling: Sampling settings; None fields and fields in ``omit_sampling`` are not sent.

        Returns:
            One :class:`Completion` per request; failures have ``status="failed"`` and a reason.
        """
        if not requests:
            return []
        state = await self._state_for_running_loop()
        fields = self._sampling_fields(sampling)
        return list(await asyncio.gather(*(self._complete(state, r, fields) for r in requests)))

    async def close(self) -> None:
        """Close every session this engine opened. Safe to call more than once.

        A later :meth:`generate` opens a new session.
        """
        with self._lock:
            states, self._states = self._states, {}
        current = asyncio.get_running_loop()
        for loop, state in states.items():
            await _close_state(loop, state, current)

    # -- sessions ---------------------------------------------------------------------------------

    async def _state_for_running_loop(self) -> _LoopState:
        import aiohttp

        loop = asyncio.get_running_loop()
        created = False
        with self._lock:
            stale = {lp: st for lp, st in self._states.items() if lp.is_closed()}
            for lp in stale:
                del self._states[lp]
            state = self._states.get(loop)
            if state is None or state.session.closed:
                connector = aiohttp.TCPConnector(limit=self._config.max_concurrency)
                session = aiohttp.ClientSession(
                    connector=connector,
                    timeout=aiohttp.ClientTimeout(total=self._config.timeout_s),
                )
                state = _LoopState(
                    session, asyncio.Semaphore(self._config.max_concurrency), _close_at_loop_end(session)
                )
                self._states[loop] = state
                created = True
        if created:
            # Starting the generator registers it with this loop's shutdown.
            await anext(state.closer)
        for lp, st in stale.items():
            await _close_state(lp, st, loop)
        return state

    # -- one request ------------------------------------------------------------------------------

    def _sampling_fields(self, sampling: SamplingParams) -> dict[str, Any]:
        omit = set(self._config.omit_sampling)
        fields: dict[str, Any] = {}
        for name in _SAMPLING_FIELDS:
            value = getattr(sampling, name)
            if value is None or name in omit:
                continue
            fields[name] = value
        return fields

    def _body(self, request: ChatRequest, fields: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._config.model,
            "messages": [dict(m) for m in request.messages],
            **fields,
        }
        if request.json_schema is not None:
            mode = self._config.structured_output
            if mode == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "judge_reply",
                        "schema": dict(request.json_schema),
                        "strict": True,
                    },
                }
            elif mode == "json_object":
                body["response_format"] = {"type": "json_object"}
        return body

    async def _complete(self, state: _LoopState, request: ChatRequest, fields: dict[str, Any]) -> Completion:
        body = self._body(request, fields)
        started: float | None = None
        retries = 0
        while True:
            # The slot is held per attempt, not during backoff, so one struggling request does not
            # idle a slot others could use.
            async with state.semaphore:
                if started is None:
                    started = time.monotonic()
                outcome = await self._attempt(state.session, body)
            if isinstance(outcome, Completion):
                if outcome.status == "failed":
                    logger.warning("request %r failed: %s", request.request_id, outcome.error)
                return dataclasses.replace(outcome, latency_s=time.monotonic() - started)
            if retries >= self._config.max_retries:
                error = self._exhausted(outcome, retries)
                logger.warning("request %r failed: %s", request.request_id, error)
                return Completion.failed(error, latency_s=time.monotonic() - started)
            delay = self._backoff(retries, outcome.retry_after_s)
            logger.debug(
                "request %r: %s; retry %d/%d in %.2f s",
                request.request_id,
                outcome.detail,
                retries + 1,
                self._config.max_retries,
                delay,
            )
            await asyncio.sleep(delay)
            retries += 1

    async def _attempt(self, session: aiohttp.ClientSession, body: dict[str, Any]) -> Completion | _Retryable:
        import aiohttp

        try:
            async with session.post(self._url, json=body, headers=self._headers) as response:
                raw = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            # Before ClientError: aiohttp's timeout errors are both.
            return _Retryable("timeout", "timeout")
        except aiohttp.ClientError as exc:
            return _Retryable("connection", _describe(exc))
        if status in _RETRYABLE_STATUS:
            return _Retryable("http", f"http {status}", _parse_retry_after(retry_after))
        if not 200 <= status < 300:
            snippet = raw.decode("utf-8", errors="replace").strip()[:_ERROR_BODY_CHARS]
            return Completion.failed(f"http {status}: {snippet}" if snippet else f"http {status}")
        return _parse_completion(raw)

    def _backoff(self, retries: int, retry_after_s: float | None) -> float:
        cap = self._config.max_backoff_s
        if retry_after_s is not None:
            return min(retry_after_s, cap)
        # The exponent is bounded so that a huge max_retries cannot overflow the float.
        base = self._config.initial_backoff_s * 2.0 ** min(retries, 32)
        return min(cap, base * self._rng.uniform(1 - _JITTER, 1 + _JITTER))

    def _exhausted(self, outcome: _Retryable, retries: int) -> str:
        if outcome.kind == "timeout":
            return f"timeout after {self._config.timeout_s} s ({retries} retries)"
        if outcome.kind == "connection":
            return f"connection error: {outcome.detail} ({retries} retries)"
        return f"{outcome.detail} after {retries} retries"


async def _close_at_loop_end(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await session.close()


async def _aclose(closer: AsyncGenerator[None, None]) -> None:
    await closer.aclose()


async def _close_state(
    loop: asyncio.AbstractEventLoop, state: _LoopState, current: asyncio.AbstractEventLoop
) -> None:
    if loop is current or loop.is_closed():
        # A closed loop's connector skips its transports, so closing from here is safe (and a
        # no-op when the loop's shutdown already ran the closer).
        await _aclose(state.closer)
    elif loop.is_running():
        # Alive in another thread: its session must be closed there.
        asyncio.run_coroutine_threadsafe(_aclose(state.closer), loop)
    else:
        # An idle loop nobody runs: nothing can await its transports; let them be collected.
        state.session.detach()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is not a delay


def _parse_completion(raw: bytes) -> Completion:
    """The completion in a 2xx body, or a failed one saying what is malformed."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return Completion.failed(f"malformed response: not JSON ({exc}; body starts {raw[:80]!r})")
    if not isinstance(data, dict):
        return Completion.failed(f"malformed response: expected a JSON object, got {type(data).__name__}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        # Some proxies answer 200 with an error object; show it rather than just "no choices".
        error = data.get("error")
        hint = f" (error: {json.dumps(error)[:_ERROR_BODY_CHARS]})" if error is not None else ""
        return Completion.failed(f"malformed response: no choices{hint}")
    first = choices[0]
    message = first.get("message") if isinstance(first, dict) else None
    if not isinstance(message, dict):
        return Completion.failed("malformed response: choices[0] has no message")
    finish_reason = first.get("finish_reason")
    content = message.get("content")
    if content is None:
        return Completion.failed(
            f"malformed response: choices[0].message.content is null (finish_reason={finish_reason!r})"
        )
    if not isinstance(content, str):
        return Completion.failed(
            f"malformed response: choices[0].message.content is {type(content).__name__}, not a string"
        )
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return Completion(
        text=content,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _base_url(config: OpenAIEngineConfig) -> str:
    base = config.base_url.strip()
    if not base.startswith(("http://", "https://")):
        raise ConfigError(
            f"openai engine: base_url {config.base_url!r} must start with http:// or https:// "
            "(e.g. http://127.0.0.1:8000/v1)"
        )
    return base.rstrip("/")


def _auth_headers(config: OpenAIEngineConfig) -> dict[str, str]:
    if config.api_key_env is None:
        return {}
    key = os.environ.get(config.api_key_env, "")
    if not key:
        # Name the variable, never a value: the message may end up in logs.
        raise ConfigError(
            f"openai engine: api_key_env names the environment variable "
            f"{config.api_key_env!r}, which is unset or empty; export it before running"
        )
    return {"Authorization": f"Bearer {key}"}


#: Model-list fields that change when a server merely restarts (or are per-request noise); the
#: rest (id, root, parent, max_model_len, owned_by, metadata) says what is served.
_VOLATILE_MODEL_FIELDS = frozenset({"created", "permission", "object"})
#: Seconds the probe waits for ``/models``; it runs once per run on the driver, before any work.
PROBE_TIMEOUT_S = 20.0


def served_identity(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The stable part of one ``/v1/models`` entry (what is served, not when it started)."""
    return {k: v for k, v in sorted(entry.items()) if k not in _VOLATILE_MODEL_FIELDS}


def describe(config: OpenAIEngineConfig) -> dict[str, Any] | None:
    """Ask ``GET <base_url>/models`` what the endpoint serves under ``config.model``.

    Returns:
        The stable fields of the model's entry, or None when ``probe_models`` is off.

    Raises:
        ConfigError: The endpoint is unreachable, has no ``/models``, or does not serve the model —
            naming the URL and what to do (never the API key).
    """
    if not config.probe_models:
        return None
    import urllib.error
    import urllib.request

    url = _base_url(config) + "/models"
    request = urllib.request.Request(url, headers={**_auth_headers(config), "Accept": "application/json"})
    hint = "set probe_models: false for an API without GET /models"
    try:
        # _base_url admits only http(s), so urlopen cannot be steered to file:// or other schemes.
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"openai engine: GET {url} answered HTTP {exc.code}; {hint}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"openai engine: cannot reach {url} ({reason}); is the endpoint up?") from None
    except ValueError:
        raise ConfigError(f"openai engine: GET {url} did not answer JSON; {hint}") from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ConfigError(f"openai engine: GET {url} did not answer a model list; {hint}")
    entries = [e for e in data if isinstance(e, dict)]
    for entry in entries:
        if entry.get("id") == config.model:
            return served_identity(entry)
    served = ", ".join(str(e.get("id")) for e in entries) or "nothing"
    raise ConfigError(f"openai engine: {url} does not serve model {config.model!r} (it serves: {served})")


@register_engine("openai", describe=describe)
def _factory(config: OpenAIEngineConfig) -> Engine:
    """Build the ``openai`` engine (registered as backend ``openai``)."""
    return OpenAIEngine(config)
