"""Typed configuration; YAML is only its serialisation.

Every model forbids unknown keys, and each field is documented once, next to the field. Loading
goes through :func:`load_config`, which reads YAML, applies dotted ``-o key=value`` overrides, and
turns pydantic's errors into one line naming the file and the key.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, overload

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from wbray.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Identified(_Strict):
    """A config whose values name results: :meth:`identity` is hashed into row ids.

    Identity is by exclusion: every field counts, except those a class declares in
    ``identity_exempt`` because they cannot change a result (batch sizes, concurrency, resources,
    timeouts, retries). A new field therefore changes row ids until someone decides otherwise —
    the safe default — and ``tests/unit/test_identity.py`` holds a table covering every field.
    """

    identity_exempt: ClassVar[frozenset[str]] = frozenset()

    def identity(self) -> dict[str, Any]:
        """Every field that can change a result, as plain JSON-able data."""
        return {
            name: _identity_value(getattr(self, name))
            for name in type(self).model_fields
            if name not in self.identity_exempt
        }


def _identity_value(value: Any) -> Any:
    if isinstance(value, _Identified):
        return value.identity()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_identity_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _identity_value(v) for k, v in value.items()}
    return value


class SamplingParams(_Identified):
    """Sampling settings. Every field is optional: None means "not set here" so that layers merge
    explicitly (:meth:`merged`) and an engine can omit a field an API rejects."""

    temperature: float | None = Field(None, ge=0, description="Softmax temperature; 0 means greedy.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int | None = Field(None, ge=-1, description="Top-k cut-off; -1 or None disables it.")
    max_tokens: int | None = Field(None, ge=1, description="Maximum number of new tokens.")
    repetition_penalty: float | None = Field(None, gt=0, description="HF-style repetition penalty.")
    seed: int | None = Field(None, description="Random seed, for reproducible sampling.")

    def merged(self, override: SamplingParams | None) -> SamplingParams:
        """Return a copy where every field set in ``override`` replaces this one's."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))


#: The paper's candidate-generation sampling (WritingBench, arXiv 2503.05244).
PAPER_GENERATION_SAMPLING = SamplingParams(temperature=0.7, top_p=0.8, top_k=20, max_tokens=16000)
#: The paper's judge sampling: upstream's critic runs vLLM ``SamplingParams(temperature=1.0,
#: top_p=0.95, max_tokens=2048)``, whose unset fields mean top_k -1 (off) and repetition_penalty
#: 1.0. Both are explicit here because a vLLM *server* fills unset fields from the model's
#: generation_config.json (Qwen-based critics carry top_k 20, repetition_penalty 1.05).
PAPER_JUDGE_SAMPLING = SamplingParams(
    temperature=1.0, top_p=0.95, top_k=-1, max_tokens=2048, repetition_penalty=1.0
)


class DataConfig(_Strict):
    """Which benchmark rows to evaluate."""

    data_dir: str | None = Field(
        None,
        description="WritingBench data directory (official layout), 'example' for the bundled example "
        "benchmark, or None to use $WBRAY_DATA_DIR, then the download cache.",
    )
    domain1: list[str] | None = Field(None, description="Keep only these primary domains.")
    domain2: list[str] | None = Field(None, description="Keep only these subdomains.")
    lang: list[Literal["zh", "en"]] | None = Field(None, description="Keep only these languages.")
    indices: list[int] | None = Field(None, description="Keep only these query indices.")
    limit: int | None = Field(None, ge=1, description="Keep the first N queries after the other filters.")


SamplingField = Literal["temperature", "top_p", "top_k", "max_tokens", "repetition_penalty", "seed"]


class StageResources(_Strict):
    """Ray resources of one pipeline stage (an actor pool of engine replicas)."""

    actors: int = Field(1, ge=1, description="Actor pool size (minimum size when max_actors is set).")
    max_actors: int | None = Field(None, ge=1, description="Autoscale the pool up to this many actors.")
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per actor (fractions allowed).")
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per actor (fractions allowed).")
    batch_size: int | None = Field(
        None, ge=1, description="Rows per Ray Data batch; default: the engine's batch size."
    )
    resources: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="Custom Ray resources per actor, e.g. {worker_node: 1} to pin the pool to nodes "
        "started with `ray start --resources '{\"worker_node\": 1}'`.",
    )

    @model_validator(mode="after")
    def _pool_bounds(self) -> StageResources:
        # A ceiling under the floor is a typo; the pool would otherwise quietly stay at `actors`.
        if self.max_actors is not None and self.max_actors < self.actors:
            raise ValueError(f"max_actors ({self.max_actors}) must be at least actors ({self.actors})")
        return self


