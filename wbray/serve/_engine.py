"""The ``serve`` engine backend: a pipeline stage calls a served model through a DeploymentHandle.

Many concurrent runs can share one served critic this way; inside the cluster there is no HTTP
hop. (From outside the cluster, point an ``openai`` engine at the served URL instead.)
"""

from __future__ import annotations

from wbray.config import ServeEngineConfig
from wbray.engines._base import Engine
from wbray.engines._registry import register_engine
from wbray.serve._app import chat_deployment_name
from wbray.serve._critic import HandleEngine


@register_engine("serve")
def _factory(config: ServeEngineConfig) -> Engine:
    from ray import serve

    handle = serve.get_deployment_handle(chat_deployment_name(config.model), app_name=config.app)
    return HandleEngine(handle, model_id=config.model, max_in_flight=config.max_in_flight)
