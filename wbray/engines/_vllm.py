"""The ``vllm`` backend: batch inference through ``ray.data.llm`` on GPU clusters (extra: gpu).

vLLM does not run inside wbray's own actor pool: ``ray.data.llm`` already owns replicas, placement
groups and continuous batching. This backend builds that processor as its pipeline stage
(:func:`build_stage`) and drives the same batch task as every other backend, one processor pass
per round: a judge reply that does not parse goes through a further pass (at most
``judge.max_reasks`` more, each a processor of its own with one replica), so re-asks are honoured
exactly as on the other backends. Rows that need nothing in a pass ride through it as a one-token
dummy request, which keeps the pipeline a straight line (Ray Data cannot split a stream).

Everything but :func:`build_stage` is pure and tested on CPU with recorded processor rows;
``ray.data.llm`` is imported inside :func:`build_stage` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wbray.config import SamplingParams, StageResources, VLLMEngineConfig
from wbray.engines._base import ChatRequest, Completion, Engine
from wbray.engines._registry import StageSpec, register_engine
from wbray.errors import WbrayError

#: Columns the processor adds (read by :func:`processor_completion`, then dropped).
PROCESSOR_COLUMNS = (
    "generated_text",
    "num_input_tokens",
    "num_generated_tokens",
    "__inference_error__",
    "generated_tokens",
    "prompt",
    "prompt_token_ids",
    "request_id",
    "time_taken_llm",
    "params",
    "metrics",
)
#: Columns wbray adds for the processor (dropped after each pass).
_REQUEST_COLUMNS = ("messages", "sampling_params", "__wbray_skip__")
#: What a row that needs no engine call in this pass sends instead (one token, ignored).
_DUMMY_MESSAGES = [{"role": "user", "content": "-"}]


def _demand(config: VLLMEngineConfig, resources: StageResources) -> dict[str, float]:
    # Each replica holds tensor x pipeline parallel GPUs; CPUs are the processor's business.
    return {
        "CPU": 0.0,
        "GPU": float(config.tensor_parallel_size * config.pipeline_parallel_size * config.replicas),
    }


def processor_config_kwargs(config: VLLMEngineConfig, replicas: int | None = None) -> dict[str, Any]:
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
        "concurrency": replicas or config.replicas,
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


def processor_completion(row: Mapping[str, Any]) -> Completion:
    """Turn one processor output row into a :class:`Completion` (an error column is a failure)."""
    error = row.get("__inference_error__")
    if error:
        return Completion.failed(str(error))
    return Completion(
        text=str(row.get("generated_text") or ""),
        prompt_tokens=int(row.get("num_input_tokens") or 0),
        completion_tokens=int(row.get("num_generated_tokens") or 0),
    )


def processor_request(task: Any, row: Mapping[str, Any], first: bool) -> dict[str, Any]:
    """Before a pass: the task row plus what the processor reads (``messages``, ``sampling_params``).

    A row the task has settled still goes through, as a one-token dummy marked ``__wbray_skip__``,
    with the same sampling keys (a block's rows must share one schema).
    """
    state = task.prepare([dict(row)])[0] if first else dict(row)
    request: ChatRequest | None = task.requests([state])[0]
    schema = request.json_schema if request is not None else getattr(task, "schema", None)
    params = sampling_params(task.sampling, schema)
    if request is None:
        return {
            **state,
            "messages": _DUMMY_MESSAGES,
            "sampling_params": {**params, "max_tokens": 1},
            "__wbray_skip__": True,
        }
    messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in request.messages]
    return {**state, "messages": messages, "sampling_params": params, "__wbray_skip__": False}


def processor_result(task: Any, row: Mapping[str, Any]) -> dict[str, Any]:
    """After a pass: fold the processor's answer into the task row and drop the processor columns."""
    skip = bool(row.get("__wbray_skip__"))
    state = {k: v for k, v in row.items() if k not in PROCESSOR_COLUMNS and k not in _REQUEST_COLUMNS}
    if skip:
        return state
    absorbed: dict[str, Any] = task.absorb([state], {0: processor_completion(row)})[0]
    return absorbed


def build_stage(ds: Any, spec: StageSpec) -> Any:
    """The vLLM stage: one ``ray.data.llm`` processor per task pass, then the task's finish."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    task = spec.task
    for n in range(task.max_passes):
        # Later passes only re-ask the few replies that did not parse: one replica is enough.
        kwargs = processor_config_kwargs(spec.engine, replicas=None if n == 0 else 1)
        processor = build_processor(
            vLLMEngineProcessorConfig(**kwargs),
            preprocess=_Pre(task, first=n == 0),
            postprocess=_Post(task),
        )
        ds = processor(ds)
    return ds.map_batches(_Finish(task), batch_format="pandas", num_cpus=0.1)


class _Pre:
    def __init__(self, task: Any, first: bool) -> None:
        self.task, self.first = task, first

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return processor_request(self.task, row, self.first)


class _Post:
    def __init__(self, task: Any) -> None:
        self.task = task

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return processor_result(self.task, row)


class _Finish:
    def __init__(self, task: Any) -> None:
        self.task = task

    def __call__(self, batch: Any) -> Any:
        import pandas as pd

        # pandas hands NaN for missing numbers; the task wants None.
        rows = [
            {k: None if isinstance(v, float) and v != v else v for k, v in r.items()}
            for r in batch.to_dict("records")
        ]
        return pd.DataFrame(self.task.finish(rows))


@register_engine("vllm", build_stage=build_stage, demand=_demand, in_process=False)
def _factory(config: VLLMEngineConfig) -> Engine:
    raise WbrayError(
        "the vllm backend runs as a ray.data.llm processor inside `wbray run` and `wbray score`; "
        "for an HTTP endpoint serve the model and use the openai backend"
    )
