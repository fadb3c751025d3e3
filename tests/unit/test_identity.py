"""Row identity by exclusion: every config field that can change a result changes the row ids, the
declared rest (batch sizes, concurrency, resources, timeouts, retries) does not.

One table covers every field of every config that goes into an id; a field added without an entry
here fails ``test_the_table_covers_every_field``, so each new field gets a decision.
"""

from __future__ import annotations

from typing import Any

import pytest

from wbray.config import (
    CandidateConfig,
    GenerationConfig,
    JudgeConfig,
    OpenAIEngineConfig,
    SamplingParams,
    ServeEngineConfig,
    StageResources,
    TransformersEngineConfig,
    VLLMEngineConfig,
)
from wbray.prompts import load_judge_template
from wbray.records import Criterion, Query
from wbray.steps import generation_rows, scoring_rows

QUERY = Query(
    index=1,
    domain1="Education",
    domain2="Lesson Plan",
    query="Write a lesson plan.",
    checklist=(Criterion("Clarity", {"name": "Clarity", "criteria_description": "clear"}),),
    lang="en",
)
RES = StageResources(actors=2, num_cpus=0.5)
CHANGES, SAME = True, False

#: Per config class: field -> (a different value, whether the row ids must change). ``None`` marks
#: the discriminator, which cannot change within a class.
TABLE: dict[type, dict[str, tuple[Any, bool] | None]] = {
    TransformersEngineConfig: {
        "backend": None,
        "model": ("/models/other", CHANGES),
        "dtype": ("float32", CHANGES),
        "device": ("cpu", CHANGES),
        "batch_size": (32, SAME),
        "torch_threads": (2, SAME),
        "prefix_cache_mb": (0, SAME),
    },
    OpenAIEngineConfig: {
        "backend": None,
        "base_url": ("http://other:8000/v1", CHANGES),
        "model": ("other", CHANGES),
        "api_key_env": ("KEY", SAME),
        "max_concurrency": (2, SAME),
        "max_retries": (0, SAME),
        "initial_backoff_s": (5.0, SAME),
        "max_backoff_s": (60.0, SAME),
        "timeout_s": (10.0, SAME),
        "omit_sampling": (["top_p"], CHANGES),
        "structured_output": ("json_object", CHANGES),
        "batch_size": (4, SAME),
        "probe_models": (False, SAME),
    },
    VLLMEngineConfig: {
        "backend": None,
        "model": ("other", CHANGES),
        "tensor_parallel_size": (4, SAME),
        "pipeline_parallel_size": (2, SAME),
        "max_model_len": (4096, CHANGES),
        "gpu_memory_utilization": (0.5, SAME),
        "dtype": ("bfloat16", CHANGES),
        "batch_size": (8, SAME),
        "replicas": (3, SAME),
        "accelerator_type": ("H100", SAME),
        "engine_kwargs": ({"enable_prefix_caching": False}, CHANGES),
    },
    ServeEngineConfig: {
        "backend": None,
        "app": ("other-app", CHANGES),
        "model": ("other", CHANGES),
        "max_in_flight": (2, SAME),
        "batch_size": (2, SAME),
    },
    SamplingParams: {
        "temperature": (0.3, CHANGES),
        "top_p": (0.5, CHANGES),
        "top_k": (5, CHANGES),
        "max_tokens": (99, CHANGES),
        "repetition_penalty": (1.2, CHANGES),
        "seed": (7, CHANGES),
    },
    CandidateConfig: {
        "name": ("other-name", CHANGES),
        "engine": (OpenAIEngineConfig(base_url="http://h/v1", model="m"), CHANGES),
        "sampling": (SamplingParams(temperature=0.1), CHANGES),
        "system_prompt": ("Be brief.", CHANGES),
        "resources": (RES, SAME),
        "responses": ("elsewhere.jsonl", SAME),  # imported answers are named by their text instead
    },
    GenerationConfig: {
        "system_prompt": ("Be brief.", CHANGES),
        "sampling": (SamplingParams(top_k=3), CHANGES),
        "samples": (2, SAME),  # adds rows; sample 0 keeps its id
        "resources": (RES, SAME),
    },
    JudgeConfig: {
        "name": ("other-judge", CHANGES),
        "engine": (TransformersEngineConfig(model="/models/critic"), CHANGES),
        "template": ("builtin", SAME),  # the prompt counts through its version (text hash)
        "repeats": (3, SAME),  # adds rows; repeat 0 keeps its id
        "sampling": (SamplingParams(temperature=0.0), CHANGES),
        "constrained": (True, CHANGES),
        "reason_max_chars": (50, SAME),  # only in the constrained schema: see the next test
        "max_reasks": (5, SAME),
        "resources": (RES, SAME),
        "cache": ("s3://cache/judge", SAME),  # a cached verdict is what the same call drew before
        "cache_refresh": (True, SAME),
    },
}

BASE_ENGINES: dict[type, Any] = {
    TransformersEngineConfig: TransformersEngineConfig(),
    OpenAIEngineConfig: OpenAIEngineConfig(base_url="http://127.0.0.1:8000/v1", model="m"),
    VLLMEngineConfig: VLLMEngineConfig(model="critic"),
    ServeEngineConfig: ServeEngineConfig(model="m"),
}
TEMPLATE = load_judge_template(None, "builtin")


