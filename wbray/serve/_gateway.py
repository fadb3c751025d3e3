"""The gateway: the HTTP edge of a served wbray application.

It checks the bearer token and the body size before anything is parsed (a pure ASGI middleware),
validates bodies (4xx naming the field), and routes to the chat and critic deployments through
DeploymentHandles. A failed handle call is answered by what failed, so a client (and a test) can
tell the cases apart:

==========================================  ======  =======================  ==============
what happened                               status  ``error.code``           ``Retry-After``
==========================================  ======  =======================  ==============
the deployment's queue is full (overload)   503     ``overloaded``           yes
no answer within ``http.request_timeout_s`` 504     ``timeout``
the replica died or is unreachable          502     ``replica_unavailable``
any other failed handle call                502     ``upstream_error``
==========================================  ======  =======================  ==============

:class:`Gateway` is plain Python: its FastAPI app (:meth:`Gateway.asgi_app`) can be built and
called in a unit test with stand-in handles; Serve builds the same app in the replica through
``__serve_build_asgi_app__``.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route signatures at runtime,
# and real annotation objects need no module lookup wherever the class is unpickled.
import asyncio
import hashlib
import hmac
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from wbray.engines import Completion
from wbray.errors import ConfigError
from wbray.serve._chat import (
    ChatCompletionBody,
    ChunkEncoder,
    RequestError,
    completion_body,
    completion_from_dict,
    engine_request,
    error_body,
)
from wbray.serve._config import HttpSettings, ModelDeploymentConfig
from wbray.serve._critic import ScoreRequest

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The one route that needs no token (load balancers and orchestrators probe it).
OPEN_PATHS = frozenset({"/health"})


def token_digest(token: str) -> str:
    """SHA-256 of a token: the gateway keeps only this, so no token is stored in the cluster."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def read_token_digest(token_env: str | None) -> str | None:
    """The digest of the token in ``$token_env``, or None when auth is off.

    Raises:
        ConfigError: The variable is named but unset or empty (naming the variable, never a value).
    """
    if token_env is None:
        return None
    token = os.environ.get(token_env, "")
    if not token:
        raise ConfigError(
            f"auth.token_env names the environment variable {token_env!r}, which is unset or empty; "
            "export the token there before starting (or set auth.token_env: null to serve without auth)"
        )
    return token_digest(token)


