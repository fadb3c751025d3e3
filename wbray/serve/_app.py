"""Building the Serve application: gateway (HTTP edge) + chat deployments + critic.

The gateway is the only ingress. It checks the bearer token and the body size before anything is
parsed (a pure ASGI middleware), validates bodies (422 naming the field), and routes to the chat
and critic deployments through DeploymentHandles. Overload is turned away early: each deployment's
``max_queued_requests`` makes the handle raise Serve's ``BackPressureError`` when its queue is
full, which the gateway answers with 503 (plus ``Retry-After``) at once.

``build_app`` is the import path for ``serve run`` / ``serve deploy``
(``import_path: wbray.serve:build_app``) and for ``wbray serve``.
"""

# No ``from __future__ import annotations`` here: the gateway class is pickled by value into its
# replicas, where FastAPI re-reads the route signatures; string annotations could not be resolved
# there (cloudpickle does not carry the module globals they name) and bodies would turn into query
# parameters.
import asyncio
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from wbray.errors import ConfigError
from wbray.serve._chat import (
    ChatCompletionBody,
    ChatServer,
    RequestError,
    completion_body,
    completion_from_dict,
    engine_request,
    error_body,
    stream_events,
)
from wbray.serve._config import HttpSettings, ServeAppConfig, load_serve_config
from wbray.serve._critic import CriticServer, ScoreRequest

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The one route that needs no token (load balancers and orchestrators probe it).
OPEN_PATHS = frozenset({"/health"})
GATEWAY_NAME = "gateway"
CRITIC_NAME = "critic"


def chat_deployment_name(model: str) -> str:
    """The Serve deployment name of a served model."""
    return f"chat-{model}"


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


# -- the gateway ------------------------------------------------------------------------------------


