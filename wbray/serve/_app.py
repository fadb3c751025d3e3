"""Building the Serve application: gateway (HTTP edge) + chat deployments + critic.

The gateway (``_gateway.py``) is the only ingress; it routes to the chat and critic deployments
through DeploymentHandles. Overload is turned away early: each deployment's
``max_queued_requests`` makes the handle raise Serve's ``BackPressureError`` when its queue is
full, which the gateway answers with 503 (``overloaded``, plus ``Retry-After``) at once.

``build_app`` is the import path for ``serve run`` / ``serve deploy``
(``import_path: wbray.serve:build_app``) and for ``wbray serve``.
"""

from __future__ import annotations

from typing import Any

from wbray.errors import ConfigError
from wbray.serve._chat import ChatServer
from wbray.serve._config import ServeAppConfig, load_serve_config
from wbray.serve._critic import CriticServer
from wbray.serve._gateway import Gateway, read_token_digest

GATEWAY_NAME = "gateway"
CRITIC_NAME = "critic"


def chat_deployment_name(model: str) -> str:
    """The Serve deployment name of a served model."""
    return f"chat-{model}"


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
    from wbray.engines import get_backend

    for m in config.models:
        if not get_backend(m.engine.backend).in_process:
            # Such a backend runs only as its own stage (vLLM: a ray.data.llm processor); as a
            # served model it belongs to ray.serve.llm.
            raise ConfigError(
                f"models[{m.name}]: the {m.engine.backend} backend cannot run inside the wbray chat "
                "deployment; serve it with ray.serve.llm (wbray.serve.build_llm_app on GPU clusters), "
                "or use a transformers/openai engine"
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
    # ingress() without an app: Serve calls Gateway.__serve_build_asgi_app__ in the replica.
    gateway = serve.deployment(serve.ingress()(Gateway)).options(
        name=GATEWAY_NAME, **config.gateway.serve_options()
    )
    return gateway.bind(handles, {m.name: m for m in config.models}, critic, config.http, digest)


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