class TransformersEngineConfig(_Identified):
    """Hugging Face transformers on CPU or GPU (extra: cpu)."""

    # Padding can shift logits in the last bits, but wbray treats batching as a resource: the
    # same model, dtype and sampling name the same rows however they were batched.
    # The prefix cache is a resource too: a reply does not depend on what the cache held (blocks
    # are computed from the same inputs either way), and on/off only moves logits in the last bits,
    # as batching does.
    identity_exempt: ClassVar[frozenset[str]] = frozenset({"batch_size", "torch_threads", "prefix_cache_mb"})

    backend: Literal["transformers"] = Field("transformers", description="Backend name.")
    model: str = Field(
        "smollm2",
        description="'smollm2' (the embedded SmolLM2-135M-Instruct), an HF folder or a .gguf file.",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="Weights dtype; 'auto' = bf16 where the CPU/GPU computes it natively, else float32.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' takes CUDA when present.")
    batch_size: int = Field(4, ge=1, description="Sequences per generate() call (left-padded).")
    torch_threads: int | None = Field(
        None, ge=1, description="torch threads per actor; default: the CPUs the actor reserves."
    )
    prefix_cache_mb: int = Field(
        1024,
        ge=0,
        description=(
            "Memory for the key/value states of prompt prefixes reused across requests (prompts decoded "
            "one per generate() call, e.g. a judge with batch_size 1); 0 turns it off."
        ),
    )


class OpenAIEngineConfig(_Identified):
    """Any OpenAI-compatible /v1/chat/completions endpoint: wbray serve, vLLM's server, hosted APIs."""

    identity_exempt: ClassVar[frozenset[str]] = frozenset(
        {
            "api_key_env",  # which variable holds the key, not what answers
            "max_concurrency",
            "max_retries",
            "initial_backoff_s",
            "max_backoff_s",
            "timeout_s",
            "batch_size",
            "probe_models",  # the probe's answer itself joins the identity when it runs
        }
    )

    backend: Literal["openai"] = Field("openai", description="Backend name.")
    base_url: str = Field(description="Endpoint base, e.g. http://127.0.0.1:8000/v1.")
    model: str = Field(description="Model name sent in each request.")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key (never the key itself)."
    )
    max_concurrency: int = Field(8, ge=1, description="Requests in flight at once per engine replica.")
    max_retries: int = Field(4, ge=0, description="Retries on 429/5xx, timeouts and connection errors.")
    initial_backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles each retry.")
    max_backoff_s: float = Field(30.0, ge=0, description="Cap of the retry delay.")
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout.")
    omit_sampling: list[SamplingField] = Field(
        default_factory=list,
        description="Sampling fields never sent (e.g. [top_p] for APIs that refuse temperature with top_p).",
    )
    structured_output: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema",
        description="How a JSON-schema request is sent: response_format json_schema, json_object, or none.",
    )
    batch_size: int = Field(16, ge=1, description="Requests handed to the engine per Ray Data batch.")
    probe_models: bool = Field(
        True,
        description="Ask GET <base_url>/models what the endpoint serves before any work and hash it "
        "into row ids (a model swapped behind the same name then recomputes); false for APIs "
        "without /models.",
    )


