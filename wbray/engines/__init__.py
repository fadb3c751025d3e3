"""Model engines: one narrow protocol, backends registered by name, heavy imports deferred.

Importing this package registers the built-in backends (``transformers``, ``openai``, ``vllm``);
their modules import torch, HTTP clients or vLLM only inside the factories and stage builders.
"""

from wbray.engines import _openai, _transformers, _vllm  # noqa: F401  (registration side effect)
from wbray.engines._base import ChatRequest, Completion, Engine
from wbray.engines._registry import (
    Backend,
    StageSpec,
    create_engine,
    describe_engine,
    get_backend,
    register_engine,
)

__all__ = [
    "Backend",
    "ChatRequest",
    "Completion",
    "Engine",
    "StageSpec",
    "create_engine",
    "describe_engine",
    "get_backend",
    "register_engine",
]
