"""Ray Data stages: thin shims that wire the pure steps to engines, storage and progress.

* :func:`actor_pool_stage` — the default backend stage: an actor pool, one engine per actor
  (loaded once, in ``__init__``), driving the batch task on each batch.
* :func:`store_generations` — writes each finished batch of answers as a Parquet part before its
  answers fan out into scoring rows (a verdict never exists for an answer that was not stored).
* :class:`PartWriter` + :func:`store_scores` — verdicts are buffered into parts of ``part_rows``
  rows, or written once the oldest buffered verdict is ``part_age_s`` old: one part per model and
  flush instead of one per judged batch. A crash loses at most that many verdicts (recomputed by
  the re-run). Scores leave the stage as counts only: the driver never receives their text.
* :class:`CacheLookup` — fills verdicts from the judge cache before the judge pool.
* :class:`Explode` — turns an answer into its scoring rows; :class:`KeepStored` picks the stored
  answers the plan asked for out of the parts it names.
* :class:`ProgressActor` — counts rows, failures, tokens, engine loads and busy time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
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
from wbray.steps.scoring import cache_key, judge_messages
from wbray.storage import (
    PartBuffer,
    RunLayout,
    StorageOptions,
    read_cache,
    write_cache,
    write_generations,
    write_scores,
)

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class ProgressActor:
    """Counts rows, failures and tokens per (stage, model), and work per engine pool."""

    def __init__(self) -> None:
        self.stages: dict[tuple[str, str], dict[str, float]] = {}
        self.pools: dict[str, dict[str, Any]] = {}

    def add(
        self,
        stage: str,
        model: str,
        rows: int,
        failed: int,
        prompt: int,
        completion: int,
        hits: int = 0,
        misses: int = 0,
    ) -> None:
        c = self._stage(stage, model)
        c["rows"] += rows
        c["failed"] += failed
        c["prompt_tokens"] += prompt
        c["completion_tokens"] += completion
        c["cache_hits"] += hits
        c["cache_misses"] += misses

    def parts(self, stage: str, model: str, parts: int) -> None:
        self._stage(stage, model)["parts"] += parts

    def _stage(self, stage: str, model: str) -> dict[str, float]:
        keys = ("rows", "failed", "prompt_tokens", "completion_tokens", "cache_hits", "cache_misses", "parts")
        return self.stages.setdefault((stage, model), dict.fromkeys(keys, 0))

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
            sum(1 for r in mine if r.get("cache") == "hit"),
            sum(1 for r in mine if r.get("cache") == "miss"),
        )


def store_generations(batch: pd.DataFrame, layout: RunLayout, progress: Any) -> pd.DataFrame:
    """Write a batch of finished generations (one part per model) and pass the rows on."""
    rows = records(batch)
    for model in sorted({r["model"] for r in rows}):
        write_generations(layout, model, [r for r in rows if r["model"] == model])
        if progress is not None:
            progress.parts.remote("generate", str(model), 1)
    _report(progress, "generate", rows)
    return batch


@ray.remote(num_cpus=0)
class PartWriter:
    """Buffers a run's verdicts (:class:`PartBuffer`) and writes them as one part per model per
    flush; also adds new verdicts to the judge cache.

    Runs next to the driver (a buffer on a node that dies would be lost with it) and dies with the
    run: what it holds when the driver crashes — at most ``part_rows`` verdicts or ``part_age_s``
    seconds of judging — is recomputed by the re-run.
    """

    def __init__(
        self,
        layout: RunLayout,
        judge: str,
        part_rows: int,
        part_age_s: float,
        cache: tuple[str, str] | None = None,
        progress: Any = None,
    ) -> None:
        self.layout, self.judge, self.cache, self.progress = layout, judge, cache, progress
        self.buffer = PartBuffer(self._write, part_rows, part_age_s)
        self.parts = self.cache_parts = self.rows = 0
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.stop = threading.Event()
        threading.Thread(target=self._tick, daemon=True).start()

    def _tick(self) -> None:
        while not self.stop.wait(min(1.0, self.buffer.part_age_s / 4)):
            with self.lock:
                if self.buffer.due():
                    try:
                        self.buffer.flush()
                    except BaseException as exc:  # raised to the next caller, never lost
                        self.error = exc

    def add(self, rows: list[dict[str, Any]]) -> None:
        with self.lock:
            self._raise()
            self.buffer.add(rows)

    def flush(self) -> dict[str, int]:
        """Write whatever is buffered; the counts of parts and rows written so far."""
        with self.lock:
            self._raise()
            self.buffer.flush()
            return {"parts": self.parts, "cache_parts": self.cache_parts, "rows": self.rows}

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _write(self, rows: list[dict[str, Any]]) -> None:
        for model in sorted({str(r["model"]) for r in rows}):
            mine = [r for r in rows if str(r["model"]) == model]
            write_scores(self.layout, self.judge, model, mine)
            self.parts += 1
            if self.progress is not None:
                self.progress.parts.remote("score", model, 1)
        self.rows += len(rows)
        if self.cache is not None:
            new = [r for r in rows if r.get("cache") == "miss"]
            if write_cache(self.cache[0], self.cache[1], new, self.layout.storage):
                self.cache_parts += 1


def store_scores(batch: pd.DataFrame, writer: Any, progress: Any) -> pd.DataFrame:
    """Hand a batch of verdicts to the run's :class:`PartWriter`; only counts leave the stage."""
    rows = records(batch)
    ray.get(writer.add.remote(rows))  # waits: the writer's pace is the stream's back-pressure
    counts = []
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        counts.append({"model": model, "rows": len(mine), "failed": sum(r["status"] != "ok" for r in mine)})
    _report(progress, "score", rows)
    return pd.DataFrame(counts, columns=["model", "rows", "failed"])


class CacheLookup:
    """Fills each scoring row's verdict from the judge cache when the same call was answered before
    (``cache: hit``), and marks the rest ``miss`` with their key, to be cached once judged.

    The cache of the judge identity is loaded once per actor, inside the cluster.
    """

    def __init__(
        self,
        template: JudgeTemplate,
        identity: Mapping[str, Any],
        judge_hash: str,
        prefix: str,
        storage: StorageOptions,
        refresh: bool,
    ) -> None:
        self.template, self.identity = template, identity
        self.cached: dict[str, dict[str, Any]] = {}
        if not refresh:
            table = read_cache(prefix, judge_hash, storage)
            if table is not None:
                self.cached = {str(r["row_id"]): r for r in table.to_pylist()}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = []
        for row in records(batch):
            if row["gen_status"] != "ok" or row["response"] is None:
                out.append({**row, "cache_key": None, "cache": None})  # nothing to ask: not a lookup
                continue
            key = cache_key(self.identity, judge_messages(row, self.template), int(row["repeat"]))
            hit = self.cached.get(key)
            if hit is None:
                out.append({**row, "cache_key": key, "cache": "miss"})
                continue
            # This run spent no judge tokens on it: token counts stay 0.
            verdict = {k: hit[k] for k in ("score", "reason", "raw", "status", "error", "attempts")}
            out.append(
                {
                    **row,
                    **verdict,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "latency_s": 0.0,
                    "cache_key": key,
                    "cache": "hit",
                }
            )
        return pd.DataFrame(out)


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