class VLLMEngineConfig(_Identified):
    """vLLM batch inference through ray.data.llm (extra: gpu; GPU clusters only)."""

    # Parallelism and placement are resources; engine_kwargs may hold anything, so they count.
    identity_exempt: ClassVar[frozenset[str]] = frozenset(
        {
            "tensor_parallel_size",
            "pipeline_parallel_size",
            "gpu_memory_utilization",
            "batch_size",
            "replicas",
            "accelerator_type",
        }
    )

    backend: Literal["vllm"] = Field("vllm", description="Backend name.")
    model: str = Field(description="HF model id, local path or cloud URI (model_source).")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per replica for tensor parallelism.")
    pipeline_parallel_size: int = Field(1, ge=1, description="Pipeline-parallel stages per replica.")
    max_model_len: int | None = Field(None, ge=1, description="Context length cap (prompt + output).")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Fraction of GPU memory vLLM may use.")
    dtype: str = Field("auto", description="vLLM dtype.")
    batch_size: int = Field(64, ge=1, description="Rows per batch sent to each vLLM replica.")
    replicas: int = Field(1, ge=1, description="vLLM engine replicas (Ray Data concurrency).")
    accelerator_type: str | None = Field(None, description="Ray accelerator type, e.g. H100, A10G.")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra vLLM engine arguments.")


class ServeEngineConfig(_Identified):
    """A model served by `wbray serve` on the same Ray cluster, called through a DeploymentHandle
    (no HTTP hop; Serve balances the calls over the model's replicas). The served engine's own
    identity (asked from the deployment before any work) joins the row ids."""

    identity_exempt: ClassVar[frozenset[str]] = frozenset({"max_in_flight", "batch_size"})

    backend: Literal["serve"] = Field("serve", description="Backend name.")
    app: str = Field("wbray", description="Serve application name (the serve config's `name`).")
    model: str = Field(description="The served model's name (a `models[].name` of the serve config).")
    max_in_flight: int = Field(16, ge=1, description="Handle calls outstanding at once per engine replica.")
    batch_size: int = Field(16, ge=1, description="Requests handed to the engine per Ray Data batch.")