def _gateway_class(http: HttpSettings, digest: str | None) -> type:
    """The gateway ingress class (FastAPI app with the guard), built per application config."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from ray import serve
    from ray.serve.exceptions import BackPressureError

    api = FastAPI(title="wbray", docs_url=None, redoc_url=None, openapi_url=None)
    api.add_middleware(GuardMiddleware, digest=digest, max_body_bytes=http.max_body_bytes)

    @api.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        body = error_body(message + more, "invalid_request_error", param=param)
        # FastAPI's own list stays under "detail" for clients that read it.
        body["detail"] = json.loads(json.dumps(errors, default=str))
        return JSONResponse(body, status_code=422)

    timeout = http.request_timeout_s

    async def _call(response: Any) -> Any:
        """Await a handle response, bounded by the request timeout (cancelled when it fires)."""

        async def wait() -> Any:
            return await response

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            response.cancel()
            raise

    def _failure(exc: BaseException, what: str) -> JSONResponse:
        if isinstance(exc, BackPressureError):
            return JSONResponse(
                error_body(f"{what} is overloaded; retry later", "overloaded", code="overloaded"),
                status_code=int(getattr(exc, "status_code", 503) or 503),
                headers={"Retry-After": "1"},
            )
        if isinstance(exc, TimeoutError):
            return JSONResponse(
                error_body(f"{what} did not answer within {timeout} s", "timeout"), status_code=504
            )
        logger.warning("gateway: %s failed: %s", what, type(exc).__name__)
        return JSONResponse(
            error_body(f"{what} is unavailable: {type(exc).__name__}", "service_unavailable"), status_code=503
        )

    @serve.ingress(api)
    class Gateway:
        """HTTP edge: /health, /v1/models, /v1/chat/completions, /v1/score."""

        def __init__(
            self, models: dict[str, Any], model_configs: dict[str, Any], critic: Any | None = None
        ) -> None:
            self._models = models
            self._defaults = {name: cfg.sampling for name, cfg in model_configs.items()}
            self._critic = critic
            self._created = int(time.time())

        @api.get("/health")
        async def health(self) -> dict[str, str]:
            return {"status": "ok"}

        @api.get("/v1/models")
        async def models(self) -> dict[str, Any]:
            return {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": self._created, "owned_by": "wbray"}
                    for name in self._models
                ],
            }

        @api.post("/v1/chat/completions", response_model=None)
        async def chat_completions(self, body: ChatCompletionBody) -> Any:
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
                payload = engine_request(body, self._defaults[body.model])
            except RequestError as exc:
                return JSONResponse(
                    error_body(str(exc), "invalid_request_error", param=exc.param), status_code=exc.status
                )
            try:
                result = await _call(handle.complete.remote(payload))
            except Exception as exc:
                return _failure(exc, f"model {body.model!r}")
            completion = completion_from_dict(result)
            if completion.status != "ok":
                return JSONResponse(
                    error_body(f"generation failed: {completion.error}", "engine_error"), status_code=500
                )
            created = int(time.time())
            if body.stream:
                usage = body.stream_options is not None and body.stream_options.include_usage
                events = stream_events(completion, body.model, payload["request_id"], created, usage)

                async def gen() -> Any:
                    for event in events:
                        yield event

                return StreamingResponse(gen(), media_type="text/event-stream")
            return JSONResponse(completion_body(completion, body.model, payload["request_id"], created))

        @api.post("/v1/score", response_model=None)
        async def score(self, body: ScoreRequest) -> Any:
            if self._critic is None:
                return JSONResponse(
                    error_body("this application serves no critic (critic: is unset)", "not_found"),
                    status_code=404,
                )
            try:
                result = await _call(self._critic.score.remote(body.model_dump(mode="json")))
            except Exception as exc:
                return _failure(exc, "the critic")
            error = result.get("error")
            if error is not None:
                return JSONResponse(
                    error_body(error["message"], "invalid_request_error", param=error["param"]),
                    status_code=int(error["status"]),
                )
            return JSONResponse(result)

    return Gateway


# -- builders ---------------------------------------------------------------------------------------


def build_application(config: ServeAppConfig) -> Any:
    """The Serve application (``serve.run`` target) a config describes.

    The token is read here (from ``config.auth.token_env``) and only its digest goes to the
    gateway, so the secret never travels in deployment arguments or logs.

    Raises:
        ConfigError: The token variable is unset, or a model uses an engine Serve cannot host here.
    """
    from ray import serve as ray_serve

    # serve.deployment's overloads confuse mypy when the target is a class; Serve checks it anyway.
    serve: Any = ray_serve
    digest = read_token_digest(config.auth.token_env)
    for m in config.models:
        if m.engine.backend == "vllm":
            raise ConfigError(
                f"models[{m.name}]: the vllm backend is served by ray.serve.llm on GPU clusters, not by the "
                "wbray chat deployment (use wbray.serve.build_llm_app there, or a transformers/openai engine)"
            )
    chat = serve.deployment(ChatServer)
    handles = {
        m.name: chat.options(name=chat_deployment_name(m.name), **m.deployment.serve_options()).bind(m)
        for m in config.models
    }
    critic = None
    if config.critic is not None:
        critic = (
            serve.deployment(CriticServer)
            .options(name=CRITIC_NAME, **config.critic.deployment.serve_options())
            .bind(config.critic, handles[config.critic.model], config.critic.model)
        )
    gateway = serve.deployment(_gateway_class(config.http, digest)).options(
        name=GATEWAY_NAME, **config.gateway.serve_options()
    )
    return gateway.bind(handles, {m.name: m for m in config.models}, critic)


def build_app(args: dict[str, Any] | None = None) -> Any:
    """Application builder for ``serve run`` / ``serve deploy`` (``import_path: wbray.serve:build_app``).

    Args:
        args: Either ``{"config": "path/to/serve.yaml", "overrides": ["key=value", ...]}`` or the
            serve config itself inline (the keys of :class:`ServeAppConfig`).

    Returns:
        The bound Serve application.

    Raises:
        ConfigError: The config is invalid (naming the key) or the token variable is unset.
    """
    args = dict(args or {})
    if "config" in args:
        path = args.pop("config")
        overrides = args.pop("overrides", None) or []
        if args:
            raise ConfigError(
                f"build_app args: with 'config' only 'overrides' may be given, not {', '.join(sorted(args))}"
            )
        config = load_serve_config(str(path), list(overrides))
    else:
        config = load_serve_config(args)
    return build_application(config)
