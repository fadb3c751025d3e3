"""The run manifest as a typed record: what a run was asked to do, what it did, and how well the
cluster was used.

Written first (``status: running``) and last (``complete``), so a crashed run never reads as
complete. Reading is lenient about keys it does not know (a manifest from a newer wbray still
lists), strict about the JSON itself: a damaged file is one clear error naming it.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wbray.errors import WbrayError


class _Record(BaseModel):
    # Unknown keys are kept, not refused: a manifest outlives the wbray version that wrote it.
    model_config = ConfigDict(extra="allow")


class DataInfo(_Record):
    """Which benchmark the run evaluated."""

    source: str = Field("", description="'example', or the data directory the queries came from.")
    data_version: str = Field("", description="Content hash of the benchmark files.")
    queries: int = Field(0, description="Queries selected for this run.")


class TemplateInfo(_Record):
    """The judge prompt the run used."""

    source: str = Field("", description="'official' or 'builtin'.")
    origin: str | None = Field(None, description="Where the official template was read from.")


class RowCount(_Record):
    total: int = 0
    ok: int = 0
    failed: int = 0


class TokenCount(_Record):
    prompt: int = 0
    completion: int = 0


class StageStats(_Record):
    """One stage of one model in one invocation (e.g. generation of model m, scoring of m by j)."""

    stage: Literal["generate", "score"]
    model: str
    judge: str | None = None
    planned: int = Field(0, description="Rows this invocation set out to compute.")
    skipped: int = Field(0, description="Rows already stored, so not computed again.")
    computed: int = Field(0, description="Rows written by this invocation.")
    failed: int = Field(0, description="Of the computed rows, those with status 'failed'.")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    parts: int = Field(0, description="Parquet parts this invocation wrote for the stage.")
    cache_hits: int = Field(0, description="Verdicts taken from the judge cache (no engine call).")
    cache_misses: int = Field(0, description="Verdicts asked of the judge with a cache configured.")

    @property
    def parts_per_1000_rows(self) -> float | None:
        return None if not self.computed else 1000 * self.parts / self.computed


class PoolStats(_Record):
    """One engine pool (the actors of one candidate's generation, or of one judge)."""

    pool: str = Field(description="'generate:<model>' or 'score:<judge>'.")
    backend: str
    actors: int = Field(0, description="Distinct actors that did work (or configured replicas).")
    engine_loads: int | None = Field(
        None, description="Times a model was loaded in this pool; None where the backend cannot tell."
    )
    load_s: float = Field(0.0, description="Seconds spent loading models, summed over actors.")
    busy_s: float = Field(0.0, description="Seconds spent in engine calls, summed over actors.")
    batches: int = 0
    rows: int = 0
    wall_s: float = Field(0.0, description="From the pool's first batch start to its last batch end.")

    @property
    def utilisation(self) -> float | None:
        """busy / (actors x wall): how much of the pool's time went into engine work."""
        if not self.actors or self.wall_s <= 0:
            return None
        return self.busy_s / (self.actors * self.wall_s)


class Invocation(_Record):
    """One `wbray run` / `wbray score` on this run directory."""

    started_at: float
    finished_at: float | None = None
    judge: str
    generate: bool
    stages: list[StageStats] = Field(default_factory=list)
    pools: list[PoolStats] = Field(default_factory=list)


class RunManifest(_Record):
    """``manifest.json`` of a run directory."""

    wbray_version: str = ""
    status: Literal["running", "complete", "failed"] = "running"
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float | None = None
    wall_s: float | None = None
    error: str | None = Field(None, description="Why the last invocation failed (status 'failed').")
    config: dict[str, Any] = Field(default_factory=dict)
    config_yaml: str = ""
    config_hash: str = ""
    data: DataInfo = Field(default_factory=DataInfo)
    judge: str | None = Field(None, description="The judge of the last invocation.")
    prompt_versions: dict[str, str] = Field(default_factory=dict)
    judge_template: TemplateInfo = Field(default_factory=TemplateInfo)
    engines: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per pool, the engine identity hashed into its row ids."
    )
    packages: dict[str, str] = Field(default_factory=dict)
    row_counts: dict[str, RowCount] = Field(
        default_factory=dict, description="'generations' and 'scores' (of the last invocation's judge)."
    )
    tokens: dict[str, TokenCount] = Field(default_factory=dict)
    history: list[Invocation] = Field(default_factory=list)

    @property
    def last(self) -> Invocation | None:
        return self.history[-1] if self.history else None

    @property
    def models(self) -> list[str]:
        """Candidate names from the config (in order)."""
        return [str(c.get("name")) for c in self.config.get("candidates", []) if isinstance(c, dict)]

    def to_json(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False).encode("utf-8")

    @classmethod
    def parse(cls, data: bytes, source: str) -> RunManifest:
        """Parse manifest bytes; a damaged file is one :class:`WbrayError` naming ``source`` (and the
        line, when the JSON breaks off there)."""
        # Manifests are written atomically, so a bad one was damaged outside wbray (a cut-short copy
        # or sync, an edit); a re-run rewrites it from the config, and the committed parts are kept.
        where, what, value = source, "expected a JSON object", None
        try:
            value = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            what = f"not UTF-8 at byte {exc.start}"
        except json.JSONDecodeError as exc:
            if data.strip():
                where, what = f"{source}:{exc.lineno}", f"{exc.msg} at column {exc.colno}"
            else:
                what = "empty file"
        except RecursionError:
            what = "nested too deeply to parse"
        if isinstance(value, dict):
            try:
                return cls.model_validate(value)
            except ValidationError as exc:
                err = exc.errors()[0]
                what = f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
        raise WbrayError(
            f"{where}: truncated or corrupt manifest ({what}); restore it, or delete it and re-run "
            "the run's config to rebuild it"
        )
