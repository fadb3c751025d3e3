"""wbray: WritingBench as a distributed evaluation cluster on Ray.

The public API is :func:`evaluate` and :func:`score` (``wbray.api``); both apply every setting of
the config themselves, so a Ray job calling them behaves like the ``wbray`` command::

    import wbray
    summary = wbray.evaluate("configs/quickstart.yaml", out="s3://evals/runs/r1")

The core (data, prompts, judge-reply parsing, aggregation) is plain Python with no Ray import;
Ray lives only in ``wbray.pipelines``, ``wbray.serve``, the CLI and ``jobs/``. ``import wbray``
stays light: the API loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

if TYPE_CHECKING:
    from wbray.api import EvalSummary, evaluate, score


def __getattr__(name: str) -> Any:
    if name in ("evaluate", "score", "EvalSummary"):
        from wbray import api

        return getattr(api, name)
    raise AttributeError(f"module 'wbray' has no attribute {name!r}")


__all__ = ["EvalSummary", "__version__", "evaluate", "score"]
