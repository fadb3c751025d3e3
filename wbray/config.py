"""Typed configuration; YAML is only its serialisation.

Every model forbids unknown keys, and each field is documented once, next to the field. Loading
goes through :func:`load_config`, which reads YAML, applies dotted ``-o key=value`` overrides, and
turns pydantic's errors into one line naming the file and the key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from wbray.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplingParams(_Strict):
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
#: The paper's judge sampling (matches upstream's critic and API judge settings).
PAPER_JUDGE_SAMPLING = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=2048)


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


class GenerationConfig(_Strict):
    """How candidate answers are requested."""

    system_prompt: str | None = Field(
        None, description="Optional system message; the query is always the single user message."
    )
    sampling: SamplingParams = Field(
        PAPER_GENERATION_SAMPLING,
        description="Candidate sampling; fields given here override the paper defaults one by one.",
    )

    @field_validator("sampling", mode="after")
    @classmethod
    def _over_paper_defaults(cls, value: SamplingParams) -> SamplingParams:
        # `sampling: {temperature: 0}` changes the temperature only; the other paper settings stay.
        return PAPER_GENERATION_SAMPLING.merged(value)


class JudgeConfig(_Strict):
    """How the judge is prompted and sampled."""

    template: Literal["auto", "official", "builtin"] = Field(
        "auto",
        description="'official' requires upstream's judge prompt from the data dir; 'builtin' uses "
        "wbray's own wording of the same structure; 'auto' takes official when available.",
    )
    repeats: int = Field(1, ge=1, description="Judge calls per (query, response, criterion).")
    sampling: SamplingParams = Field(
        PAPER_JUDGE_SAMPLING,
        description="Judge sampling; fields given here override the paper defaults one by one.",
    )

    @field_validator("sampling", mode="after")
    @classmethod
    def _over_paper_defaults(cls, value: SamplingParams) -> SamplingParams:
        return PAPER_JUDGE_SAMPLING.merged(value)


class WbrayConfig(_Strict):
    """Top-level configuration file."""

    data: DataConfig = Field(DataConfig(), description="Benchmark selection.")
    generation: GenerationConfig = Field(GenerationConfig(), description="Candidate generation.")
    judge: JudgeConfig = Field(JudgeConfig(), description="Judging.")

    @model_validator(mode="before")
    @classmethod
    def _none_sections_are_defaults(cls, data: Any) -> Any:
        # A YAML section written as `judge:` with nothing under it parses to None; treat it as empty.
        if isinstance(data, dict):
            return {k: ({} if v is None else v) for k, v in data.items()}
        return data


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


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    model: type[WbrayConfig] = WbrayConfig,
) -> WbrayConfig:
    """Load a config from YAML (or defaults when ``path`` is None) and apply dotted overrides.

    Raises:
        ConfigError: naming the file (or the override) and the key at fault.
    """
    tree: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
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
