"""Typed configuration; YAML is only its serialisation.

Every model forbids unknown keys, and each field is documented once, next to the field. Loading
goes through :func:`load_config`, which reads YAML, applies dotted ``-o key=value`` overrides, and
turns pydantic's errors into one line naming the file and the key.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, overload

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


class TransformersEngineConfig(_Identified):
    """Hugging Face transformers on CPU or GPU (extra: cpu)."""

    # Padding can shift logits in the last bits, but wbray treats batching as a resource: the
    # same model, dtype and sampling name the same rows however they were batched.
    identity_exempt: ClassVar[frozenset[str]] = frozenset({"batch_size", "torch_threads"})

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
    """A model under evaluation."""

    identity_exempt: ClassVar[frozenset[str]] = frozenset({"resources"})

    name: Name = Field(description="Model name in results, file names and partitions.")
    engine: EngineConfig = Field(description="How this model is run.")
    sampling: SamplingParams | None = Field(
        None, description="Overrides of generation.sampling for this model."
    )
    system_prompt: str | None = Field(None, description="Overrides generation.system_prompt for this model.")
    resources: StageResources | None = Field(
        None, description="This model's generation actor pool; default: generation.resources."
    )


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
    identity_exempt: ClassVar[frozenset[str]] = frozenset({"repeats", "max_reasks", "resources", "template"})

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
    """Where results go."""

    out: str | None = Field(None, description="Run directory URI; default runs/<config file stem>.")


class WbrayConfig(_Strict):
    """Top-level configuration file."""

    data: DataConfig = Field(DataConfig(), description="Benchmark selection.")
    candidates: list[CandidateConfig] = Field(default_factory=list, description="Models under evaluation.")
    generation: GenerationConfig = Field(GenerationConfig(), description="Candidate generation.")
    judge: JudgeConfig = Field(JudgeConfig(), description="Judging.")
    ray: RayConfig = Field(RayConfig(), description="Ray cluster settings.")
    run: RunConfig = Field(RunConfig(), description="Output location.")
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


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key.path=value``; the value is read as a YAML scalar/flow (``0``, ``true``, ``[a, b]``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. judge.sampling.temperature=0")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from None
    return key.strip(), value


def _allowed_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            return []
        annotation = current.model_fields[part].annotation
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return sorted(current.model_fields) if current is not None else []


def _explain(exc: ValidationError, source: str, model: type[BaseModel]) -> ConfigError:
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    dotted = ".".join(str(p) for p in loc) or "<root>"
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, loc)
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
        return ConfigError(
            f"{source}: unknown key {dotted!r}{did_you_mean} (allowed here: {', '.join(allowed)}){more}"
        )
    return ConfigError(f"{source}: {dotted}: {err['msg']} (got {err.get('input')!r}){more}")


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
        overrides: Dotted ``key.path=value`` strings applied on top.
        model: The schema to validate against (default: the evaluation config).

    Raises:
        ConfigError: naming the file (or the override) and the key at fault.
    """
    tree: dict[str, Any] = {}
    source = "<defaults>"
    if isinstance(path, Mapping):
        tree, source = dict(path), "<args>"
    elif path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read config ({exc.strerror})") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping, got {type(loaded).__name__}")
        tree = loaded
    for text in overrides or []:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    if overrides:
        source += " (with -o overrides)"
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        raise _explain(exc, source, model) from None


def dump_config(config: BaseModel) -> str:
    """Serialise a config to YAML (round-trips through :func:`load_config`)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