def _gen_id(candidate: CandidateConfig, generation: GenerationConfig | None = None) -> str:
    return str(generation_rows([QUERY], candidate, generation or GenerationConfig(), "v1")[0]["row_id"])


def _score_id(judge: JudgeConfig) -> str:
    gen = {"row_id": "g1", "model": "m", "index": 1, "response": "r", "status": "ok", "error": None}
    return str(scoring_rows(gen, QUERY, judge, TEMPLATE)[0]["row_id"])


def test_the_table_covers_every_field() -> None:
    for cls, fields in TABLE.items():
        assert set(fields) == set(cls.model_fields), (
            f"{cls.__name__}: decide for {set(cls.model_fields) ^ set(fields)}"
        )


def _cases() -> list[tuple[str, str, Any, bool]]:
    return [
        (cls.__name__, name, entry[0], entry[1])
        for cls, fields in TABLE.items()
        for name, entry in fields.items()
        if entry is not None
    ]


@pytest.mark.parametrize(("cls_name", "field", "value", "changes"), _cases())
def test_a_field_changes_row_ids_exactly_when_it_can_change_a_result(
    cls_name: str, field: str, value: Any, changes: bool
) -> None:
    cls = next(c for c in TABLE if c.__name__ == cls_name)
    if cls in BASE_ENGINES:
        base = BASE_ENGINES[cls]
        other = base.model_copy(update={field: value})
        # An engine names both kinds of rows: as a candidate's and as a judge's engine.
        pairs = [
            (
                _gen_id(CandidateConfig(name="m", engine=base)),
                _gen_id(CandidateConfig(name="m", engine=other)),
            ),
            (_score_id(JudgeConfig(engine=base)), _score_id(JudgeConfig(engine=other))),
        ]
    elif cls is SamplingParams:
        base_s, other_s = SamplingParams(), SamplingParams(**{field: value})
        engine = BASE_ENGINES[TransformersEngineConfig]
        pairs = [
            (
                _gen_id(CandidateConfig(name="m", engine=engine, sampling=base_s)),
                _gen_id(CandidateConfig(name="m", engine=engine, sampling=other_s)),
            ),
            (_score_id(JudgeConfig(sampling=base_s)), _score_id(JudgeConfig(sampling=other_s))),
        ]
    elif cls is CandidateConfig:
        base_c = CandidateConfig(name="m", engine=BASE_ENGINES[TransformersEngineConfig])
        pairs = [(_gen_id(base_c), _gen_id(base_c.model_copy(update={field: value})))]
    elif cls is GenerationConfig:
        cand = CandidateConfig(name="m", engine=BASE_ENGINES[TransformersEngineConfig])
        pairs = [(_gen_id(cand), _gen_id(cand, GenerationConfig(**{field: value})))]
    else:
        base_j = JudgeConfig(engine=BASE_ENGINES[TransformersEngineConfig])
        pairs = [(_score_id(base_j), _score_id(base_j.model_copy(update={field: value})))]
    for a, b in pairs:
        assert (a != b) is changes, f"{cls_name}.{field}={value!r}"


def test_reason_bound_counts_only_when_the_schema_uses_it() -> None:
    free = JudgeConfig(constrained=False)
    strict = JudgeConfig(constrained=True)
    assert _score_id(free) == _score_id(free.model_copy(update={"reason_max_chars": 50}))
    assert _score_id(strict) != _score_id(strict.model_copy(update={"reason_max_chars": 50}))


def test_what_an_endpoint_serves_joins_the_ids() -> None:
    cand = CandidateConfig(name="m", engine=BASE_ENGINES[OpenAIEngineConfig])
    rows = [
        generation_rows([QUERY], cand, GenerationConfig(), "v1", served)[0]["row_id"]
        for served in (
            {"id": "m", "root": "/weights/v1"},
            {"id": "m", "root": "/weights/v2"},  # the same name, another model behind it
            {"id": "m", "root": "/weights/v1"},
        )
    ]
    assert rows[0] != rows[1] and rows[0] == rows[2]
    gen = {"row_id": "g1", "model": "m", "index": 1, "response": "r", "status": "ok", "error": None}
    judge = JudgeConfig(engine=ServeEngineConfig(model="critic"))
    ids = [
        scoring_rows(gen, QUERY, judge, TEMPLATE, served)[0]["row_id"]
        for served in ({"engine": {"model": "/critic-a"}}, {"engine": {"model": "/critic-b"}})
    ]
    assert ids[0] != ids[1]


def test_samples_and_repeats_add_rows_without_renaming_the_first() -> None:
    cand = CandidateConfig(name="m", engine=BASE_ENGINES[TransformersEngineConfig])
    one = generation_rows([QUERY], cand, GenerationConfig(), "v1")
    two = generation_rows([QUERY], cand, GenerationConfig(samples=2), "v1")
    assert [r["row_id"] for r in two][:1] == [one[0]["row_id"]] and len({r["row_id"] for r in two}) == 2
    gen = {"row_id": "g1", "model": "m", "index": 1, "response": "r", "status": "ok", "error": None}
    once = scoring_rows(gen, QUERY, JudgeConfig(), TEMPLATE)
    thrice = scoring_rows(gen, QUERY, JudgeConfig(repeats=3), TEMPLATE)
    assert thrice[0]["row_id"] == once[0]["row_id"] and len({r["row_id"] for r in thrice}) == 3
