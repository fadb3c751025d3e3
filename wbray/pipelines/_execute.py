"""The executor: one Ray Data dataset per run, built from a :class:`~wbray.pipelines.RunPlan`.

Every candidate's pending generations flow through that candidate's engine pool; each finished
batch is stored and its answers fan out into scoring rows. Stored answers that still lack verdicts
are read inside the cluster (``read_parquet`` of the parts the plan names, filtered by row id).
The streams are unioned and one judge pool — the judge model loaded once per actor — scores every
candidate while generation is still running. The driver receives counts only, never answer or
verdict text.

Which stage a backend runs (wbray's actor pool, a ``ray.data.llm`` processor, ...) is the
backend's business (``Backend.build_stage``): there is no backend branch here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.data import ActorPoolStrategy

from wbray.config import content_hash
from wbray.engines import StageSpec, get_backend
from wbray.errors import ConfigError
from wbray.pipelines._plan import RunPlan
from wbray.pipelines._stages import (
    STORED_ANSWER_COLUMNS,
    CacheLookup,
    Explode,
    KeepStored,
    PartWriter,
    ProgressActor,
    actor_pool_stage,
    store_generations,
    store_scores,
)
from wbray.records import Query
from wbray.steps import GenerationTask, ScoringTask, judge_identity
from wbray.steps.scoring import cache_identity
from wbray.storage import RunLayout, locate

log = logging.getLogger(__name__)

#: ``(progress snapshot, totals)``, called about twice a second while a run executes.
ProgressCallback = Callable[[Mapping[str, Any], Mapping[str, int]], None]


@dataclass
class Execution:
    """What an execution did, as counted by its stages.

    Attributes:
        scored: Per model, verdicts written and of those failed (counted from the stream).
        written: The part writer's totals: verdict parts, cache parts and rows written.
        stages: ``"<stage>:<model>"`` -> rows, failed, prompt_tokens, completion_tokens.
        pools: Pool name -> loads, load_s, busy_s, batches, rows, actors, wall_s.
        wall_s: Wall time of the execution.
    """

    scored: dict[str, dict[str, int]] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall_s: float = 0.0


def check_resources(plan: RunPlan, available: Mapping[str, float]) -> None:
    """Fail before any work when the plan's pools cannot all run at once (Ray Data would wait).

    Every pool of a run runs concurrently (that is what lets one judge score all candidates while
    they generate), so their demands add up. Only meaningful where the cluster cannot grow: an
    autoscaling cluster may start with no GPU node at all (see :func:`execute`).
    """
    need: dict[str, float] = defaultdict(float)
    detail: dict[str, list[str]] = defaultdict(list)
    for pool, engine, resources in plan.pools():
        for kind, amount in get_backend(engine.backend).demand(engine, resources).items():
            if amount:
                need[kind] += amount
                detail[kind].append(f"{pool}: {amount:g}")
    for kind, amount in need.items():
        have = float(available.get(kind, 0.0))
        if amount > have + 1e-9:
            raise ConfigError(
                f"the run's pools need {amount:g} {kind}s at once ({', '.join(detail[kind])}) but the "
                f"cluster has {have:g}; lower the candidates' or the judge's resources (num_cpus, "
                "num_gpus, actors), evaluate fewer candidates per run (a sweep runs them as separate "
                "jobs), or use a bigger cluster"
            )


class _Poller:
    """Calls the progress callback from a thread while the driver consumes the pipeline output."""

    def __init__(self, actor: Any, totals: Mapping[str, int], callback: ProgressCallback | None) -> None:
        self.actor, self.totals, self.callback = actor, totals, callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self.push()

    def push(self) -> None:
        if self.callback is not None:
            try:
                self.callback(ray.get(self.actor.snapshot.remote(), timeout=5), self.totals)
            except Exception as exc:  # a display hiccup must never stop the run
                log.debug("progress poll failed: %s", exc)

    def __enter__(self) -> _Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.push()


def _stage(engine: Any, spec: StageSpec, ds: Any) -> Any:
    build = get_backend(engine.backend).build_stage or actor_pool_stage
    return build(ds, spec)


def judge_cache(plan: RunPlan) -> tuple[dict[str, Any], str] | None:
    """The judge's cache identity and its hash (its directory under the cache prefix), if cached."""
    if plan.judge.cache is None:
        return None
    identity = cache_identity(judge_identity(plan.judge, plan.template, plan.judge_served))
    return identity, content_hash(identity)