EngineConfig = Annotated[
    TransformersEngineConfig | OpenAIEngineConfig | VLLMEngineConfig | ServeEngineConfig,
    Field(discriminator="backend"),
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(value: str) -> str:
    """Validate a name used in file names and partitions (models, judges, deployments)."""
    if not _NAME.match(value):
        raise ValueError("use letters, digits, '.', '_' or '-' (it names files and partitions)")
    return value


#: A name used in file names and partitions (models, judges, deployments).
Name = Annotated[str, AfterValidator(check_name)]
#: Judge sampling given in a file overrides the paper's judge defaults field by field.
JudgeSampling = Annotated[SamplingParams, AfterValidator(lambda v: PAPER_JUDGE_SAMPLING.merged(v))]
#: Generation sampling given in a file overrides the paper's generation defaults field by field.
GenerationSampling = Annotated[SamplingParams, AfterValidator(lambda v: PAPER_GENERATION_SAMPLING.merged(v))]


class CandidateConfig(_Identified):
    """A model under evaluation: run by an engine, or given by the responses it already wrote."""

    # Imported answers are named by their text (see wbray.steps.imported), not by the file's path.
    identity_exempt: ClassVar[frozenset[str]] = frozenset({"resources", "responses"})

    name: Name = Field(description="Model name in results, file names and partitions.")
    engine: EngineConfig | None = Field(None, description="How this model is run (or give responses).")
    responses: str | None = Field(
        None,
        description="Answers generated elsewhere, in upstream's {index, response} JSONL: a file, a "
        "directory holding <name>.jsonl, or an s3:// URI of either (instead of engine).",
    )
    sampling: SamplingParams | None = Field(
        None, description="Overrides of generation.sampling for this model."
    )
    system_prompt: str | None = Field(None, description="Overrides generation.system_prompt for this model.")
    resources: StageResources | None = Field(
        None, description="This model's generation actor pool; default: generation.resources."
    )

    @model_validator(mode="after")
    def _one_source(self) -> CandidateConfig:
        if (self.engine is None) == (self.responses is None):
            raise ValueError(
                "give exactly one of `engine` (generate answers) or `responses` (a file of them)"
            )
        return self


class GenerationConfig(_Identified):
    """How candidate answers are requested."""

    # samples adds rows (each sample number is in its row's id); it never changes one.
    identity_exempt: ClassVar[frozenset[str]] = frozenset({"samples", "resources"})

    system_prompt: str | None = Field(
        None, description="Optional system message; the query is always the single user message."
    )
    sampling: GenerationSampling = Field(
        PAPER_GENERATION_SAMPLING,
        description="Candidate sampling; fields given here override the paper defaults one by one.",
    )
    samples: int = Field(1, ge=1, description="Answers generated per query and model.")
    resources: StageResources = Field(StageResources(), description="The generation actor pool.")


class JudgeConfig(_Identified):
    """How the judge is run, prompted and sampled."""

    # repeats adds rows (the repeat number is in each row's id); re-asks are retries; the prompt
    # counts through its version (hashed text), not through the mode that found it.
    # The cache only decides whether a verdict is computed again, never what it is.
    identity_exempt: ClassVar[frozenset[str]] = frozenset(
        {"repeats", "max_reasks", "resources", "template", "cache", "cache_refresh"}
    )

    name: Name = Field("judge", description="Judge name in results and partitions.")
    engine: EngineConfig | None = Field(None, description="The judge model; required to score.")
    template: Literal["auto", "official", "builtin"] = Field(
        "auto",
        description="'official' requires upstream's judge prompt from the data dir; 'builtin' uses "
        "wbray's own wording of the same structure; 'auto' takes official when available.",
    )
    repeats: int = Field(1, ge=1, description="Judge calls per (query, response, criterion).")
    sampling: JudgeSampling = Field(
        PAPER_JUDGE_SAMPLING,
        description="Judge sampling; fields given here override the paper defaults one by one.",
    )
    constrained: bool = Field(
        False,
        description="Constrain decoding to {score: int 1-10, reason: str}; off = official free-form replies.",
    )
    reason_max_chars: int = Field(300, ge=1, description="Longest reason the constrained schema allows.")
    max_reasks: int = Field(2, ge=0, description="Extra judge calls after an unparseable reply.")
    resources: StageResources = Field(StageResources(), description="The scoring actor pool.")
    cache: str | None = Field(
        None,
        description="Judge cache prefix (local or s3://) shared by runs, sweep cells and the served "
        "critic: a verdict for the same judge, rendered prompt, sampling and repeat number is reused "
        "instead of asked again.",
    )
    cache_refresh: bool = Field(
        False, description="Ignore cached verdicts (draw new ones); new verdicts still go into the cache."
    )

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        if not self.constrained:
            # The reason bound exists only in the constrained schema; free replies ignore it.
            ident.pop("reason_max_chars")
        return ident

    def reply_schema(self) -> dict[str, Any]:
        """The JSON schema of a judge reply (used for constrained decoding)."""
        return {
            "type": "object",
            "properties": {
                "score": {"type": "integer", "minimum": 1, "maximum": 10},
                "reason": {"type": "string", "maxLength": self.reason_max_chars},
            },
            "required": ["score", "reason"],
            "additionalProperties": False,
        }


class RayConfig(_Strict):
    """Where the pipeline runs."""

    address: str | None = Field(
        None, description="Existing cluster ('auto' or ray://host:port); None starts a local one."
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local cluster; default: all cores.")
    object_store_mb: int = Field(300, ge=50, description="Object store size of the local cluster (MB).")
    no_progress_timeout_s: float = Field(
        600.0, gt=0, description="Fail a pipeline that makes no progress this long (instead of hanging)."
    )


class StorageConfig(_Strict):
    """S3-compatible storage settings (credentials come only from the standard AWS chain)."""

    endpoint_url: str | None = Field(
        None,
        description="S3 endpoint for MinIO/Ceph/moto, e.g. http://minio:9000; default: $AWS_ENDPOINT_URL.",
    )
    region: str | None = Field(None, description="S3 region; default: $AWS_REGION / $AWS_DEFAULT_REGION.")
    addressing_style: Literal["auto", "path", "virtual"] | None = Field(
        None, description="Bucket addressing; MinIO and Ceph usually need 'path'."
    )


class RunConfig(_Strict):
    """Where results go, and how they are written."""

    out: str | None = Field(None, description="Run directory URI; default runs/<config file stem>.")
    part_rows: int = Field(
        1000,
        ge=1,
        description="Verdicts buffered into one Parquet part before it is written (one S3 PUT each).",
    )
    part_age_s: float = Field(
        60.0,
        gt=0,
        description="Buffered verdicts are written at the latest this many seconds after the oldest "
        "arrived: a crash loses at most part_rows verdicts or this many seconds of judging.",
    )


class ReportConfig(_Strict):
    """What a run writes after scoring (under ``reports/<judge>/``)."""

    resamples: int = Field(
        1000, ge=0, description="Bootstrap resamples (clustered by query) for confidence intervals; 0 = none."
    )
    seed: int = Field(0, description="Seed of the bootstrap, so intervals are reproducible.")
    browse: bool = Field(
        True, description="Write browse.html: leaderboard -> domain -> query -> answers, scores and reasons."
    )


class WbrayConfig(_Strict):
    """Top-level configuration file."""

    data: DataConfig = Field(DataConfig(), description="Benchmark selection.")
    candidates: list[CandidateConfig] = Field(default_factory=list, description="Models under evaluation.")
    generation: GenerationConfig = Field(GenerationConfig(), description="Candidate generation.")
    judge: JudgeConfig = Field(JudgeConfig(), description="Judging.")
    ray: RayConfig = Field(RayConfig(), description="Ray cluster settings.")
    run: RunConfig = Field(RunConfig(), description="Output location.")
    report: ReportConfig = Field(ReportConfig(), description="Reports written after a run.")
    storage: StorageConfig = Field(StorageConfig(), description="S3-compatible storage settings.")

    @model_validator(mode="before")
    @classmethod
    def _none_sections_are_defaults(cls, data: Any) -> Any:
        # A YAML section written as `judge:` with nothing under it parses to None; treat it as empty.
        if isinstance(data, dict):
            return {k: ({} if v is None else v) for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _unique_candidates(self) -> WbrayConfig:
        names = [c.name for c in self.candidates]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"candidate names must be unique; repeated: {', '.join(dupes)}")
        return self


def content_hash(value: Any, length: int = 16) -> str:
    """A stable short hash of JSON-able content (sorted keys), for row ids and config hashes."""
    blob = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to the type that validates a present value."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _tag_field(member: Any, tag: str | int) -> str | None:
    """The field of union member ``member`` whose ``Literal`` value is ``tag`` (a discriminator), if any."""
    if not _is_model(member):
        return None
    for name, field in member.model_fields.items():
        if get_origin(field.annotation) is Literal and tag in get_args(field.annotation):
            return str(name)
    return None


@dataclass(frozen=True)
class _Step:
    """Where one part of an error location or override key leads in the schema."""

    annotation: Any  # the type below the part; None when the schema does not say
    shown: str | None  # the part as a user writes it; None for a union tag pydantic adds to locations
    selected: str | None = None  # "backend 'transformers'" when the part picked a union member


def _step(annotation: Any, part: str | int) -> _Step:
    """Follow ``part`` (a field, a list index, a mapping key or a union tag) down from ``annotation``."""
    current = _unwrap(annotation)
    origin = get_origin(current)
    if _is_model(current):
        field = current.model_fields.get(str(part))
        return _Step(field.annotation if field is not None else None, str(part))
    if origin in (list, tuple) and isinstance(part, int):
        args = get_args(current)
        return _Step(args[0] if args else None, str(part))
    if origin is dict:
        args = get_args(current)
        return _Step(args[1] if len(args) == 2 else None, str(part))
    if origin in (Union, types.UnionType):
        # pydantic names the member of a discriminated union by its tag (loc judge.engine.transformers.modle);
        # a user never writes that part, so it is dropped from what is shown.
        for member in get_args(current):
            member = _unwrap(member)
            discriminator = _tag_field(member, part)
            if discriminator is not None:
                return _Step(member, None, f"{discriminator} {part!r}")
    return _Step(None, str(part))


def _locate(model: type[BaseModel], loc: tuple[str | int, ...]) -> tuple[str, Any, str | None]:
    """Walk ``loc`` through ``model``: the dotted path as a user writes it, the type there, and the union
    member selected on the way (None when the last step selected none)."""
    shown: list[str] = []
    annotation: Any = model
    selected = None
    for part in loc:
        step = _step(annotation, part) if annotation is not None else _Step(None, str(part))
        annotation = step.annotation
        selected = step.selected
        if step.shown is not None:
            shown.append(step.shown)
    return ".".join(shown), annotation, selected


#: Deeper than any real config (engine_kwargs included), and far below the ~250 levels where pydantic's
#: serializer gives up: a pathological file fails on load, naming where, not when a run dumps it.
_MAX_DEPTH = 32


def _too_deep(tree: Any) -> str | None:
    """The dotted path where ``tree`` first nests past :data:`_MAX_DEPTH`, or None."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(tree, ())]
    while stack:  # iterative: the structure being checked may be too deep to recurse into
        node, path = stack.pop()
        if len(path) > _MAX_DEPTH:
            return ".".join(path[:8]) + "..."
        if isinstance(node, dict):
            stack.extend((v, (*path, str(k))) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, (*path, str(i))) for i, v in enumerate(node))
    return None


class _OverrideError(ValueError):
    """An override key that cannot be applied to the tree (the caller adds the override text)."""


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any, model: type[BaseModel] | None = None) -> None:
    """Set ``tree[a][b]... = value`` for ``dotted`` = ``a.b...``; a number indexes into a list
    (``candidates.0.engine.batch_size``). ``model`` tells which missing containers are lists."""
    parts = dotted.split(".")
    if not all(p.strip() for p in parts):
        raise _OverrideError("empty key segment (write dotted keys such as judge.sampling.temperature)")
    node: Any = tree
    annotation: Any = model
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth])
        key: str | int = part
        in_list = isinstance(node, list)  # a flag, not a narrowing: node stays Any for indexing
        if in_list:
            valid = f" (valid: 0..{len(node) - 1})" if node else ""
            if not part.isdecimal():
                raise _OverrideError(f"{here} is a list: write an item number in place of {part!r}{valid}")
            key = int(part)
            if key >= len(node):
                raise _OverrideError(f"{here} has {len(node)} item(s), so index {key} is out of range{valid}")
        annotation = _step(annotation, key).annotation if annotation is not None else None
        if depth == len(parts) - 1:
            node[key] = value
            return
        child = node[key] if in_list else node.get(part)
        if not isinstance(child, dict | list):
            # Missing (or a scalar being replaced): start the container the schema expects, so that
            # an index into a list the file does not have fails as "out of range", not as a dict.
            child = [] if get_origin(_unwrap(annotation)) is list else {}
            node[key] = child
        node = child


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key.path=value``; the value is read as a YAML scalar/flow (``0``, ``true``, ``[a, b]``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. judge.sampling.temperature=0")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({_yaml_problem(exc)})") from None
    return key.strip(), value


def _allowed_keys(annotation: Any) -> list[str]:
    """The keys a mapping of type ``annotation`` allows (none when it is not a model)."""
    current = _unwrap(annotation)
    return sorted(current.model_fields) if _is_model(current) else []


def _tags(annotation: Any, discriminator: str) -> list[str]:
    """The tag values of the discriminated union ``annotation`` (e.g. every engine backend)."""
    current = _unwrap(annotation)
    tags: list[str] = []
    for member in get_args(current) if get_origin(current) in (Union, types.UnionType) else ():
        member = _unwrap(member)
        if _is_model(member) and discriminator in member.model_fields:
            field_type = member.model_fields[discriminator].annotation
            if get_origin(field_type) is Literal:
                tags += [str(t) for t in get_args(field_type)]
    return tags


def _short(value: Any, limit: int = 80) -> str:
    # The offending value is echoed for context only; a long prompt or a whole section would drown it.
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _explain(exc: ValidationError, source: str, model: type[BaseModel]) -> ConfigError:
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    dotted, annotation, _ = _locate(model, loc)
    dotted = dotted or "<root>"
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    if err["type"] == "extra_forbidden":
        # The unknown key's parent, reached through list items and the selected union member, so an
        # engine block lists its backend's fields (pydantic's loc: judge.engine.transformers.modle).
        _, parent, selected = _locate(model, loc[:-1])
        allowed = _allowed_keys(parent)
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
        within = f"{selected}; " if selected else ""
        allowed_text = ", ".join(allowed)
        return ConfigError(
            f"{source}: unknown key {dotted!r}{did_you_mean} ({within}allowed here: {allowed_text}){more}"
        )
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        discriminator = str(err.get("ctx", {}).get("discriminator", "")).strip("'")
        tags = _tags(annotation, discriminator)
        one_of = f"one of: {', '.join(tags)}"
        if err["type"] == "union_tag_not_found":
            return ConfigError(f"{source}: {dotted}: missing key {discriminator!r} ({one_of}){more}")
        tag = str(err.get("ctx", {}).get("tag", ""))
        hint = difflib.get_close_matches(tag, tags, n=1)
        did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
        where = f"{dotted}.{discriminator}"
        return ConfigError(
            f"{source}: {where}: unknown {discriminator} {tag!r}{did_you_mean} ({one_of}){more}"
        )
    value = err.get("input")
    # A missing key or a whole section's check has the section as input: echoing it adds nothing.
    got = "" if err["type"] == "missing" or isinstance(value, dict) else f" (got {_short(value)})"
    # pydantic prefixes the text of a validator's ValueError with "Value error, ": noise in one line.
    msg = str(err["msg"]).removeprefix("Value error, ")
    return ConfigError(f"{source}: {dotted}: {msg}{got}{more}")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line from a PyYAML error (its own text spans several lines, with a caret drawing)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        context = f"; {exc.context}" if exc.context else ""
        return f"{exc.problem} (column {mark.column + 1}{context})"
    return " ".join(str(exc).split())


def _yaml_line(exc: yaml.YAMLError, text: str) -> int | None:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        return exc.problem_mark.line + 1
    if isinstance(exc, yaml.reader.ReaderError):
        return text.count("\n", 0, exc.position) + 1
    return None


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that rejects a key given twice in one mapping.

    PyYAML keeps the last of two equal keys silently; in a config that means a second ``judge:``
    section quietly replaces the first, which is never what the author meant.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges defaults; keys written after it override them on purpose
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice (first on line {first[key] + 1})",
                    key_node.start_mark,
                )
            first[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: str | Path) -> Any:
    """Parse one YAML file; every way it can fail is a :class:`ConfigError` naming file:line."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{source}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {column}); "
            "save the config as UTF-8"
        ) from None
    try:
        # A leading BOM is allowed by the YAML spec and PyYAML skips it: accepted.
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        at = _yaml_line(exc, text)
        where = f"{source}:{at}" if at is not None else source
        raise ConfigError(f"{where}: not valid YAML: {_yaml_problem(exc)}") from None
    except RecursionError:
        # PyYAML composes nested collections recursively; a pathological file must not crash.
        raise ConfigError(f"{source}: not valid YAML: nested too deeply to parse") from None


M = TypeVar("M", bound=BaseModel)


@overload
def load_config(
    path: str | Path | Mapping[str, Any] | None = None, overrides: list[str] | None = None
) -> WbrayConfig: ...


@overload
def load_config(
    path: str | Path | Mapping[str, Any] | None, overrides: list[str] | None, model: type[M]
) -> M: ...


def load_config(
    path: str | Path | Mapping[str, Any] | None = None,
    overrides: list[str] | None = None,
    model: type[BaseModel] = WbrayConfig,
) -> BaseModel:
    """Load a config from YAML (or a parsed mapping, or defaults when None) and apply overrides.

    Args:
        path: A YAML file, an already-parsed mapping (e.g. Serve ``args``), or None for defaults.
        overrides: Dotted ``key.path=value`` strings applied on top; a number indexes into a list
            (``candidates.0.engine.batch_size=2``).
        model: The schema to validate against (default: the evaluation config).

    Raises:
        ConfigError: naming the file (or the override) and the line or key at fault.
    """
    tree: dict[str, Any] = {}
    source = "<defaults>"
    if isinstance(path, Mapping):
        # A deep copy: overrides write into nested sections and list items, never into the caller's.
        tree, source = copy.deepcopy(dict(path)), "<args>"
    elif path is not None:
        source = str(path)
        loaded = _read_yaml(path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping, got {type(loaded).__name__}")
        tree = loaded
    for text in overrides or []:
        key, value = parse_override(text)
        try:
            _set_dotted(tree, key, value, model)
        except _OverrideError as exc:
            raise ConfigError(f"{source}: override {text!r}: {exc}") from None
    if overrides:
        source += " (with -o overrides)"
    deep = _too_deep(tree)
    if deep is not None:
        raise ConfigError(f"{source}: {deep}: nested more than {_MAX_DEPTH} levels deep")
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        raise _explain(exc, source, model) from None


def dump_config(config: BaseModel) -> str:
    """Serialise a config to YAML (round-trips through :func:`load_config`)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
