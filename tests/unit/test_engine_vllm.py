"""vLLM backend: wbray config -> ray.data.llm processor config, checked on CPU (no vllm needed)."""

from __future__ import annotations

import pytest

from wbray.config import JudgeConfig, SamplingParams, VLLMEngineConfig, load_config
from wbray.engines import create_engine, get_backend
from wbray.engines._vllm import processor_config_kwargs, sampling_params
from wbray.errors import WbrayError


def test_processor_config_translation() -> None:
    from ray.data.llm import vLLMEngineProcessorConfig

    cfg = VLLMEngineConfig(
        model="AQuarterMile/WritingBench-Critic-Model-Qwen-7B",
        tensor_parallel_size=2,
        max_model_len=16384,
        gpu_memory_utilization=0.85,
        batch_size=32,
        replicas=3,
        accelerator_type="H100",
        engine_kwargs={"enable_prefix_caching": True},
    )
    proc = vLLMEngineProcessorConfig(**processor_config_kwargs(cfg))
    assert proc.model_source == cfg.model
    assert proc.batch_size == 32 and proc.concurrency == 3 and proc.accelerator_type == "H100"
    assert {k: v for k, v in proc.engine_kwargs.items() if k != "task_type"} == {
        "tensor_parallel_size": 2,
        "pipeline_parallel_size": 1,
        "gpu_memory_utilization": 0.85,
        "dtype": "auto",
        "max_model_len": 16384,
        "enable_prefix_caching": True,
    }
    assert proc.should_continue_on_error is True  # failures become rows, not a crashed dataset


def test_sampling_params_and_structured_output() -> None:
    judge = JudgeConfig(constrained=True, reason_max_chars=200)
    sp = sampling_params(judge.sampling, judge.reply_schema())
    assert sp["temperature"] == 1.0 and sp["top_p"] == 0.95 and sp["max_tokens"] == 2048
    assert "top_k" not in sp and "seed" not in sp  # unset fields are not sent
    assert sp["structured_outputs"]["json"]["properties"]["score"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 10,
    }
    assert "structured_outputs" not in sampling_params(SamplingParams(temperature=0.7))


def test_vllm_is_a_processor_backend_configured_from_yaml(tmp_path: object) -> None:
    cfg = load_config(None, ["judge.engine={backend: vllm, model: critic, tensor_parallel_size: 4}"])
    assert isinstance(cfg.judge.engine, VLLMEngineConfig) and cfg.judge.engine.tensor_parallel_size == 4
    assert get_backend("vllm").runs_as_processor
    with pytest.raises(WbrayError, match=r"ray\.data\.llm processor"):
        create_engine(cfg.judge.engine)
