"""The ``serve`` engine backend: a pipeline stage calls a served model through a DeploymentHandle.

Many concurrent runs can share one served critic this way; inside the cluster there is no HTTP
hop. (From outside the cluster, point an ``openai`` engine at the served URL instead.) Before any
work, the run asks the deployment what it serves (:func:`describe`), and that answer joins the
row ids: a model swapped behind the same deployment name recomputes instead of being reused.
"""

from __future__ import annotations

from typing import Any

from wbray.config import ServeEngineConfig
from wbray.engines._base import Engine
from wbray.engines._registry import register_engine
from wbray.errors import ConfigError
from wbray.serve._app import chat_deployment_name
from wbray.serve._critic import HandleEngine

#: Seconds to wait for the deployment to say what it serves (once per run, on the driver).
DESCRIBE_TIMEOUT_S = 60.0


def describe(config: ServeEngineConfig) -> dict[str, Any]:
    """The served model's identity, asked from its chat deployment (``ChatServer.identity``).

    Raises:
        ConfigError: The application or deployment is not running here, naming both.
    """
    from ray import serve

    name = chat_deployment_name(config.model)
    try:
        handle = serve.get_deployment_handle(name, app_name=config.app)
        identity = handle.identity.remote().result(timeout_s=DESCRIBE_TIMEOUT_S)
    except Exception as exc:
        raise ConfigError(
            f"serve engine: cannot reach deployment {name!r} of application {config.app!r} "
            f"({type(exc).__name__}); is `wbray serve` running on this cluster with that model?"
        ) from None
    return dict(identity)


@register_engine("serve", describe=describe)
def _factory(config: ServeEngineConfig) -> Engine:
    from ray import serve

    handle = serve.get_deployment_handle(chat_deployment_name(config.model), app_name=config.app)
    return HandleEngine(handle, model_id=config.model, max_in_flight=config.max_in_flight)
