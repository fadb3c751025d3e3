"""vLLM backend: wbray config -> ray.data.llm processor config, checked on CPU (no vllm needed)."""

from __future__ import annotations

from typing import Any

import pytest

from wbray.config import JudgeConfig, SamplingParams, VLLMEngineConfig, load_config
from wbray.engines import create_engine, get_backend
from wbray.engines._vllm import (
    build_stage,
    processor_completion,
    processor_config_kwargs,
    processor_request,
    processor_result,
    sampling_params,
)
from wbray.errors import WbrayError
from wbray.prompts import load_judge_template
from wbray.records import Criterion, Query
from wbray.steps import GenerationTask, ScoringTask, scoring_rows


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
    # Upstream's critic SamplingParams leave top_k and repetition_penalty at vLLM's defaults
    # (-1, 1.0): sent explicitly, so no generation_config of the model can fill them differently.
    assert sp["top_k"] == -1 and sp["repetition_penalty"] == 1.0
    assert "seed" not in sp  # unset fields are not sent
    assert sp["structured_outputs"]["json"]["properties"]["score"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 10,
    }
    assert "structured_outputs" not in sampling_params(SamplingParams(temperature=0.7))


def test_vllm_is_a_processor_backend_configured_from_yaml(tmp_path: object) -> None:
    cfg = load_config(None, ["judge.engine={backend: vllm, model: critic, tensor_parallel_size: 4}"])
    assert isinstance(cfg.judge.engine, VLLMEngineConfig) and cfg.judge.engine.tensor_parallel_size == 4
    backend = get_backend("vllm")
    assert backend.build_stage is build_stage and not backend.in_process
    assert backend.demand(cfg.judge.engine, cfg.judge.resources) == {"CPU": 0.0, "GPU": 4.0}
    with pytest.raises(WbrayError, match=r"ray\.data\.llm processor"):
        create_engine(cfg.judge.engine)


QUERY = Query(
    index=3,
    domain1="Education",
    domain2="Lesson Plan",
    query="Write a lesson plan.",
    checklist=tuple(Criterion(n, {"name": n, "criteria_description": n.lower()}) for n in ("A", "B", "C")),
    lang="en",
)


def _processor_pass(
    task: Any, rows: list[dict[str, Any]], first: bool, outputs: list[dict[str, Any]]
) -> list:
    """What one ray.data.llm pass does to each row: preprocess, the engine (here: recorded output
    columns of a vLLM processor), postprocess. Returns (sent requests, rows after the pass)."""
    sent, after = [], []
    for row, output in zip(rows, outputs, strict=True):
        request = processor_request(task, row, first)
        sent.append(request)
        # The processor adds its columns and keeps every input column.
        after.append(processor_result(task, {**request, **output}))
    return [sent, after]


def test_judge_reasks_run_as_further_processor_passes() -> None:
    """Recorded processor rows, three criteria: A parses at once, B parses on the re-ask, C's
    generation failed (never sent), and a fourth row hits a processor error."""
    judge = JudgeConfig(max_reasks=1, constrained=True, reason_max_chars=20)
    template = load_judge_template(None, "builtin")
    task = ScoringTask(judge, template)
    assert task.max_passes == 2
    gen = {"row_id": "g", "model": "m", "index": 3, "response": "An answer.", "status": "ok", "error": None}
    rows = scoring_rows(gen, QUERY, judge, template)
    failed_gen = {**gen, "row_id": "g2", "response": None, "status": "failed", "error": "timeout"}
    rows += scoring_rows(failed_gen, QUERY, judge, template)[:1]
    errored = scoring_rows({**gen, "row_id": "g3"}, QUERY, judge, template)[:1]
    rows += errored

    def out(text: str | None, error: str | None = None) -> dict[str, Any]:
        return {
            "generated_text": text,
            "num_input_tokens": 100,
            "num_generated_tokens": 9,
            "__inference_error__": error,
        }

    sent, rows = _processor_pass(
        task,
        rows,
        True,
        [
            out('{"score": 8, "reason": "good"}'),
            out("no json"),
            out('{"score": 2, "reason": "x"}'),
            out("ignored"),
            out(None, "CUDA out of memory"),
        ],
    )
    # Every row is in the pass; settled ones as a 1-token dummy with the same sampling keys.
    assert [r["__wbray_skip__"] for r in sent] == [False, False, False, True, False]
    assert sent[3]["sampling_params"]["max_tokens"] == 1
    assert set(sent[3]["sampling_params"]) == set(sent[0]["sampling_params"])
    assert sent[0]["sampling_params"]["structured_outputs"]["json"] == judge.reply_schema()
    assert sent[0]["messages"][-1]["role"] == "user" and "An answer." in sent[0]["messages"][-1]["content"]
    assert [r["status"] for r in rows] == ["ok", "pending", "ok", "failed", "failed"]
    assert all(k not in rows[0] for k in ("generated_text", "messages", "sampling_params", "__wbray_skip__"))

    sent, rows = _processor_pass(
        task, rows, False, [out("-"), out('{"score": 5, "reason": "ok"}'), out("-"), out("-"), out("-")]
    )
    assert [r["__wbray_skip__"] for r in sent] == [True, False, True, True, True]
    final = task.finish(rows)
    by = {(r["gen_row_id"], r["criterion"]): r for r in final}
    assert by[("g", "A")]["score"] == 8.0 and by[("g", "A")]["attempts"] == 1
    assert by[("g", "B")]["score"] == 5.0 and by[("g", "B")]["attempts"] == 2  # re-asked once
    assert by[("g", "B")]["prompt_tokens"] == 200
    assert by[("g2", "A")]["error"] == "generation failed: timeout" and by[("g2", "A")]["attempts"] == 0
    assert by[("g3", "A")]["status"] == "failed" and by[("g3", "A")]["error"] == "engine: CUDA out of memory"
    assert all(r["status"] in ("ok", "failed") for r in final)  # nothing left pending
    assert all("response" not in r and "query" not in r for r in final)


def test_unparsed_after_the_last_pass_is_a_failure_row_with_the_raw_text() -> None:
    judge = JudgeConfig(max_reasks=0)
    task = ScoringTask(judge, load_judge_template(None, "builtin"))
    gen = {"row_id": "g", "model": "m", "index": 3, "response": "x", "status": "ok", "error": None}
    (row,) = scoring_rows(gen, QUERY, judge, task.template)[:1]
    _, rows = _processor_pass(task, [row], True, [{"generated_text": "Score: ten!", "num_input_tokens": 5}])
    (final,) = task.finish(rows)
    assert final["status"] == "failed" and final["score"] is None and final["raw"] == "Score: ten!"
    assert final["error"].startswith("unparseable reply")


def test_generation_rows_through_a_processor_pass() -> None:
    task = GenerationTask(SamplingParams(temperature=0.7, max_tokens=64))
    row = {
        "row_id": "r",
        "model": "m",
        "index": 1,
        "sample": 0,
        "data_version": "v",
        "messages_json": '[{"role": "user", "content": "hi"}]',
    }
    sent, (done,) = _processor_pass(
        task, [row], True, [{"generated_text": "Hello!", "num_input_tokens": 4, "num_generated_tokens": 3}]
    )
    assert sent[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert sent[0]["sampling_params"] == {"temperature": 0.7, "max_tokens": 64}
    assert done["response"] == "Hello!" and done["status"] == "ok" and done["completion_tokens"] == 3
    failed = processor_completion({"__inference_error__": "prompt too long", "generated_text": None})
    assert failed.status == "failed" and failed.error == "prompt too long"
