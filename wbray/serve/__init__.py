"""Ray Serve: OpenAI-compatible chat endpoints over wbray engines and the WritingBench critic.

``wbray.serve:build_app`` is the import path for ``serve run`` / ``serve deploy``; configs live in
``configs/serve/``. Importing this package is cheap: Ray Serve is imported only when an
application is built.
"""

from __future__ import annotations

from typing import Any

from wbray.serve._config import ServeAppConfig, load_serve_config

__all__ = ["ServeAppConfig", "build_app", "build_application", "build_llm_app", "load_serve_config"]


def build_app(args: dict[str, Any] | None = None) -> Any:
    """Application builder for ``serve run`` / ``serve deploy``; see :func:`wbray.serve._app.build_app`."""
    from wbray.serve._app import build_app as _build

    return _build(args)


def build_application(config: ServeAppConfig) -> Any:
    """The Serve application a :class:`ServeAppConfig` describes (bind it with ``serve.run``)."""
    from wbray.serve._app import build_application as _build

    return _build(config)


def build_llm_app(config: ServeAppConfig) -> Any:
    """The ``ray.serve.llm`` (vLLM, GPU) application for a config's vllm models."""
    from wbray.serve._gpu import build_llm_app as _build

    return _build(config)
