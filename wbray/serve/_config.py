"""The typed schema of a served wbray application; YAML (``configs/serve/``) is its serialisation.

One application holds a gateway (the HTTP ingress: auth, size limits, routing), one deployment per
chat model, and optionally a critic that scores responses through one of those models. This module
imports no Ray: configs validate and round-trip anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wbray.config import (
    PAPER_JUDGE_SAMPLING,
    EngineConfig,
    JudgeConfig,
    JudgeSampling,
    Name,
    SamplingParams,
    load_config,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AutoscalingSettings(_Strict):
    """Replica autoscaling of one deployment (Ray Serve ``autoscaling_config``)."""

    min_replicas: int = Field(1, ge=0, description="Fewest replicas kept running.")
    max_replicas: int = Field(1, ge=1, description="Most replicas started under load.")
    initial_replicas: int | None = Field(None, ge=0, description="Replicas at deploy time; default min.")
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Requests in flight per replica the autoscaler aims for."
    )
    upscale_delay_s: float = Field(
        30.0, ge=0, description="How long load must stay high before a replica is added."
    )
    downscale_delay_s: float = Field(
        600.0, ge=0, description="How long load must stay low before a replica is removed."
    )
    look_back_period_s: float = Field(30.0, gt=0, description="Window the load is averaged over.")

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must not exceed max_replicas ({self.max_replicas})"
            )
        return self

    def to_serve(self) -> dict[str, Any]:
        """The ``autoscaling_config`` dict Ray Serve takes."""
        out = self.model_dump(exclude_none=True)
        return out


class ReplicaResources(_Strict):
    """Resources reserved per replica (Ray Serve ``ray_actor_options``)."""

    num_cpus: float = Field(
        0.5,
        ge=0,
        description="CPUs per replica. Fractions keep small boxes usable: a whole CPU per replica "
        "starves Ray Data and other replicas on a 2-core machine.",
    )
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica (fractions allowed).")
    accelerator_type: str | None = Field(None, description="Ray accelerator type, e.g. H100, A10G.")

    def to_serve(self) -> dict[str, Any]:
        """The ``ray_actor_options`` dict Ray Serve takes."""
        options: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            options["num_gpus"] = self.num_gpus
        if self.accelerator_type is not None:
            options["accelerator_type"] = self.accelerator_type
        return options


class DeploymentSettings(_Strict):
    """Scaling, resources and admission control shared by every kind of deployment."""

    autoscaling: AutoscalingSettings = Field(AutoscalingSettings(), description="Replica autoscaling.")
    resources: ReplicaResources = Field(ReplicaResources(), description="Resources per replica.")
    max_ongoing_requests: int = Field(
        8,
        ge=1,
        description="Requests one replica admits at once (running, or waiting inside the replica for an "
        "engine slot); more wait in the caller's queue. Keep it above what the engine runs at once: a "
        "request waiting in the caller's queue is retried with back-off of up to 0.5 s, which idled the "
        "engine ~40% of the time (BENCHMARKS P4), while the replica's own queue refills a slot at once.",
    )
    max_queued_requests: int = Field(
        32,
        ge=-1,
        description="Requests waiting per caller beyond max_ongoing_requests before new ones get 503 "
        "at once (-1 = unbounded, which turns overload into ever-growing latency).",
    )

    health_check_period_s: float = Field(
        10.0,
        gt=0,
        description="How often Serve checks each replica; a dead replica is replaced after the next "
        "check (measured: about this long plus 2 s to start a new one), and calls routed to the "
        "dead one meanwhile fail with 502 replica_unavailable.",
    )

    def serve_options(self) -> dict[str, Any]:
        """Keyword arguments of ``Deployment.options``."""
        return {
            "autoscaling_config": self.autoscaling.to_serve(),
            "ray_actor_options": self.resources.to_serve(),
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "health_check_period_s": self.health_check_period_s,
        }


class ModelDeploymentConfig(_Strict):
    """A chat model served at ``/v1/chat/completions`` under its ``name``."""

    name: Name = Field(description="The model name clients send (``model`` in OpenAI requests).")
    engine: EngineConfig = Field(description="How the model runs (any wbray engine).")
    sampling: SamplingParams = Field(
        SamplingParams(), description="Defaults for sampling fields a request leaves unset."
    )
    batch_wait_timeout_s: float = Field(
        0.01,
        ge=0,
        description="How long the oldest waiting request may wait for others to share its engine batch "
        "(a full batch, or a request that already waited this long for a free engine slot, starts at once).",
    )
    max_batch_size: int | None = Field(
        None,
        ge=1,
        description="Most requests in one engine call; default: the engine's batch_size. For engines that "
        "send each request on its own (openai, serve) 1 keeps one slow request from holding back others.",
    )
    max_concurrent_batches: int | None = Field(
        None,
        ge=1,
        description="Engine calls (batches or streams) one replica runs at once; requests beyond wait in "
        "the replica, first come first served. None: no limit beyond deployment.max_ongoing_requests.",
    )
    deployment: DeploymentSettings = Field(DeploymentSettings(), description="Scaling and resources.")

    def batch_limit(self) -> int:
        """The most requests in one engine call (``max_batch_size``, else the engine's batch size)."""
        if self.max_batch_size is not None:
            return self.max_batch_size
        return int(self.engine.batch_size)

    def identity(self) -> dict[str, Any]:
        """What this deployment serves, as stable data: the engine's identity and default sampling.

        Pipelines identify a served model by this (``GET /v1/models`` ``metadata``, or
        ``ChatServer.identity`` through a handle); it holds nothing volatile (no times, no replica ids).
        """
        return {"engine": self.engine.identity(), "sampling": self.sampling.model_dump(exclude_none=True)}


class CriticConfig(_Strict):
    """The WritingBench critic at ``/v1/score``: renders the judge prompt, asks a served model."""

    name: Name = Field("critic", description="Judge name reported in every score.")
    model: str = Field(description="Name of the served model (in ``models``) that judges.")
    template: Literal["auto", "official", "builtin"] = Field(
        "auto",
        description="'official' requires upstream's judge prompt in data_dir; 'builtin' uses wbray's own "
        "wording; 'auto' takes official when available.",
    )
    data_dir: str | None = Field(
        None,
        description="WritingBench data directory for benchmark-index requests and the official prompt; "
        "'example' for the bundled example; None: free-text queries only (and the builtin prompt).",
    )
    constrained: bool = Field(
        False, description="Constrain decoding to {score: int 1-10, reason: str} (the model must support it)."
    )
    reason_max_chars: int = Field(300, ge=1, description="Longest reason the constrained schema allows.")
    max_reasks: int = Field(2, ge=0, description="Extra judge calls after an unparseable reply.")
    sampling: JudgeSampling = Field(
        PAPER_JUDGE_SAMPLING,
        description="Judge sampling; fields given here override the paper defaults one by one.",
    )
    max_in_flight: int = Field(
        16,
        ge=1,
        description="Judge calls one critic replica keeps in flight; keep it under the judge model's "
        "max_ongoing_requests + max_queued_requests, or a big request's calls get refused as overload.",
    )
    max_items: int = Field(64, ge=1, description="Most items one /v1/score request may hold.")
    max_criteria: int = Field(320, ge=1, description="Most criteria (judge calls) one request may ask for.")
    deployment: DeploymentSettings = Field(
        DeploymentSettings(resources=ReplicaResources(num_cpus=0.1)),
        description="Scaling and resources (the critic only renders prompts and waits on the model).",
    )

    def judge_config(self) -> JudgeConfig:
        """The pipeline's judge settings equivalent to this critic (so scoring logic is shared)."""
        return JudgeConfig(
            name=self.name,
            template=self.template,
            sampling=self.sampling,
            constrained=self.constrained,
            reason_max_chars=self.reason_max_chars,
            max_reasks=self.max_reasks,
        )


class HttpSettings(_Strict):
    """Where and how the HTTP edge listens."""

    host: str = Field("127.0.0.1", description="Bind address of Serve's HTTP proxy (0.0.0.0 for all).")
    port: int = Field(8000, ge=0, le=65535, description="Port of Serve's HTTP proxy.")
    route_prefix: str = Field("/", description="Path prefix of this application.")
    max_body_bytes: int = Field(1_048_576, ge=1, description="Larger request bodies get 413.")
    request_timeout_s: float = Field(
        600.0, gt=0, description="A request still unanswered after this long gets 504."
    )

    @field_validator("route_prefix")
    @classmethod
    def _prefix_ok(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/', e.g. / or /wbray")
        return value


class AuthSettings(_Strict):
    """Bearer-token auth of every route but ``/health``."""

    token_env: str | None = Field(
        None,
        description="Name of the environment variable holding the bearer token (never the token "
        "itself); None turns auth off. The variable must be set where the app is built.",
    )


class ServeAppConfig(_Strict):
    """A served wbray application (the file ``wbray serve`` and ``wbray.serve:build_app`` read)."""

    name: Name = Field("wbray", description="Serve application name.")
    models: list[ModelDeploymentConfig] = Field(description="Chat models, at least one.", min_length=1)
    critic: CriticConfig | None = Field(None, description="The scoring endpoint; None serves no /v1/score.")
    http: HttpSettings = Field(HttpSettings(), description="HTTP edge.")
    auth: AuthSettings = Field(AuthSettings(), description="Authentication.")
    gateway: DeploymentSettings = Field(
        DeploymentSettings(
            resources=ReplicaResources(num_cpus=0.1), max_ongoing_requests=256, max_queued_requests=256
        ),
        description="The HTTP ingress deployment (auth, validation, routing).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ServeAppConfig:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        if self.critic is not None and self.critic.model not in names:
            raise ValueError(
                f"critic.model {self.critic.model!r} is not a served model (models: {', '.join(names)})"
            )
        return self

    def model(self, name: str) -> ModelDeploymentConfig:
        """The model deployment called ``name``."""
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)


def load_serve_config(
    source: str | Path | dict[str, Any], overrides: list[str] | None = None
) -> ServeAppConfig:
    """Load a serve config from a YAML file or an already-parsed mapping, with dotted overrides.

    Args:
        source: A YAML path, or a mapping (e.g. the ``args`` of a Serve config file).
        overrides: ``key.path=value`` strings applied on top.

    Raises:
        ConfigError: Naming the file (or ``<args>``) and the key at fault.
    """
    return load_config(source, overrides, ServeAppConfig)
