"""wbray's public Python API: :func:`evaluate` and :func:`score`.

These functions apply every setting of the config themselves — storage options handed to every
stage as an object (never through ``os.environ``), the Ray cluster to start or join, Ray Data's
context, the post-run aggregation and reports — so a Ray job that calls them behaves exactly like
the ``wbray`` command, which is a thin caller of this module (as are ``jobs/*.py``).

``import wbray`` stays light: Ray, torch and the pipeline load inside the calls.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wbray import __version__
from wbray.errors import ConfigError, WbrayError

if TYPE_CHECKING:
    import pandas as pd

    from wbray.aggregate import Leaderboard
    from wbray.config import WbrayConfig
    from wbray.dataset import Benchmark
    from wbray.pipelines import Execution, ProgressCallback, RunPlan
    from wbray.prompts import JudgeTemplate
    from wbray.steps.imported import Imported
    from wbray.storage import RunLayout, RunManifest

if TYPE_CHECKING:
    ConfigSource = WbrayConfig | str | Path | Mapping[str, Any]


def __getattr__(name: str) -> Any:
    # The config schema (pydantic, ~0.15 s to build) loads on first use, not with this module:
    # `wbray aggregate` starts decoding score files right after importing it (BENCHMARKS P3a).
    if name == "ConfigSource":
        from wbray.config import WbrayConfig

        return WbrayConfig | str | Path | Mapping[str, Any]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Said at start and written on every report when the judge prompt is wbray's own wording.
NOT_OFFICIAL_PROMPT = (
    "judge prompt: not the official one (wbray's builtin wording; no official prompt in the data "
    "directory) — scores are not comparable with published WritingBench numbers"
)


@dataclass
class EvalSummary:
    """What one call of :func:`evaluate` or :func:`score` did.

    Attributes:
        root: The run directory URI.
        judge: The judge's name.
        models: The models this call planned for.
        computed: ``"generate:<model>"`` / ``"score:<model>"`` -> rows computed by this call.
        skipped: The same keys -> rows already stored, so not computed again.
        failed: The same keys -> computed rows that are failure rows.
        wall_s: Wall time of the call (Ray start and reports included).
        manifest: The run's manifest as written last.
        leaderboard: The aggregated leaderboard of the run's scores (None when nothing is scored
            yet or ``report=False``).
        reports: URIs of the report files written.
        browse: URI of the browsable page (``report.browse``).
        flagged: Per model, answers flagged as judge-injection attempts (none: not listed).
    """

    root: str
    judge: str
    models: list[str]
    computed: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    manifest: RunManifest | None = None
    leaderboard: Leaderboard | None = None
    reports: list[str] = field(default_factory=list)
    browse: str | None = None
    flagged: dict[str, int] = field(default_factory=dict)


def load(
    config: ConfigSource,
    *,
    overrides: Sequence[str] = (),
    data_dir: str | None = None,
    limit: int | None = None,
) -> WbrayConfig:
    """A config from a :class:`WbrayConfig`, a YAML path or a mapping, with overrides applied.

    ``data_dir`` and ``limit`` are set as values after loading (not as YAML overrides), so a
    directory named ``2024`` or ``yes`` stays a path.
    """
    from wbray.config import WbrayConfig, load_config

    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    if isinstance(config, WbrayConfig):
        loaded = load_config(config.model_dump(mode="json"), list(overrides)) if overrides else config
    else:
        loaded = load_config(config if isinstance(config, Mapping) else Path(config), list(overrides))
    data: dict[str, Any] = {}
    if data_dir:
        data["data_dir"] = str(data_dir)
    if limit is not None:
        data["limit"] = limit
    if data:
        loaded = loaded.model_copy(update={"data": loaded.data.model_copy(update=data)})
    return loaded


def evaluate(
    config: ConfigSource,
    *,
    out: str | None = None,
    limit: int | None = None,
    data_dir: str | None = None,
    overrides: Sequence[str] = (),
    address: str | None = None,
    report: bool = True,
    allow_missing: bool = False,
    on_progress: ProgressCallback | None = None,
    on_event: Callable[[str], None] | None = None,
) -> EvalSummary:
    """Generate, score, aggregate and report: the whole evaluation, resumable.

    Every candidate generates through its own engine pool and one judge pool scores all of them
    (streaming, in one Ray Data dataset). Running the same call again skips finished rows.

    Args:
        config: The evaluation config (object, YAML path or mapping).
        out: Run directory URI (local, ``file://`` or ``s3://``); default ``run.out``, then
            ``runs/<config file stem>``.
        limit: Evaluate only the first N selected queries.
        data_dir: WritingBench data directory or ``example`` (overrides ``data.data_dir``).
        overrides: Dotted ``key=value`` overrides (as ``wbray -o``).
        address: A Ray cluster to join (``auto``, ``ray://...``); default ``ray.address``, then
            ``$RAY_ADDRESS``, else a private embedded cluster.
        report: Aggregate the run and write its reports afterwards.
        allow_missing: A candidate given by ``responses:`` may lack answers for selected
            queries; they count as missing (coverage) instead of failing the call.
        on_progress: Called about twice a second with per-stage counts and totals.
        on_event: Called with one-line notices (which cluster, what the plan is).

    Returns:
        A summary; the run's manifest records the same.
    """
    return _run(
        config, True, out, limit, data_dir, overrides, address, report, allow_missing, on_progress, on_event
    )


def score(
    config: ConfigSource,
    *,
    out: str | None = None,
    limit: int | None = None,
    data_dir: str | None = None,
    overrides: Sequence[str] = (),
    address: str | None = None,
    report: bool = True,
    allow_missing: bool = False,
    on_progress: ProgressCallback | None = None,
    on_event: Callable[[str], None] | None = None,
) -> EvalSummary:
    """Score the answers stored in ``out`` with the config's judge; nothing is generated.

    Generate once, score many times: every model found in the run is judged, and its verdicts go
    under the judge's name next to those of other judges. Candidates given by ``responses:`` are
    imported first and judged too. Arguments as in :func:`evaluate`.
    """
    return _run(
        config, False, out, limit, data_dir, overrides, address, report, allow_missing, on_progress, on_event
    )


def default_out(config: WbrayConfig, source: ConfigSource) -> str:
    """The run directory when none is given: ``run.out``, then ``runs/<config file stem>``."""
    if config.run.out:
        return config.run.out
    if isinstance(source, str | Path):
        return str(Path("runs") / Path(source).stem)
    raise ConfigError("no run directory: pass out=... or set run.out in the config")


def judge_template_for(config: WbrayConfig, bench: Benchmark) -> JudgeTemplate:
    """The judge prompt a run uses (official from the data directory when there is one)."""
    from wbray.prompts import load_judge_template

    return load_judge_template(None if bench.is_example else bench.root, config.judge.template)


def _packages() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "wbray": __version__}
    for name in ("ray", "pyarrow", "pandas", "torch", "transformers", "xgrammar", "vllm", "openai"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _run(
    source: ConfigSource,
    generate: bool,
    out: str | None,
    limit: int | None,
    data_dir: str | None,
    overrides: Sequence[str],
    address: str | None,
    report: bool,
    allow_missing: bool,
    on_progress: ProgressCallback | None,
    on_event: Callable[[str], None] | None,
) -> EvalSummary:
    from wbray.dataset import load_benchmark
    from wbray.storage import RunLayout, StorageOptions, check_destination, read_manifest

    started = time.time()
    say = on_event or (lambda _line: None)
    config = load(source, overrides=overrides, data_dir=data_dir, limit=limit)
    if config.judge.engine is None:
        raise ConfigError(
            "judge.engine is not set: scoring needs a judge model (see configs/quickstart.yaml)"
        )
    if generate and not config.candidates:
        raise ConfigError("no candidates: list the models to evaluate under `candidates:`")
    d = config.data
    full = load_benchmark(d.data_dir)
    bench = full.select(domain1=d.domain1, domain2=d.domain2, lang=d.lang, indices=d.indices, limit=d.limit)
    # The config wins; what it leaves unset comes from the caller's environment, and the result
    # travels to every stage as an object (workers on other nodes never see this shell).
    storage = StorageOptions.of(config.storage).with_env_defaults()
    layout = RunLayout.at(out or default_out(config, source), storage)
    check_destination(layout.root, layout.storage)  # a missing bucket or bad credentials fail before work
    read_manifest(layout)  # so does a damaged manifest of a run being resumed
    template = judge_template_for(config, bench)
    # Answers given by files are read and checked before any cluster work (errors name file:line).
    imported = _read_imports(config, full, bench, layout, allow_missing)
    verb = "run" if generate else "score"
    say(f"wbray {verb}: {len(bench.queries)} queries, data {bench.data_version}, out {layout.root}")
    if template.source != "official":
        say(f"warning: {NOT_OFFICIAL_PROMPT}")

    from wbray.pipelines import cluster_address, configure_data, execute, pipeline_error, ray_session

    with ray_session(config.ray, address, say=say):
        configure_data(config.ray)
        _store_imports(imported, layout, say)
        plan, served = _plan(config, bench, template, layout, generate, imported)
        totals = plan.totals
        say(f"plan: {totals['generate']} answers and {totals['score']} verdicts to compute")
        manifest = _start_manifest(config, bench, template, layout, plan, served, started, generate)
        try:
            fixed = cluster_address(config.ray, address) is None  # embedded: it cannot grow
            execution = execute(
                plan,
                layout,
                bench.queries,
                on_progress,
                part_rows=config.run.part_rows,
                part_age_s=config.run.part_age_s,
                fixed_cluster=fixed,
                say=say,
            )
        except BaseException as exc:
            # Ray reports a stopped pipeline as a many-line traceback (a task error, an actor that
            # died with its node, the no-progress timeout): the user and the manifest get one line.
            error = None if isinstance(exc, KeyboardInterrupt | SystemExit) else pipeline_error(exc)
            manifest.status = "failed"
            manifest.error = str(error) if error else type(exc).__name__
            try:
                _write_manifest(layout, manifest)
            except WbrayError as lost:
                # Storage may be what failed (an S3 outage): the manifest then still reads
                # "running", which never reads as complete; the pipeline's error is the news.
                say(f"warning: the failed manifest could not be written: {lost}")
            if error is None:
                raise
            raise error from exc
        summary = _finish(config, bench, layout, plan, execution, manifest, started, generate)
        if report:
            _report(config, summary, bench, layout, say)
    summary.wall_s = time.time() - started
    return summary


def _read_imports(
    config: WbrayConfig, full: Benchmark, bench: Benchmark, layout: RunLayout, allow_missing: bool
) -> dict[str, Imported]:
    """Import every candidate given by ``responses:`` (read here, on the driver: the user's file)."""
    from wbray.steps.imported import import_responses
    from wbray.storage import join, read_bytes

    out: dict[str, Imported] = {}
    for cand in config.candidates:
        if cand.responses is None:
            continue
        uri = cand.responses
        if not uri.endswith(".jsonl"):
            uri = join(uri, f"{cand.name}.jsonl")  # a directory of <model>.jsonl, upstream's layout
        out[cand.name] = import_responses(
            read_bytes(uri, layout.storage),
            uri,
            cand.name,
            bench.queries,
            full.by_index,
            bench.data_version,
            allow_missing=allow_missing,
        )
    return out


def _store_imports(imported: Mapping[str, Imported], layout: RunLayout, say: Callable[[str], None]) -> None:
    """Store imported answers not stored yet (unchanged lines keep their rows and verdicts)."""
    from wbray.storage import index_generations, write_generations

    if not imported:
        return
    have = {row.row_id for row in index_generations(layout)}
    for name, found in imported.items():
        new = [r for r in found.rows if r["row_id"] not in have]
        if new:
            write_generations(layout, name, new)
        missing = f", {len(found.missing)} selected queries without an answer" if found.missing else ""
        say(f"{name}: {len(found.rows)} answers from {found.source} ({len(new)} new{missing})")


def _plan(
    config: WbrayConfig,
    bench: Benchmark,
    template: JudgeTemplate,
    layout: RunLayout,
    generate: bool,
    imported: Mapping[str, Imported],
) -> tuple[RunPlan, dict[str, dict[str, Any] | None]]:
    from wbray.engines import describe_engine
    from wbray.pipelines import generation_pool, judge_pool, plan_run
    from wbray.storage import current_generations, index_generations, score_ids

    assert config.judge.engine is not None
    # What served endpoints say they serve joins the row ids: asked once, before any work.
    served: dict[str, dict[str, Any] | None] = {
        judge_pool(config.judge.name): describe_engine(config.judge.engine)
    }
    if generate:
        for cand in config.candidates:
            if cand.engine is not None:
                served[generation_pool(cand.name)] = describe_engine(cand.engine)
    plan = plan_run(
        config,
        bench.queries,
        bench.data_version,
        template,
        index_generations(layout),
        score_ids(layout, config.judge.name),
        generate=generate,
        served=served,
        imported={name: found.ids for name, found in imported.items()},
        current=current_generations(layout),
    )
    return plan, served


def _write_manifest(layout: RunLayout, manifest: RunManifest) -> None:
    from wbray.storage import write_manifest

    write_manifest(layout, manifest)


def _start_manifest(
    config: WbrayConfig,
    bench: Benchmark,
    template: JudgeTemplate,
    layout: RunLayout,
    plan: RunPlan,
    served: Mapping[str, Mapping[str, Any] | None],
    started: float,
    generate: bool,
) -> RunManifest:
    from wbray.config import content_hash, dump_config
    from wbray.pipelines import generation_pool
    from wbray.steps import generation_identity, judge_identity
    from wbray.storage import DataInfo, RunManifest, TemplateInfo, read_manifest

    manifest = read_manifest(layout) or RunManifest(created_at=started)
    engines = dict(manifest.engines)
    engines[plan.judge_pool] = judge_identity(config.judge, template, plan.judge_served)
    if generate:
        for cand in config.candidates:
            if cand.engine is not None:
                pool = generation_pool(cand.name)
                engines[pool] = generation_identity(cand, config.generation, served.get(pool))
    manifest = manifest.model_copy(
        update={
            "wbray_version": __version__,
            "status": "running",
            "error": None,
            "started_at": started,
            "finished_at": None,
            "config": json.loads(json.dumps(config.model_dump(mode="json"))),
            "config_yaml": dump_config(config),
            "config_hash": content_hash(config.model_dump(mode="json", exclude={"run", "ray", "report"})),
            "data": DataInfo(
                source="example" if bench.is_example else str(bench.root),
                data_version=bench.data_version,
                queries=len(bench.queries),
            ),
            "judge": config.judge.name,
            "prompt_versions": {**manifest.prompt_versions, config.judge.name: template.version},
            "judge_template": TemplateInfo(source=template.source, origin=template.origin),
            "engines": engines,
            "packages": _packages(),
        }
    )
    _write_manifest(layout, manifest)
    return manifest


def _finish(
    config: WbrayConfig,
    bench: Benchmark,
    layout: RunLayout,
    plan: RunPlan,
    execution: Execution,
    manifest: RunManifest,
    started: float,
    generate: bool,
) -> EvalSummary:
    from wbray.storage import Invocation, PoolStats, StageStats, commit_stage

    judge = config.judge.name
    # Seal every stage this call touched, then write the manifest: the manifest comes last. A run
    # names each model's current answers; scoring alone leaves that record as the last run wrote it.
    imported = {c.name for c in config.candidates if c.responses is not None}
    for c in plan.candidates:
        if generate or c.model in imported:
            commit_stage(layout.generations(c.model), layout.storage, current=c.generation_ids)
        commit_stage(layout.scores(judge, c.model), layout.storage)
    summary = EvalSummary(root=layout.root, judge=judge, models=plan.models)
    stages: list[StageStats] = []
    for c in plan.candidates:
        gen = execution.stages.get(f"generate:{c.model}", {})
        sc = execution.stages.get(f"score:{c.model}", {})
        summary.skipped[f"generate:{c.model}"] = c.generations_stored
        summary.computed[f"generate:{c.model}"] = int(gen.get("rows", 0))
        summary.failed[f"generate:{c.model}"] = int(gen.get("failed", 0))
        summary.skipped[f"score:{c.model}"] = c.scores_done
        summary.computed[f"score:{c.model}"] = int(sc.get("rows", 0))
        summary.failed[f"score:{c.model}"] = int(sc.get("failed", 0))
        if generate:
            stages.append(
                StageStats(
                    stage="generate",
                    model=c.model,
                    planned=c.generations_todo,
                    skipped=c.generations_stored,
                    computed=int(gen.get("rows", 0)),
                    failed=int(gen.get("failed", 0)),
                    prompt_tokens=int(gen.get("prompt_tokens", 0)),
                    completion_tokens=int(gen.get("completion_tokens", 0)),
                    parts=int(gen.get("parts", 0)),
                )
            )
        stages.append(
            StageStats(
                stage="score",
                model=c.model,
                judge=judge,
                planned=c.scores_todo,
                skipped=c.scores_done,
                computed=int(sc.get("rows", 0)),
                failed=int(sc.get("failed", 0)),
                prompt_tokens=int(sc.get("prompt_tokens", 0)),
                completion_tokens=int(sc.get("completion_tokens", 0)),
                parts=int(sc.get("parts", 0)),
                cache_hits=int(sc.get("cache_hits", 0)),
                cache_misses=int(sc.get("cache_misses", 0)),
            )
        )
    pools = []
    for name, engine, _resources in plan.pools():
        p = execution.pools.get(name, {})
        pools.append(
            PoolStats(
                pool=name,
                backend=str(engine.backend),
                actors=int(p.get("actors", 0)),
                # Backends with their own stage (vLLM) load models out of wbray's sight.
                engine_loads=int(p["loads"]) if "loads" in p else None,
                load_s=float(p.get("load_s", 0.0)),
                busy_s=float(p.get("busy_s", 0.0)),
                batches=int(p.get("batches", 0)),
                rows=int(p.get("rows", 0)),
                wall_s=float(p.get("wall_s", 0.0)),
            )
        )
    finished = time.time()
    counts = _counts(layout, judge)
    manifest = manifest.model_copy(
        update={
            "status": "complete",
            "finished_at": finished,
            "wall_s": finished - started,
            **counts,
            "history": [
                *manifest.history,
                Invocation(
                    started_at=started,
                    finished_at=finished,
                    judge=judge,
                    generate=generate,
                    stages=stages,
                    pools=pools,
                ),
            ],
        }
    )
    _write_manifest(layout, manifest)
    summary.manifest = manifest
    return summary


def _counts(layout: RunLayout, judge: str) -> dict[str, Any]:
    from wbray.storage import RowCount, TokenCount, read_generations, read_scores

    gens = read_generations(layout, ["status", "prompt_tokens", "completion_tokens"])
    scores = read_scores(layout, judge, ["status", "prompt_tokens", "completion_tokens"])

    def tally(table: Any) -> tuple[RowCount, TokenCount]:
        if table is None:
            return RowCount(), TokenCount()
        df = table.to_pandas()
        ok = int((df["status"] == "ok").sum())
        return (
            RowCount(total=len(df), ok=ok, failed=len(df) - ok),
            TokenCount(prompt=int(df["prompt_tokens"].sum()), completion=int(df["completion_tokens"].sum())),
        )

    g_rows, g_tok = tally(gens)
    s_rows, s_tok = tally(scores)
    return {
        "row_counts": {"generations": g_rows, "scores": s_rows},
        "tokens": {"generation": g_tok, "judge": s_tok},
    }


def _report(
    config: WbrayConfig, summary: EvalSummary, bench: Benchmark, layout: RunLayout, say: Callable[[str], None]
) -> None:
    """The leaderboard (numbers only, in the driver) and the browsable page (built in the cluster)."""
    import dataclasses

    from wbray.aggregate import aggregate, write_reports
    from wbray.pipelines import browse_in_cluster
    from wbray.storage import read_evaluations, token_ledger

    # Only what the numbers need: no reasons, no raw replies cross into the driver.
    columns = ["model", "index", "criterion", "repeat", "score", "status"]
    evaluations = read_evaluations(
        layout, summary.judge, indices=set(bench.by_index), models=summary.models, columns=columns
    )
    if evaluations.empty:
        return
    board = aggregate(evaluations, bench.queries, bench.requirements)
    if config.report.browse:
        page = browse_in_cluster(
            layout,
            summary.judge,
            bench,
            summary.models,
            resamples=config.report.resamples,
            seed=config.report.seed,
        )
        summary.browse = str(page["uri"])
        summary.flagged = {m: n for m, n in page["flagged"].items() if n}
    intervals, comparisons, noise = _statistics(
        evaluations, board, bench, resamples=config.report.resamples, seed=config.report.seed
    )
    board = dataclasses.replace(
        board,
        notes=tuple(_report_notes(summary)),
        intervals=intervals,
        comparisons=comparisons,
        noise=noise,
    )
    ledger = token_ledger(layout, summary.judge)
    summary.reports = [
        str(u) for u in write_reports(board, layout.report(summary.judge), ledger, layout.storage)
    ]
    if summary.browse:
        summary.reports.append(summary.browse)
    summary.leaderboard = board
    for model, n in summary.flagged.items():
        say(f"{model}: {n} answers flagged as addressing the judge (see browse.html; scores unchanged)")


def _statistics(
    evaluations: pd.DataFrame,
    board: Leaderboard,
    bench: Benchmark,
    *,
    resamples: int,
    seed: int,
    baseline: str | None = None,
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, pd.DataFrame | None]:
    """``(intervals, comparisons, noise)``: what every report shows beside the means.

    Bootstrap intervals and paired comparisons with the reference model when ``resamples`` > 0
    (the reference is ``baseline``, else the leader); judge noise when some criterion was judged
    more than once.

    Raises:
        ConfigError: ``baseline`` is not a model of the board.
    """
    import math

    from wbray.stats import bootstrap_cis, comparisons_table, judge_noise

    models = board.models
    if baseline is not None and baseline not in models:
        raise ConfigError(
            f"baseline {baseline!r} is not a model of these results (models: {', '.join(models)})"
        )
    intervals = comparisons = noise = None
    if resamples:
        intervals = bootstrap_cis(
            evaluations, bench.queries, bench.requirements, resamples=resamples, seed=seed
        )
        overall = [float(v) for v in board.official["Overall"]]
        ranked = [
            m for m, v in sorted(zip(models, overall, strict=True), key=lambda x: -x[1]) if not math.isnan(v)
        ]
        reference = baseline or (ranked[0] if ranked else None)
        if reference is not None and len(models) > 1:
            comparisons = comparisons_table(evaluations, reference, resamples=resamples, seed=seed)
    if "repeat" in evaluations and len(evaluations) and int(evaluations["repeat"].max()) > 0:
        noise = judge_noise(evaluations)
    return intervals, comparisons, noise


def _report_notes(summary: EvalSummary) -> list[str]:
    """What every report says above its tables about how the numbers came about."""
    notes = []
    manifest = summary.manifest
    if manifest is not None and manifest.judge_template.source != "official":
        notes.append(NOT_OFFICIAL_PROMPT)
    if manifest is not None and manifest.last is not None:
        hits = sum(s.cache_hits for s in manifest.last.stages)
        misses = sum(s.cache_misses for s in manifest.last.stages)
        if hits or misses:
            notes.append(f"judge cache: {hits} verdicts reused, {misses} asked of the judge in this call")
    for model, n in summary.flagged.items():
        notes.append(
            f"{model}: {n} answers hold score-like JSON or instructions aimed at the judge (flagged in "
            "browse.html; their scores are unchanged)"
        )
    return notes


@dataclass(frozen=True)
class Aggregated:
    """What :func:`aggregate` computed: the leaderboard, the token ledger of runs, and notes on the
    inputs (repeated indices, the benchmark a run was found against)."""

    board: Leaderboard
    ledger: pd.DataFrame | None
    notes: list[str]


def aggregate(
    inputs: Sequence[str],
    *,
    data_dir: str | None = None,
    judge: str | None = None,
    dedupe: bool = False,
    resamples: int = 1000,
    seed: int = 0,
    out: str | None = None,
    baseline: str | None = None,
) -> Aggregated:
    """The leaderboard of score files, export directories, runs or run prefixes (local or s3://).

    Numbers follow upstream's ``calculate_scores.py`` exactly. A run finds its benchmark from its
    manifest (``data_dir`` overrides). Intervals are bootstrapped over queries (``resamples``;
    0 = none); a run judged with wbray's builtin prompt marks every report as such.

    Args:
        inputs: Score files, directories, runs or prefixes; ``example`` names the bundled results.
        data_dir: The benchmark to read them against (default: from the runs, then the usual search).
        judge: For runs holding several judges, the one to aggregate.
        dedupe: Keep the last line of an index an upstream score file repeats (upstream counts both).
        resamples: Bootstrap resamples for the ``score ± half-width`` intervals.
        seed: The bootstrap's seed.
        out: Also write every report format under this directory or s3:// prefix.
        baseline: The model every other is compared with (paired, on common queries); default the
            leader.

    Raises:
        ConfigError: ``resamples`` is negative, or ``baseline`` names no model of the inputs.
    """
    import dataclasses

    from wbray.aggregate import Prefetch, classify_inputs
    from wbray.dataset import example_dir

    if resamples < 0:
        raise ConfigError(f"resamples must be 0 or more, got {resamples}")
    classified = classify_inputs(str(example_dir() / "results") if s == "example" else s for s in inputs)
    # Decoding score files starts now, in worker processes, while this one imports pandas and
    # loads the benchmark (BENCHMARKS P3).
    with Prefetch(classified.files) as prefetch:
        import pandas as pd

        from wbray.aggregate import aggregate as compute
        from wbray.aggregate import load_scores, resolve_benchmark

        resolved = resolve_benchmark(classified.runs, data_dir)
        bench = resolved.bench
        loaded = load_scores(
            classified,
            bench.queries,
            judge=judge,
            dedupe=dedupe,
            selections=resolved.selections,
            prefetch=prefetch,
        )
    board = compute(loaded.evaluations, bench.queries, bench.requirements, selected=loaded.selected)
    ledger = None
    board_notes: list[str] = []
    if classified.runs:  # score files carry no token counts
        from wbray.storage import RunLayout, read_manifest, token_ledger

        ledger = pd.concat(
            [token_ledger(RunLayout.at(run), judge) for run in classified.runs], ignore_index=True
        )
        builtin = []
        for run in classified.runs:
            manifest = read_manifest(RunLayout.at(run))
            if manifest is not None and manifest.judge_template.source not in ("", "official"):
                builtin.append(run)
        if builtin:
            board_notes.append(f"{NOT_OFFICIAL_PROMPT} ({', '.join(builtin)})")
    intervals, comparisons, noise = _statistics(
        loaded.evaluations, board, bench, resamples=resamples, seed=seed, baseline=baseline
    )
    board = dataclasses.replace(
        board, notes=tuple(board_notes), intervals=intervals, comparisons=comparisons, noise=noise
    )
    if out is not None:
        from wbray.aggregate import write_reports

        write_reports(board, out, ledger)
    return Aggregated(board, ledger, list(resolved.notes) + [str(n) for n in loaded.notes])


__all__ = [
    "Aggregated",
    "ConfigSource",
    "EvalSummary",
    "aggregate",
    "default_out",
    "evaluate",
    "load",
    "score",
]
