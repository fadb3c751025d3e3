"""Backends register here by name; nothing else dispatches on the backend.

A backend module registers a factory with :func:`register_engine`; the factory does the heavy
imports (torch, vllm) so that importing ``wbray.engines`` stays cheap and a missing extra fails
only when that backend is used, with an error naming the extra.

A backend may also register:

* ``build_stage`` — how it turns a Ray Dataset of task rows into a Dataset of finished rows. The
  default (None) is wbray's actor pool: one engine per actor, the task driven per batch. vLLM
  registers a ``ray.data.llm`` processor instead. The pipeline calls whichever is registered, so it
  has no backend branches and a new backend is one file.
* ``describe`` — what the endpoint says it serves (``/v1/models``, a deployment's identity). Its
  answer joins the row ids, so a model swapped behind the same name recomputes.
* ``demand`` — the cluster resources its stage reserves (checked before any work starts).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from wbray.engines._base import Engine
from wbray.errors import ConfigError, WbrayError

EngineFactory = Callable[[Any], Engine]
F = TypeVar("F", bound=EngineFactory)


@dataclass(frozen=True)
class StageSpec:
    """What a pipeline stage is asked to do (everything is picklable: it travels to workers).

    Attributes:
        engine: The engine config (``backend`` names the backend).
        resources: The stage's actor pool settings (``wbray.config.StageResources``).
        task: The batch task to drive (``wbray.steps.BatchTask``).
        pool: The pool's name in progress reports and manifests, e.g. ``score:critic``.
        progress: A progress sink (a Ray actor handle) or None.
    """

    engine: Any
    resources: Any
    task: Any
    pool: str
    progress: Any = None


#: ``(dataset, spec) -> dataset``: turn task rows into finished rows (see the module docstring).
StageBuilder = Callable[[Any, StageSpec], Any]
#: ``engine config -> identity dict or None``; raises ConfigError when the endpoint cannot say.
Describer = Callable[[Any], Mapping[str, Any] | None]
#: ``(engine config, resources) -> {"CPU": n, "GPU": m}`` reserved while the stage runs.
Demand = Callable[[Any, Any], Mapping[str, float]]


def pool_demand(engine: Any, resources: Any) -> dict[str, float]:
    """What an actor pool reserves: its minimum actors times their CPUs, GPUs and custom resources."""
    custom = getattr(resources, "resources", None) or {}
    return {
        "CPU": resources.num_cpus * resources.actors,
        "GPU": resources.num_gpus * resources.actors,
        **{kind: amount * resources.actors for kind, amount in custom.items()},
    }


@dataclass(frozen=True)
class Backend:
    """A registered backend.

    Attributes:
        name: The ``backend:`` value in configs.
        factory: Builds an :class:`Engine` from its config (inside a Ray actor or a plain process).
        build_stage: Builds the backend's own pipeline stage; None = wbray's actor pool.
        describe: Asks the endpoint what it serves; None = the config says everything.
        demand: Resources the stage reserves; default: the actor pool's.
        in_process: Whether :attr:`factory` builds an engine in this process (a Serve replica can
            host it); False for backends that only run as their own stage.
    """

    name: str
    factory: EngineFactory
    build_stage: StageBuilder | None = None
    describe: Describer | None = None
    demand: Demand = pool_demand
    in_process: bool = True


_BACKENDS: dict[str, Backend] = {}
#: Backends whose module needs a layer above engines (Ray Serve): imported on first use only, so
#: ``wbray.engines`` never imports Ray.
_LAZY_MODULES = {"serve": "wbray.serve._engine"}


def register_engine(
    name: str,
    *,
    build_stage: StageBuilder | None = None,
    describe: Describer | None = None,
    demand: Demand | None = None,
    in_process: bool = True,
) -> Callable[[F], F]:
    """Decorator registering an engine factory (and optionally its stage, probe and demand)."""

    def deco(factory: F) -> F:
        if name in _BACKENDS:
            raise WbrayError(f"engine backend {name!r} registered twice")
        _BACKENDS[name] = Backend(
            name=name,
            factory=factory,
            build_stage=build_stage,
            describe=describe,
            demand=demand or pool_demand,
            in_process=in_process,
        )
        return factory

    return deco


def get_backend(name: str) -> Backend:
    """The backend registered as ``name`` (ConfigError listing the known ones otherwise)."""
    if name not in _BACKENDS and name in _LAZY_MODULES:
        importlib.import_module(_LAZY_MODULES[name])
    try:
        return _BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted({*_BACKENDS, *_LAZY_MODULES}))
        raise ConfigError(f"unknown engine backend {name!r} (known: {known})") from None


def create_engine(config: Any) -> Engine:
    """Build the engine a config describes (``config.backend`` names the backend)."""
    return get_backend(str(config.backend)).factory(config)


def describe_engine(config: Any) -> dict[str, Any] | None:
    """What a served engine's endpoint says it serves (None for engines the config fully names)."""
    describe = get_backend(str(config.backend)).describe
    if describe is None:
        return None
    found = describe(config)
    return None if found is None else dict(found)


def missing_extra(package: str, extra: str) -> WbrayError:
    """The error raised when a backend's optional dependency is absent."""
    return WbrayError(
        f"this engine needs the '{package}' package: install wbray's '{extra}' extra "
        f'(pip install "wbray[{extra}]")'
    )
