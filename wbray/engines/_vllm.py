"""The ``vllm`` backend: batch inference through ``ray.data.llm`` on GPU clusters (extra: gpu).

vLLM does not run inside wbray's own actor pool: ``ray.data.llm`` already owns replicas, placement
groups and continuous batching, so this backend only translates wbray config into that processor's
configuration. The translation is pure (testable on CPU); ``wbray.pipelines`` builds the processor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wbray.config import SamplingParams, StageResources, VLLMEngineConfig
from wbray.engines._base import Engine
from wbray.engines._registry import register_engine
from wbray.errors import WbrayError


@register_engine("vllm", runs_as_processor=True)
def _factory(config: VLLMEngineConfig) -> Engine:
    raise WbrayError(
        "the vllm backend runs as a ray.data.llm processor inside `wbray run` and `wbray score`; "
        "for an HTTP endpoint serve the model and use the openai backend"
    )


def processor_config_kwargs(
    config: VLLMEngineConfig, resources: StageResources | None = None
) -> dict[str, Any]:
    """Keyword arguments of ``ray.data.llm.vLLMEngineProcessorConfig`` for this engine config."""
    engine_kwargs: dict[str, Any] = {
        "tensor_parallel_size": config.tensor_parallel_size,
        "pipeline_parallel_size": config.pipeline_parallel_size,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "dtype": config.dtype,
    }
    if config.max_model_len is not None:
        engine_kwargs["max_model_len"] = config.max_model_len
    engine_kwargs.update(config.engine_kwargs)
    kwargs: dict[str, Any] = {
        "model_source": config.model,
        "engine_kwargs": engine_kwargs,
        "batch_size": config.batch_size,
        "concurrency": config.replicas,
        # Failed rows become rows with an error column instead of failing the whole dataset.
        "should_continue_on_error": True,
    }
    if config.accelerator_type:
        kwargs["accelerator_type"] = config.accelerator_type
    return kwargs


def sampling_params(sampling: SamplingParams, json_schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The per-row ``sampling_params`` dict ray.data.llm turns into ``vllm.SamplingParams``."""
    params: dict[str, Any] = {
        k: v
        for k, v in {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k,
            "max_tokens": sampling.max_tokens,
            "repetition_penalty": sampling.repetition_penalty,
            "seed": sampling.seed,
        }.items()
        if v is not None
    }
    if json_schema is not None:
        # vLLM's structured outputs: decoding is constrained to the schema (xgrammar under the hood).
        params["structured_outputs"] = {"json": dict(json_schema)}
    return params