# -- the HTTP guard ---------------------------------------------------------------------------------


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    payload = json.dumps(body).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class GuardMiddleware:
    """Pure ASGI middleware: bearer-token check and request-size limit, before any parsing.

    Args:
        app: The wrapped ASGI app.
        digest: SHA-256 hex digest of the expected token, or None for no auth.
        max_body_bytes: Bodies larger than this get 413 (by Content-Length, or while streaming in).
    """

    def __init__(self, app: Any, digest: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.digest = digest
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        root = str(scope.get("root_path", ""))
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.digest is not None and path not in OPEN_PATHS and not self._authorized(headers):
            # The reason never echoes what was sent: the header may hold a real (wrong) secret.
            await _send_json(
                send,
                401,
                error_body("missing or invalid bearer token", "authentication_error", code="invalid_api_key"),
                [(b"www-authenticate", b'Bearer realm="wbray"')],
            )
            return
        length = headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_json(
                    send, 400, error_body("Content-Length is not a number", "invalid_request_error"), []
                )
                return
            if declared > self.max_body_bytes:
                await self._too_large(send)
                return
        await self._call_counting(scope, receive, send)

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        assert self.digest is not None
        return hmac.compare_digest(token_digest(token.strip()), self.digest)

    async def _too_large(self, send: Send) -> None:
        await _send_json(
            send,
            413,
            error_body(
                f"request body exceeds http.max_body_bytes ({self.max_body_bytes} bytes)",
                "invalid_request_error",
                code="request_too_large",
            ),
            [],
        )

    async def _call_counting(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Bodies without Content-Length (chunked) are counted as they arrive. Raising from receive
        # would not work: FastAPI turns any error while reading a body into its own 400. Instead the
        # guard answers 413 itself, tells the app the client left, and drops what the app sends.
        received = 0
        started = False
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    refused = True
                    if not started:
                        await self._too_large(send)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, tracking_send)


# -- handle failures --------------------------------------------------------------------------------


def _unavailable_types() -> tuple[type[BaseException], ...]:
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError

    # RayActorError covers ActorDiedError and ActorUnavailableError.
    return (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)


def _root_cause(exc: BaseException) -> BaseException:
    """The error a ``RayTaskError`` wraps (Serve re-raises replica-side errors wrapped)."""
    from ray.exceptions import RayTaskError

    seen = 0
    while isinstance(exc, RayTaskError) and seen < 8:
        cause = getattr(exc, "cause", None)
        if not isinstance(cause, BaseException):
            break
        exc, seen = cause, seen + 1
    return exc


def failure_response(
    exc: BaseException, what: str, timeout_s: float
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The HTTP answer to a handle call that raised: ``(status, body, headers)``.

    Args:
        exc: What the call raised (or the ``TimeoutError`` of the gateway's own deadline).
        what: The callee, for the message (e.g. ``model 'smollm2'``).
        timeout_s: The request timeout (named in the 504 message).
    """
    from ray.serve.exceptions import BackPressureError

    cause = _root_cause(exc)
    if isinstance(cause, BackPressureError):
        retry_after = cause.retry_after_s if cause.retry_after_s is not None else 1.0
        return (
            503,
            error_body(f"{what} is overloaded; retry later", "overloaded", code="overloaded"),
            {"Retry-After": str(max(1, math.ceil(retry_after)))},
        )
    if isinstance(cause, TimeoutError):
        return 504, error_body(f"{what} did not answer within {timeout_s} s", "timeout", code="timeout"), {}
    if isinstance(cause, _unavailable_types()):
        logger.warning("gateway: %s unavailable: %s", what, type(cause).__name__)
        return (
            502,
            error_body(
                f"{what} is unavailable ({type(cause).__name__}: its replica died or cannot be reached); "
                "retry: Serve replaces failed replicas",
                "service_unavailable",
                code="replica_unavailable",
            ),
            {},
        )
    logger.warning("gateway: %s failed: %s: %s", what, type(cause).__name__, cause)
    return (
        502,
        error_body(f"{what} failed: {type(cause).__name__}", "upstream_error", code="upstream_error"),
        {},
    )


def completion_failure(completion: Completion) -> tuple[int, dict[str, Any]]:
    """The HTTP answer to a failed completion: 400 when the engine blames the request, else 500."""
    param = completion.extra.get("param")
    if isinstance(param, str):
        code = completion.extra.get("code")
        return 400, error_body(
            f"{param}: {completion.error}",
            "invalid_request_error",
            param=param,
            code=code if isinstance(code, str) else None,
        )
    return 500, error_body(f"generation failed: {completion.error}", "engine_error", code="engine_error")


def validation_body(errors: list[Any]) -> dict[str, Any]:
    """The 422 body of FastAPI's validation errors, naming the first field at fault."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        where = [p for p in first.get("loc", ()) if isinstance(p, int)]
        at = f" (character {where[0]})" if where else ""
        ctx = first.get("ctx")
        reason = ctx.get("error", "JSON decode error") if isinstance(ctx, dict) else "JSON decode error"
        return error_body(
            f"request body is not valid JSON: {reason}{at}", "invalid_request_error", code="invalid_json"
        )
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    message = f"{param}: {first.get('msg')}" if param else f"request body: {first.get('msg')}"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    body = error_body(message + more, "invalid_request_error", param=param)
    # FastAPI's own list stays under "detail" for clients that read it; inputs are left out, so a
    # huge or binary body is never echoed back.
    body["detail"] = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in errors]
    plain: dict[str, Any] = json.loads(json.dumps(body, default=str))  # tuples -> lists
    return plain


def parse_failure(exc: BaseException | None) -> str:
    """Why a body could not be read at all (FastAPI says only "There was an error parsing the body")."""
    if isinstance(exc, UnicodeDecodeError):
        return (
            f"request body is not valid UTF-8 (byte {exc.object[exc.start : exc.start + 1]!r} at {exc.start})"
        )
    if isinstance(exc, RecursionError):
        return "request body is nested too deeply to parse"
    return "request body cannot be parsed as JSON"


def _cancel(call: Any) -> None:
    """Cancel a handle call, best effort.

    Serve's ``cancel()`` re-raises the call's own error when it already failed (e.g. the
    ``BackPressureError`` of a full queue); there is nothing left to cancel then.
    """
    try:
        call.cancel()
    except Exception as exc:
        logger.debug("gateway: cancelling a finished call: %s", type(exc).__name__)


async def _within(awaitable: Awaitable[Any], deadline: float) -> Any:
    """Await ``awaitable`` until the loop time ``deadline`` (TimeoutError after; it is cancelled)."""

    async def wait() -> Any:  # a DeploymentResponse is awaitable but not a coroutine
        return await awaitable

    remaining = deadline - asyncio.get_running_loop().time()
    return await asyncio.wait_for(wait(), max(0.0, remaining))


# -- the gateway ------------------------------------------------------------------------------------


class Gateway:
    """HTTP edge: /health, /v1/models, /v1/chat/completions, /v1/score.

    Args:
        models: Served model name -> handle of its chat deployment (``complete`` and ``stream``).
        model_configs: Served model name -> its deployment config (sampling defaults, identity).
        critic: Handle of the critic deployment, or None when no critic is served.
        http: The HTTP settings (body limit, request timeout).
        digest: SHA-256 hex digest of the bearer token, or None for no auth.
    """

    def __init__(
        self,
        models: dict[str, Any],
        model_configs: dict[str, ModelDeploymentConfig],
        critic: Any | None,
        http: HttpSettings,
        digest: str | None,
    ) -> None:
        self._models = models
        self._configs = model_configs
        self._critic = critic
        self._http = http
        self._digest = digest
        self._created = int(time.time())

    def __serve_build_asgi_app__(self) -> Any:
        """Serve's hook (``@serve.ingress()`` without an app): the app, built in the replica."""
        return self.asgi_app()

    def asgi_app(self) -> Any:
        """The FastAPI app of this gateway, wrapped in the auth and size guard."""
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse
        from starlette.exceptions import HTTPException

        api = FastAPI(title="wbray", docs_url=None, redoc_url=None, openapi_url=None)
        api.add_middleware(GuardMiddleware, digest=self._digest, max_body_bytes=self._http.max_body_bytes)

        @api.exception_handler(RequestValidationError)
        async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
            return JSONResponse(validation_body(list(exc.errors())), status_code=422)

        @api.exception_handler(HTTPException)
        async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
            if exc.status_code == 400 and exc.__cause__ is not None:
                message = parse_failure(exc.__cause__)
            else:
                message = str(exc.detail)
            kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
            return JSONResponse(error_body(message, kind), status_code=exc.status_code, headers=exc.headers)

        @api.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        @api.get("/v1/models")
        async def models() -> dict[str, Any]:
            return self.models_body()

        @api.post("/v1/chat/completions", response_model=None)
        async def chat_completions(body: ChatCompletionBody) -> Any:
            return await self.chat_completions(body)

        @api.post("/v1/score", response_model=None)
        async def score(body: ScoreRequest) -> Any:
            return await self.score(body)

        return api

    # -- routes -------------------------------------------------------------------------------------

    def models_body(self) -> dict[str, Any]:
        """``GET /v1/models``: each served model with its stable identity under ``metadata``."""
        return {
            "object": "list",
            "data": [
                {
                    "id": name,
                    "object": "model",
                    "created": self._created,
                    "owned_by": "wbray",
                    "metadata": self._configs[name].identity(),
                }
                for name in self._models
            ],
        }

    async def chat_completions(self, body: ChatCompletionBody) -> Any:
        """``POST /v1/chat/completions`` (streamed as server-sent events when ``stream`` is set)."""
        from fastapi.responses import JSONResponse

        handle = self._models.get(body.model)
        if handle is None:
            return JSONResponse(
                error_body(
                    f"model {body.model!r} is not served here (served: {', '.join(self._models)})",
                    "invalid_request_error",
                    param="model",
                    code="model_not_found",
                ),
                status_code=404,
            )
        try:
            payload = engine_request(body, self._configs[body.model].sampling)
        except RequestError as exc:
            return JSONResponse(
                error_body(str(exc), "invalid_request_error", param=exc.param), status_code=exc.status
            )
        what = f"model {body.model!r}"
        deadline = asyncio.get_running_loop().time() + self._http.request_timeout_s
        if body.stream:
            return await self._stream(handle, body, payload, what, deadline)
        result = await self._call(lambda: handle.complete.remote(payload), what, deadline)
        if not isinstance(result, dict):
            return result  # the error response
        completion = completion_from_dict(result)
        if completion.status != "ok":
            status, error = completion_failure(completion)
            return JSONResponse(error, status_code=status)
        return JSONResponse(completion_body(completion, body.model, payload["request_id"], int(time.time())))

    async def _stream(
        self, handle: Any, body: ChatCompletionBody, payload: dict[str, Any], what: str, deadline: float
    ) -> Any:
        from fastapi.responses import JSONResponse, StreamingResponse

        try:
            parts = handle.options(stream=True).stream.remote(payload)
        except Exception as exc:  # Serve refuses a full queue at once, before any response exists
            return self._failure(exc, what)
        # The first part decides the status line: a refusal or a failure before any text is still
        # an ordinary error response; once text flows, a failure can only end the stream.
        try:
            first = completion_from_dict(await _within(parts.__anext__(), deadline))
        except StopAsyncIteration:
            return self._failure(RuntimeError("the stream ended before any answer"), what)
        except TimeoutError as exc:
            _cancel(parts)
            return self._failure(exc, what)
        except asyncio.CancelledError:
            _cancel(parts)
            raise
        except Exception as exc:
            return self._failure(exc, what)
        if first.status != "ok":
            status, error = completion_failure(first)
            return JSONResponse(error, status_code=status)
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        encoder = ChunkEncoder(body.model, payload["request_id"], int(time.time()), include_usage)
        timeout = self._http.request_timeout_s

        async def events() -> AsyncIterator[str]:
            last = first
            ended = False
            try:
                while True:
                    for event in encoder.content(last):
                        yield event
                    try:
                        part = completion_from_dict(await _within(parts.__anext__(), deadline))
                    except StopAsyncIteration:
                        ended = True
                        break
                    except Exception as exc:
                        _, error, _ = failure_response(exc, what, timeout)
                        yield ChunkEncoder.error(
                            error["error"]["message"], error["error"]["type"], error["error"]["code"]
                        )
                        return
                    if part.status != "ok":
                        yield ChunkEncoder.error(
                            f"generation failed: {part.error}", "engine_error", "engine_error"
                        )
                        return
                    last = part
                for event in encoder.close(last):
                    yield event
            finally:
                if not ended:
                    # Failed, timed out, or the client went away: the replica stops generating.
                    _cancel(parts)

        return StreamingResponse(events(), media_type="text/event-stream")

    async def score(self, body: ScoreRequest) -> Any:
        """``POST /v1/score``: the critic's verdicts."""
        from fastapi.responses import JSONResponse

        if self._critic is None:
            return JSONResponse(
                error_body("this application serves no critic (critic: is unset)", "not_found"),
                status_code=404,
            )
        deadline = asyncio.get_running_loop().time() + self._http.request_timeout_s
        critic = self._critic
        result = await self._call(
            lambda: critic.score.remote(body.model_dump(mode="json")), "the critic", deadline
        )
        if not isinstance(result, dict):
            return result  # the error response
        error = result.get("error")
        if error is not None:
            return JSONResponse(
                error_body(error["message"], "invalid_request_error", param=error["param"]),
                status_code=int(error["status"]),
            )
        return JSONResponse(result)

    async def _call(self, start: Callable[[], Any], what: str, deadline: float) -> Any:
        """Start a handle call and await its dict result; on failure, the error response instead."""
        try:
            response = start()
        except Exception as exc:  # Serve refuses a full queue at once, before any response exists
            return self._failure(exc, what)
        try:
            return await _within(response, deadline)
        except TimeoutError as exc:
            _cancel(response)  # the replica need not finish what nobody waits for
            return self._failure(exc, what)
        except asyncio.CancelledError:
            _cancel(response)  # the client went away
            raise
        except Exception as exc:
            return self._failure(exc, what)

    def _failure(self, exc: BaseException, what: str) -> Any:
        from fastapi.responses import JSONResponse

        status, body, headers = failure_response(exc, what, self._http.request_timeout_s)
        return JSONResponse(body, status_code=status, headers=headers)
