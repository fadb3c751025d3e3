"""Ray Data stages: thin shims that wire the pure steps to engines, storage and progress.

* :func:`actor_pool_stage` — the default backend stage: an actor pool, one engine per actor
  (loaded once, in ``__init__``), driving the batch task on each batch.
* :func:`store_generations` / :func:`store_scores` — write each finished batch as a Parquet part
  (so finished work survives a crash) and report progress. Scores leave the stage as counts only:
  the driver never receives answer or verdict text.
* :class:`Explode` — turns an answer into its scoring rows; :class:`KeepStored` picks the stored
  answers the plan asked for out of the parts it names.
* :class:`ProgressActor` — counts rows, failures, tokens, engine loads and busy time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import pandas as pd
import ray
from ray.data import ActorPoolStrategy

from wbray.engines import StageSpec, create_engine
from wbray.prompts import JudgeTemplate
from wbray.records import Query
from wbray.steps import run_task, scoring_rows
from wbray.steps._common import require_columns
from wbray.storage import RunLayout, write_generations, write_scores

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class ProgressActor:
    """Counts rows, failures and tokens per (stage, model), and work per engine pool."""

    def __init__(self) -> None:
        self.stages: dict[tuple[str, str], dict[str, float]] = {}
        self.pools: dict[str, dict[str, Any]] = {}

    def add(self, stage: str, model: str, rows: int, failed: int, prompt: int, completion: int) -> None:
        c = self.stages.setdefault(
            (stage, model), {"rows": 0, "failed": 0, "prompt_tokens": 0, "completion_tokens": 0}
        )
        c["rows"] += rows
        c["failed"] += failed
        c["prompt_tokens"] += prompt
        c["completion_tokens"] += completion

    def _pool(self, pool: str) -> dict[str, Any]:
        return self.pools.setdefault(
            pool,
            {
                "loads": 0,
                "load_s": 0.0,
                "busy_s": 0.0,
                "batches": 0,
                "rows": 0,
                "actors": set(),
                "first": None,
                "last": None,
            },
        )

    def load(self, pool: str, actor: str, seconds: float) -> None:
        p = self._pool(pool)
        p["loads"] += 1
        p["load_s"] += seconds
        p["actors"].add(actor)

    def busy(self, pool: str, actor: str, start: float, end: float, rows: int) -> None:
        p = self._pool(pool)
        p["busy_s"] += end - start
        p["batches"] += 1
        p["rows"] += rows
        p["actors"].add(actor)
        p["first"] = start if p["first"] is None else min(p["first"], start)
        p["last"] = end if p["last"] is None else max(p["last"], end)

    def snapshot(self) -> dict[str, Any]:
        totals: dict[str, dict[str, float]] = defaultdict(lambda: {"rows": 0, "failed": 0, "tokens": 0})
        for (stage, _), c in self.stages.items():
            t = totals[stage]
            t["rows"] += c["rows"]
            t["failed"] += c["failed"]
            t["tokens"] += c["completion_tokens"]
        pools = {
            name: {
                **{k: v for k, v in p.items() if k not in ("actors", "first", "last")},
                "actors": len(p["actors"]),
                "wall_s": (p["last"] - p["first"]) if p["first"] is not None else 0.0,
            }
            for name, p in self.pools.items()
        }
        return {
            **dict(totals),
            "stages": {f"{s}:{m}": dict(c) for (s, m), c in self.stages.items()},
            "pools": pools,
        }


def _actor_id() -> str:
    with contextlib.suppress(Exception):
        return str(ray.get_runtime_context().get_actor_id())
    return "driver"


def records(batch: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as plain dicts with None (not NaN) for missing values."""
    return [{k: (None if _missing(v) else v) for k, v in row.items()} for row in batch.to_dict("records")]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


