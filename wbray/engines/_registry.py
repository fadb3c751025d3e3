"""Backends register here by name; nothing else dispatches on the backend.

A backend module registers a factory with :func:`register_engine`; the factory does the heavy
imports (torch, vllm) so that importing ``wbray.engines`` stays cheap and a missing extra fails
only when that backend is used, with an error naming the extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from wbray.engines._base import Engine
from wbray.errors import ConfigError, WbrayError

EngineFactory = Callable[[Any], Engine]
F = TypeVar("F", bound=EngineFactory)


@dataclass(frozen=True)
class Backend:
    """A registered backend.

    Attributes:
        name: The ``backend:`` value in configs.
        factory: Builds an :class:`Engine` from its config (inside a Ray actor or a plain process).
        runs_as_processor: True for backends that run as their own Ray Data processor (vLLM via
            ``ray.data.llm``) instead of an engine inside wbray's actor pool.
    """

    name: str
    factory: EngineFactory
    runs_as_processor: bool = False


_BACKENDS: dict[str, Backend] = {}
#: Backends whose module needs a layer above engines (Ray Serve): imported on first use only, so
#: ``wbray.engines`` never imports Ray.
_LAZY_MODULES = {"serve": "wbray.serve._engine"}


def register_engine(name: str, *, runs_as_processor: bool = False) -> Callable[[F], F]:
    """Class/function decorator registering an engine factory under ``name``."""

    def deco(factory: F) -> F:
        if name in _BACKENDS:
            raise WbrayError(f"engine backend {name!r} registered twice")
        _BACKENDS[name] = Backend(name=name, factory=factory, runs_as_processor=runs_as_processor)
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


def missing_extra(package: str, extra: str) -> WbrayError:
    """The error raised when a backend's optional dependency is absent."""
    return WbrayError(
        f"this engine needs the '{package}' package: install wbray's '{extra}' extra "
        f'(pip install "wbray[{extra}]")'
    )
