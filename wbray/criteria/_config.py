"""The config file of ``wbray criteria`` and ``wbray curate``: typed, YAML its serialisation."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from wbray.config import EngineConfig, JudgeConfig, RayConfig, SamplingParams, StageResources, StorageConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: Sampling of the criteria writer when the file gives none: some variety (a re-ask should not
#: repeat a rejected reply word for word) and room for five criteria of six texts each.
CRITERIA_SAMPLING = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=4096)
CriteriaSampling = Annotated[SamplingParams, AfterValidator(lambda v: CRITERIA_SAMPLING.merged(v))]


class QueryDefaults(_Strict):
    """What a new query gets for the benchmark fields its input row leaves out."""

    domain1: str = Field("Custom", min_length=1, description="Primary domain of queries without domain1.")
    domain2: str = Field("Custom", min_length=1, description="Subdomain of queries without domain2.")
    lang: Literal["auto", "zh", "en"] = Field(
        "auto",
        description="Language of queries without lang; 'auto' = zh when at least 30% of the query's "
        "letters are CJK ideographs, else en. It also picks the language the criteria are written in.",
    )


class CriteriaConfig(_Strict):
    """The model that writes five query-specific criteria per query."""

    engine: EngineConfig | None = Field(
        None, description="The criteria writer (any engine); required unless every row brings a checklist."
    )
    sampling: CriteriaSampling = Field(
        CRITERIA_SAMPLING,
        description="Sampling of the criteria writer; fields given here override the defaults one by one "
        "(T 0.7, top-p 0.95, 4,096 tokens).",
    )
    max_reasks: int = Field(
        2, ge=0, description="Extra calls after a reply that does not validate (told what was wrong)."
    )
    name_max_chars: int = Field(
        80, ge=1, description="Longest criterion name the reply schema allows (bounds constrained decoding)."
    )
    text_max_chars: int = Field(
        400,
        ge=1,
        description="Longest description or score-band text the reply schema allows (bounds constrained "
        "decoding; no model can close the JSON once max_tokens runs out inside a string).",
    )
    resources: StageResources = Field(StageResources(), description="The criteria writer's actor pool.")
    defaults: QueryDefaults = Field(QueryDefaults(), description="Benchmark fields a query row may omit.")


class CurationConfig(_Strict):
    """The config file of ``wbray criteria`` (its criteria, ray and storage sections) and ``wbray
    curate`` (also its judge section)."""

    criteria: CriteriaConfig = Field(CriteriaConfig(), description="The criteria writer.")
    judge: JudgeConfig = Field(JudgeConfig(), description="The judge of `wbray curate` (unused by criteria).")
    ray: RayConfig = Field(RayConfig(), description="Ray cluster settings.")
    storage: StorageConfig = Field(StorageConfig(), description="S3-compatible storage settings.")

    @model_validator(mode="before")
    @classmethod
    def _none_sections_are_defaults(cls, data: Any) -> Any:
        # `judge:` with nothing under it parses to None; an empty section means the defaults.
        if isinstance(data, dict):
            return {k: ({} if v is None else v) for k, v in data.items()}
        return data
