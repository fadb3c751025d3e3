"""GPU serving: wbray model configs translated into ``ray.serve.llm`` (vLLM) applications.

On GPU clusters the models are served by Ray's own LLM stack (``LLMConfig`` + ``build_openai_app``:
vLLM engines, autoscaling, accelerator types), configured from the same wbray YAML instead of
hand-rolled. ``ray.serve.llm`` cannot even be imported without vLLM, so it is imported only in
:func:`build_llm_app`; :func:`llm_config` builds the plain dict and is testable anywhere.

To score with a GPU model, serve it here and point a CPU-side critic's chat model at it with the
``openai`` engine (``base_url: http://HOST:PORT/v1``).
"""

from __future__ import annotations

from typing import Any

from wbray.config import VLLMEngineConfig
from wbray.engines._registry import missing_extra
from wbray.engines._vllm import processor_config_kwargs
from wbray.errors import ConfigError
from wbray.serve._config import ModelDeploymentConfig, ServeAppConfig


def llm_config(model: ModelDeploymentConfig) -> dict[str, Any]:
    """The ``ray.serve.llm.LLMConfig`` (as a dict) of a model deployment with a vllm engine.

    Args:
        model: A served model whose ``engine.backend`` is ``vllm``.

    Returns:
        A dict ``LLMConfig(**d)`` accepts: model id/source, vLLM engine kwargs (the same mapping
        ``wbray run`` uses), accelerator type, and the Serve deployment config (autoscaling,
        ``max_ongoing_requests``, ``max_queued_requests``, ``health_check_period_s``).

    Raises:
        ConfigError: The model does not use the vllm backend.
    """
    engine = model.engine
    if not isinstance(engine, VLLMEngineConfig):
        raise ConfigError(
            f"models[{model.name}]: ray.serve.llm serves only engine backend 'vllm' (got {engine.backend!r})"
        )
    settings = model.deployment
    out: dict[str, Any] = {
        "model_loading_config": {"model_id": model.name, "model_source": engine.model},
        "engine_kwargs": processor_config_kwargs(engine)["engine_kwargs"],
        "deployment_config": {
            "autoscaling_config": settings.autoscaling.to_serve(),
            "max_ongoing_requests": settings.max_ongoing_requests,
            "max_queued_requests": settings.max_queued_requests,
            "health_check_period_s": settings.health_check_period_s,
        },
    }
    accelerator = engine.accelerator_type or settings.resources.accelerator_type
    if accelerator is not None:
        out["accelerator_type"] = accelerator
    return out


def llm_serving_args(config: ServeAppConfig) -> dict[str, Any]:
    """The ``build_openai_app`` argument for every model of ``config`` (all must use vllm).

    Raises:
        ConfigError: A model is not a vllm model, or a critic is configured (the critic runs in
            the wbray application; see the module docstring).
    """
    if config.critic is not None:
        raise ConfigError(
            "critic: a ray.serve.llm application has no wbray critic; serve the critic from a wbray "
            "application whose chat model uses the openai engine pointed at this one"
        )
    return {"llm_configs": [llm_config(m) for m in config.models]}


def build_llm_app(config: ServeAppConfig) -> Any:
    """The ``ray.serve.llm`` OpenAI application for a config's vllm models (GPU clusters only).

    Raises:
        WbrayError: vLLM is not installed (names the extra to install).
        ConfigError: As for :func:`llm_serving_args`.
    """
    args = llm_serving_args(config)
    try:
        from ray.serve.llm import build_openai_app
    except ImportError:
        raise missing_extra("vllm", "gpu") from None
    return build_openai_app(args)
