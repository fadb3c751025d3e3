"""The contract between a pipeline stage and the work it does: a batch task.

A task turns rows into chat requests, folds the completions back into the rows, and may ask again
for some rows (a judge reply that did not parse) up to ``max_passes`` times. Every backend drives
the same task: an actor pool calls :func:`run_task` on each batch with its own engine; a processor
backend (vLLM through ``ray.data.llm``) runs one processor pass per round and calls
:meth:`BatchTask.absorb` on each row. So the pass logic is written once and every backend honours
the same bounded re-asks.

Row state between passes lives in the rows themselves (columns), so it can cross process
boundaries between passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from wbray.config import SamplingParams
from wbray.engines import ChatRequest, Completion, Engine


class BatchTask(Protocol):
    """Work a stage does on a batch of rows (see the module docstring)."""

    #: "generate" or "score": the stage kind, for progress and manifests.
    kind: str
    #: The sampling every request of this task uses.
    sampling: SamplingParams
    #: Engine rounds per batch at most (1 = no re-asks).
    max_passes: int

    def prepare(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Check the input contract and add the state columns (idempotent)."""
        ...

    def requests(self, rows: Sequence[dict[str, Any]]) -> list[ChatRequest | None]:
        """One request per row still needing an engine call, None for rows that are settled."""
        ...

    def absorb(
        self, rows: Sequence[dict[str, Any]], completions: Mapping[int, Completion]
    ) -> list[dict[str, Any]]:
        """Fold completions (keyed by row position) into the rows."""
        ...

    def finish(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Settle rows still waiting after the last pass and give the rows to store."""
        ...


async def run_task(engine: Engine, task: BatchTask, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drive ``task`` over one batch with ``engine``: at most ``task.max_passes`` engine calls."""
    state = task.prepare(rows)
    for _ in range(task.max_passes):
        wanted = task.requests(state)
        todo = [i for i, request in enumerate(wanted) if request is not None]
        if not todo:
            break
        sent = [wanted[i] for i in todo]
        completions = await engine.generate([r for r in sent if r is not None], task.sampling)
        state = task.absorb(state, dict(zip(todo, completions, strict=True)))
    return task.finish(state)