class EngineStage:
    """The default backend stage's actor: one engine, loaded once, driving the task per batch."""

    def __init__(self, spec: StageSpec) -> None:
        self.spec = spec
        self.actor = _actor_id()
        started = time.time()
        self.engine = create_engine(spec.engine)
        if spec.progress is not None:
            spec.progress.load.remote(spec.pool, self.actor, time.time() - started)
        # One loop per actor: engines keep async clients (HTTP sessions) bound to it.
        self.loop = asyncio.new_event_loop()

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        started = time.time()
        rows = self.loop.run_until_complete(run_task(self.engine, self.spec.task, records(batch)))
        if self.spec.progress is not None:
            self.spec.progress.busy.remote(self.spec.pool, self.actor, started, time.time(), len(rows))
        return pd.DataFrame(rows)

    def __del__(self) -> None:  # pragma: no cover - best effort at actor exit
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(self.engine.close())


def actor_pool_stage(ds: Any, spec: StageSpec) -> Any:
    """Run ``spec.task`` over ``ds`` in an actor pool of ``spec.resources`` (the default stage)."""
    res = spec.resources
    return ds.map_batches(
        EngineStage,
        fn_constructor_kwargs={"spec": spec},
        compute=ActorPoolStrategy(
            min_size=res.actors, max_size=max(res.max_actors or res.actors, res.actors)
        ),
        num_cpus=res.num_cpus,
        num_gpus=res.num_gpus or None,
        resources=dict(res.resources) or None,
        batch_size=res.batch_size or spec.engine.batch_size,
        batch_format="pandas",
    )


def _report(progress: Any, stage: str, rows: list[dict[str, Any]]) -> None:
    if progress is None:
        return
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_model[str(r["model"])].append(r)
    for model, mine in by_model.items():
        progress.add.remote(
            stage,
            model,
            len(mine),
            sum(1 for r in mine if r.get("status") != "ok"),
            int(sum(r.get("prompt_tokens") or 0 for r in mine)),
            int(sum(r.get("completion_tokens") or 0 for r in mine)),
        )


def store_generations(batch: pd.DataFrame, layout: RunLayout, progress: Any) -> pd.DataFrame:
    """Write a batch of finished generations (one part per model) and pass the rows on."""
    rows = records(batch)
    for model in sorted({r["model"] for r in rows}):
        write_generations(layout, model, [r for r in rows if r["model"] == model])
    _report(progress, "generate", rows)
    return batch


def store_scores(batch: pd.DataFrame, layout: RunLayout, judge: str, progress: Any) -> pd.DataFrame:
    """Write a batch of verdicts (one part per model); only counts leave the stage."""
    rows = records(batch)
    counts = []
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        write_scores(layout, judge, model, mine)
        counts.append({"model": model, "rows": len(mine), "failed": sum(r["status"] != "ok" for r in mine)})
    _report(progress, "score", rows)
    return pd.DataFrame(counts, columns=["model", "rows", "failed"])


#: Columns of a stored answer that scoring needs (read inside the cluster, never by the driver).
STORED_ANSWER_COLUMNS = ["row_id", "model", "index", "sample", "data_version", "response", "status", "error"]


class KeepStored:
    """Keep the stored answers the plan named: row ``row_id`` from part ``path`` only (a row
    re-written into two parts after a crash is scored once)."""

    def __init__(self, wanted: Mapping[str, tuple[str, ...]]) -> None:
        self.wanted = {(path, rid) for path, ids in wanted.items() for rid in ids}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        keep = [(p, r) in self.wanted for p, r in zip(batch["path"], batch["row_id"], strict=True)]
        return batch[keep].drop(columns=["path"])


class Explode:
    """Turns each answer into its scoring rows (only ``keep`` ids when given)."""

    def __init__(
        self,
        queries: Mapping[int, Query],
        judge: Any,
        template: JudgeTemplate,
        served: Mapping[str, Any] | None,
        keep: frozenset[str] | None = None,
    ) -> None:
        self.queries = queries
        self.judge = judge
        self.template = template
        self.served = served
        self.keep = keep

    def __call__(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        gen = {k: (None if _missing(v) else v) for k, v in row.items()}
        require_columns([gen], ("row_id", "model", "index", "status"), "explode")
        rows = scoring_rows(gen, self.queries[int(str(gen["index"]))], self.judge, self.template, self.served)
        return rows if self.keep is None else [r for r in rows if r["row_id"] in self.keep]