def build_dataset(
    plan: RunPlan, layout: RunLayout, queries: Mapping[int, Query], progress: Any, writer: Any
) -> Any:
    """The run's one dataset (lazy): generation pools -> union -> [cache] -> judge pool -> writer."""
    judge = plan.judge
    streams: list[Any] = []
    for work in plan.work:
        spec = StageSpec(work.engine, work.resources, GenerationTask(work.sampling), work.pool, progress)
        ds = _stage(work.engine, spec, ray.data.from_items(list(work.rows)))
        # The light stages reserve no CPU: the engine pools may hold every core, and a store or
        # fan-out task that cannot be scheduled would stall the whole stream.
        ds = ds.map_batches(
            store_generations,
            fn_kwargs={"layout": layout, "progress": progress},
            batch_format="pandas",
            num_cpus=0,
        )
        mine = {r["index"] for r in work.rows}
        explode = Explode({i: queries[i] for i in mine}, judge, plan.template, plan.judge_served)
        streams.append(ds.flat_map(explode, num_cpus=0))
    parts = plan.stored_parts
    if parts:
        located = {uri: locate(uri, layout.storage) for uri in parts}
        fs = next(iter(located.values())).fs
        # Projection is pushed into the Parquet read: only the columns scoring needs.
        ds = ray.data.read_parquet(
            [loc.path for loc in located.values()],
            filesystem=fs,
            include_paths=True,
            partitioning=None,
            num_cpus=0,
        ).select_columns([*STORED_ANSWER_COLUMNS, "path"])
        ds = ds.map_batches(
            KeepStored({located[uri].path: ids for uri, ids in parts.items()}),
            batch_format="pandas",
            num_cpus=0,
        )
        explode = Explode(queries, judge, plan.template, plan.judge_served, keep=plan.score_ids)
        streams.append(ds.flat_map(explode, num_cpus=0))
    ds = streams[0] if len(streams) == 1 else streams[0].union(*streams[1:])
    cached = judge_cache(plan)
    if cached is not None and judge.cache is not None:
        identity, judge_hash = cached
        ds = ds.map_batches(
            CacheLookup,
            fn_constructor_kwargs={
                "template": plan.template,
                "identity": identity,
                "judge_hash": judge_hash,
                "prefix": judge.cache,
                "storage": layout.storage,
                "refresh": judge.cache_refresh,
            },
            compute=ActorPoolStrategy(size=1),
            batch_format="pandas",
            num_cpus=0,
        )
    spec = StageSpec(
        judge.engine, judge.resources, ScoringTask(judge, plan.template), plan.judge_pool, progress
    )
    ds = _stage(judge.engine, spec, ds)
    return ds.map_batches(
        store_scores, fn_kwargs={"writer": writer, "progress": progress}, batch_format="pandas", num_cpus=0
    )


def _here() -> dict[str, Any]:
    # The run's bookkeeping actors live on the driver's node: they die with the run, not with a
    # worker. Hard affinity: a soft one was seen placing the progress counter on a node that then
    # died, failing a run whose every row had been stored.
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}


def execute(
    plan: RunPlan,
    layout: RunLayout,
    queries: Sequence[Query],
    on_progress: ProgressCallback | None = None,
    *,
    part_rows: int = 1000,
    part_age_s: float = 60.0,
    fixed_cluster: bool = True,
    say: Callable[[str], None] | None = None,
) -> Execution:
    """Run a plan on the connected Ray cluster and count what it did.

    ``fixed_cluster`` (an embedded cluster) makes a resource shortfall an error before any work;
    on a joined cluster the autoscaler may still add the nodes, so it is only said (``say``) and
    Ray Data's no-progress timeout bounds the wait.
    """
    result = Execution()
    if plan.is_empty:
        return result
    try:
        check_resources(plan, ray.cluster_resources())  # type: ignore[no-untyped-call]
    except ConfigError as exc:
        if fixed_cluster:
            raise
        if say is not None:
            say(f"note: {exc} — waiting for the autoscaler")
    started = time.time()
    progress = ProgressActor.options(**_here()).remote()  # type: ignore[attr-defined]
    cached = judge_cache(plan)
    cache = (plan.judge.cache, cached[1]) if cached is not None and plan.judge.cache else None
    writer = PartWriter.options(**_here()).remote(  # type: ignore[attr-defined]
        layout, plan.judge.name, part_rows, part_age_s, cache, progress
    )
    ds = build_dataset(plan, layout, {q.index: q for q in queries}, progress, writer)
    scored: dict[str, dict[str, int]] = defaultdict(lambda: {"rows": 0, "failed": 0})
    try:
        with _Poller(progress, plan.totals, on_progress):
            for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
                for model, rows, failed in zip(batch["model"], batch["rows"], batch["failed"], strict=True):
                    scored[str(model)]["rows"] += int(rows)
                    scored[str(model)]["failed"] += int(failed)
        result.written = ray.get(writer.flush.remote())
    finally:
        # Even a failed run keeps what the writer holds: every buffered verdict is complete.
        with contextlib.suppress(Exception):
            ray.get(writer.flush.remote(), timeout=120)
        ray.kill(writer)
    snapshot = ray.get(progress.snapshot.remote())
    ray.kill(progress)
    result.scored = dict(scored)
    result.stages = dict(snapshot.get("stages", {}))
    result.pools = dict(snapshot.get("pools", {}))
    result.wall_s = time.time() - started
    return result
