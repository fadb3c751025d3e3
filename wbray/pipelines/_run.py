"""The end-to-end evaluation on Ray Data: generate -> score -> store, streaming and resumable.

One Ray Data pipeline per candidate: generation rows flow through the candidate's engine pool,
each answer fans out into its scoring rows, and the judge pool scores them while generation is
still running. Every finished batch is written as a Parquet part whose rows carry content-derived
ids, so running the same command again skips finished rows and a crash loses at most the batches
in flight. Generations already stored are scored without regenerating (generate once, score many).

The caller (CLI or job) starts Ray; nothing here calls ``ray.init``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import ray
from ray.data import ActorPoolStrategy

from wbray import __version__, env
from wbray.config import (
    CandidateConfig,
    EngineConfig,
    JudgeConfig,
    SamplingParams,
    StageResources,
    WbrayConfig,
    content_hash,
    dump_config,
)
from wbray.dataset import Benchmark
from wbray.engines import get_backend
from wbray.engines._vllm import processor_config_kwargs, sampling_params
from wbray.errors import ConfigError, WbrayError
from wbray.pipelines._stages import (
    Explode,
    FinishProcessorGenerations,
    FinishProcessorScores,
    GenerateStage,
    ProgressActor,
    ScoreStage,
)
from wbray.prompts import JudgeTemplate, load_judge_template
from wbray.steps import candidate_sampling, generation_rows, scoring_rows
from wbray.steps.scoring import judge_messages
from wbray.storage import (
    RunLayout,
    check_destination,
    commit_stage,
    read_generations,
    read_manifest,
    read_scores,
    write_manifest,
)

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Mapping[str, Mapping[str, float]], Mapping[str, int]], None]


@dataclass
class RunSummary:
    """What a call of :func:`run_evaluation` did."""

    root: str
    judge: str
    models: list[str]
    computed: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    manifest: dict[str, Any] = field(default_factory=dict)


def _packages() -> dict[str, str]:
    out = {"python": platform.python_version(), "wbray": __version__}
    for name in ("ray", "pyarrow", "pandas", "torch", "transformers", "xgrammar", "vllm", "openai"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def judge_template_for(config: WbrayConfig, bench: Benchmark) -> JudgeTemplate:
    return load_judge_template(None if bench.is_example else bench.root, config.judge.template)


def _pool_kwargs(resources: StageResources, default_batch: int) -> dict[str, Any]:
    max_size = max(resources.max_actors or resources.actors, resources.actors)
    return {
        "compute": ActorPoolStrategy(min_size=resources.actors, max_size=max_size),
        "runtime_env": _storage_runtime_env(),
        "num_cpus": resources.num_cpus,
        "num_gpus": resources.num_gpus or None,
        "batch_size": resources.batch_size or default_batch,
        "batch_format": "pandas",
    }


def _storage_runtime_env() -> dict[str, Any] | None:
    """Storage settings the stage workers need (endpoint, region, addressing style).

    Credentials are deliberately not copied: workers get them from the standard AWS chain of
    their own environment (inherited locally; instance roles or secrets on a real cluster).
    """
    names = (*env.AWS_SETTINGS, env.WBRAY_S3_ADDRESSING_STYLE)
    found = {k: v for k in names if (v := os.environ.get(k))}
    return {"env_vars": found} if found else None


def _check_resources(stages: Sequence[tuple[str, StageResources]]) -> None:
    """Fail before any work when the actor pools cannot all start (Ray Data would wait forever)."""
    total = ray.cluster_resources()  # type: ignore[no-untyped-call]
    for kind, key in (("CPU", "num_cpus"), ("GPU", "num_gpus")):
        need = sum(getattr(r, key) * r.actors for _, r in stages)
        have = float(total.get(kind, 0.0))
        if need > have + 1e-9:
            detail = ", ".join(f"{name}: {getattr(r, key) * r.actors:g}" for name, r in stages)
            raise ConfigError(
                f"the actor pools need {need:g} {kind}s ({detail}) but the cluster has {have:g}; lower "
                f"generation.resources / judge.resources ({key}, actors) or use a bigger cluster"
            )


def _engine_stage(
    ds: Any,
    engine: EngineConfig,
    resources: StageResources,
    stage_cls: type,
    stage_kwargs: dict[str, Any],
) -> Any:
    return ds.map_batches(
        stage_cls,
        fn_constructor_kwargs={"engine_config": engine, **stage_kwargs},
        **_pool_kwargs(resources, engine.batch_size),
    )


def _vllm_generation(ds: Any, engine: Any, sampling: SamplingParams, root: str, progress: Any) -> Any:
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    sp = sampling_params(sampling)
    proc = build_processor(
        vLLMEngineProcessorConfig(**processor_config_kwargs(engine)),
        preprocess=lambda row: {**row, "messages": json.loads(row["messages_json"]), "sampling_params": sp},
        postprocess=lambda row: {k: v for k, v in row.items() if k not in ("messages", "sampling_params")},
    )
    return proc(ds).map_batches(
        FinishProcessorGenerations,
        fn_constructor_kwargs={"run_root": root, "progress": progress},
        batch_format="pandas",
        num_cpus=0.1,
        compute=ActorPoolStrategy(size=1),
    )


def _vllm_scoring(ds: Any, judge: JudgeConfig, template: JudgeTemplate, root: str, progress: Any) -> Any:
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    schema = judge.reply_schema() if judge.constrained else None
    sp = sampling_params(judge.sampling, schema)

    def pre(row: dict[str, Any]) -> dict[str, Any]:
        if row["gen_status"] != "ok" or row.get("response") is None:
            # Nothing to judge; a 1-token dummy keeps the row in the stream and is ignored afterwards.
            return {
                **row,
                "messages": [{"role": "user", "content": "-"}],
                "sampling_params": {"max_tokens": 1},
            }
        return {**row, "messages": judge_messages(row, template), "sampling_params": sp}

    proc = build_processor(
        vLLMEngineProcessorConfig(**processor_config_kwargs(judge.engine)),  # type: ignore[arg-type]
        preprocess=pre,
        postprocess=lambda row: {k: v for k, v in row.items() if k not in ("messages", "sampling_params")},
    )
    return proc(ds).map_batches(
        FinishProcessorScores,
        fn_constructor_kwargs={"judge": judge, "run_root": root, "progress": progress},
        batch_format="pandas",
        num_cpus=0.1,
        compute=ActorPoolStrategy(size=1),
    )


class _Poller:
    """Calls the progress callback from a thread while the driver consumes the pipeline output."""

    def __init__(self, actor: Any, totals: dict[str, int], callback: ProgressCallback | None) -> None:
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


def run_evaluation(
    config: WbrayConfig,
    bench: Benchmark,
    out: str,
    *,
    generate: bool = True,
    on_progress: ProgressCallback | None = None,
) -> RunSummary:
    """Generate (unless ``generate`` is False) and score ``bench`` into the run directory ``out``.

    Args:
        config: The evaluation config (candidates, judge, resources).
        bench: The benchmark, already filtered to the queries to evaluate.
        out: Run directory URI.
        generate: False re-scores the generations already stored in ``out`` with ``config.judge``
            (every model found there) without generating anything.
        on_progress: Called about twice a second with per-stage counts and totals.

    Returns:
        A summary; the manifest in ``out`` records the same.
    """
    judge = config.judge
    if judge.engine is None:
        raise ConfigError(
            "judge.engine is not set: scoring needs a judge model (see configs/quickstart.yaml)"
        )
    if generate and not config.candidates:
        raise ConfigError("no candidates: list the models to evaluate under `candidates:`")
    started = time.time()
    check_destination(out)  # a missing bucket or bad credentials fail here, before any work
    layout = RunLayout.at(out)
    template = judge_template_for(config, bench)
    queries = bench.by_index
    selected = set(queries)

    stored_table = read_generations(layout)
    stored: dict[str, dict[str, Any]] = {}
    if stored_table is not None:
        for row in stored_table.to_pylist():
            stored[row["row_id"]] = row
    done_scores: frozenset[str] = frozenset()
    scores_table = read_scores(layout, judge.name, ["row_id"])
    if scores_table is not None:
        done_scores = frozenset(scores_table.column("row_id").to_pylist())

    plans: list[tuple[CandidateConfig | None, str, list[dict[str, Any]], list[dict[str, Any]]]] = []
    if generate:
        for candidate in config.candidates:
            rows = generation_rows(bench.queries, candidate, config.generation, bench.data_version)
            pending = [r for r in rows if r["row_id"] not in stored]
            have = [stored[r["row_id"]] for r in rows if r["row_id"] in stored]
            plans.append((candidate, candidate.name, pending, have))
    else:
        by_model: dict[str, list[dict[str, Any]]] = {}
        for row in stored.values():
            if int(row["index"]) in selected:
                by_model.setdefault(str(row["model"]), []).append(row)
        if not by_model:
            raise WbrayError(
                f"{layout.root}: no stored generations for the selected queries; run `wbray run` first"
            )
        for model in sorted(by_model):
            plans.append((None, model, [], by_model[model]))

    manifest = read_manifest(layout) or {"created_at": started, "history": []}
    manifest.update(
        {
            "wbray_version": __version__,
            "status": "running",
            "config": json.loads(json.dumps(config.model_dump(mode="json"))),
            "config_yaml": dump_config(config),
            "config_hash": content_hash(config.model_dump(mode="json", exclude={"run", "ray"})),
            "data": {
                "source": "example" if bench.is_example else str(bench.root),
                "data_version": bench.data_version,
                "queries": len(bench.queries),
            },
            "prompt_versions": {judge.name: template.version},
            "judge_template": {"source": template.source, "origin": template.origin},
            "packages": _packages(),
            "started_at": started,
        }
    )
    write_manifest(layout, manifest)

    summary = RunSummary(root=layout.root, judge=judge.name, models=[name for _, name, _, _ in plans])
    progress = ProgressActor.remote()  # type: ignore[attr-defined]
    criteria_per_query = {i: len(q.checklist) for i, q in queries.items()}
    # Progress counts are cumulative over candidates, so totals are too.
    grand = {"generate": 0, "score": 0}
    for cand, model, pending, have in plans:
        stored_score_rows = [
            r
            for g in have
            for r in scoring_rows(g, queries[int(g["index"])], judge, template)
            if r["row_id"] not in done_scores
        ]
        expected_new = sum(criteria_per_query[r["index"]] for r in pending) * judge.repeats
        totals = {"generate": len(pending), "score": expected_new + len(stored_score_rows)}
        summary.skipped[f"generate:{model}"] = len(have)
        summary.computed[f"generate:{model}"] = len(pending)
        summary.computed[f"score:{model}"] = totals["score"]
        if totals["score"] == 0 and not pending:
            continue
        grand["generate"] += totals["generate"]
        grand["score"] += totals["score"]
        stage_resources: list[tuple[str, StageResources]] = []
        streams = []
        if pending and cand is not None:
            sampling = candidate_sampling(cand, config.generation)
            gen_ds = ray.data.from_items(pending)
            if get_backend(cand.engine.backend).runs_as_processor:
                gen_ds = _vllm_generation(gen_ds, cand.engine, sampling, layout.root, progress)
            else:
                stage_resources.append(("generation", config.generation.resources))
                gen_ds = _engine_stage(
                    gen_ds,
                    cand.engine,
                    config.generation.resources,
                    GenerateStage,
                    {"sampling": sampling, "run_root": layout.root, "progress": progress},
                )
            explode = Explode(
                {i: queries[i] for i in {r["index"] for r in pending}}, judge, template, done_scores
            )
            streams.append(gen_ds.flat_map(explode, num_cpus=0))
        if stored_score_rows:
            streams.append(ray.data.from_items(stored_score_rows))
        ds = streams[0] if len(streams) == 1 else streams[0].union(*streams[1:])
        if get_backend(judge.engine.backend).runs_as_processor:
            ds = _vllm_scoring(ds, judge, template, layout.root, progress)
        else:
            stage_resources.append(("scoring", judge.resources))
            ds = _engine_stage(
                ds,
                judge.engine,
                judge.resources,
                ScoreStage,
                {"judge": judge, "template": template, "run_root": layout.root, "progress": progress},
            )
        _check_resources(stage_resources)
        with _Poller(progress, grand, on_progress):
            for _ in ds.iter_batches(batch_size=None, batch_format="pandas"):
                pass

    # Seal every stage this run touched, then write the manifest: the manifest comes last.
    for _, model, _, _ in plans:
        if generate:
            commit_stage(layout.generations(model))
        commit_stage(layout.scores(judge.name, model))
    finished = time.time()
    counts = _counts(layout, judge.name)
    manifest.update({"status": "complete", "finished_at": finished, "wall_s": finished - started, **counts})
    manifest["history"] = [
        *manifest.get("history", []),
        {
            "started_at": started,
            "finished_at": finished,
            "judge": judge.name,
            "generate": generate,
            "computed": summary.computed,
        },
    ]
    write_manifest(layout, manifest)
    summary.wall_s = finished - started
    summary.manifest = manifest
    return summary


def _counts(layout: RunLayout, judge: str) -> dict[str, Any]:
    gens = read_generations(layout, ["status", "prompt_tokens", "completion_tokens"])
    scores = read_scores(layout, judge, ["status", "prompt_tokens", "completion_tokens"])

    def tally(table: Any) -> tuple[dict[str, int], dict[str, int]]:
        if table is None:
            return {"total": 0, "ok": 0, "failed": 0}, {"prompt": 0, "completion": 0}
        df = table.to_pandas()
        ok = int((df["status"] == "ok").sum())
        return (
            {"total": len(df), "ok": ok, "failed": len(df) - ok},
            {"prompt": int(df["prompt_tokens"].sum()), "completion": int(df["completion_tokens"].sum())},
        )

    g_rows, g_tok = tally(gens)
    s_rows, s_tok = tally(scores)
    return {
        "row_counts": {"generations": g_rows, "scores": s_rows},
        "tokens": {"generation": g_tok, "judge": s_tok},
    }
