"""``wbray run``, ``wbray score`` and ``wbray export``: the evaluation verbs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from wbray.cli._config import add_override_option
from wbray.errors import WbrayError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "run",
        help="Generate, score, aggregate and report (resumable).",
        description="Evaluate the config's candidates on WritingBench: generate -> score -> aggregate -> "
        "report. Running the same command again skips finished rows.",
    )
    _common(run)
    run.add_argument(
        "--limit", type=int, help="Evaluate only the first N queries (after the config's filters)."
    )
    run.set_defaults(func=_run)

    score = sub.add_parser(
        "score",
        help="Re-score a run's stored generations with the config's judge (no generation).",
        description="Generate once, score many times: judge the generations stored in --out with the "
        "config's judge, writing scores under that judge's name.",
    )
    _common(score)
    score.add_argument(
        "--limit", type=int, help="Score only the first N queries (after the config's filters)."
    )
    score.set_defaults(func=_score)

    export = sub.add_parser(
        "export",
        help="Write a run's generations and scores in upstream WritingBench's file formats.",
        description="Writes DIR/responses/<model>.jsonl and DIR/scores/<model>.jsonl "
        "(failures in DIR/failures/).",
    )
    export.add_argument("run_dir", metavar="RUN", help="Run directory.")
    export.add_argument("--out", required=True, help="Destination directory.")
    export.add_argument("--judge", help="Judge whose scores to export (needed when the run has several).")
    export.set_defaults(func=_export)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config (e.g. configs/quickstart.yaml).")
    add_override_option(p)
    p.add_argument("--out", help="Run directory URI (default: run.out, then runs/<config stem>).")
    p.add_argument("--address", help="Ray cluster address (default: start a local cluster).")
    p.add_argument("--data-dir", help="WritingBench data directory, or 'example' (overrides data.data_dir).")


def _prepare(args: argparse.Namespace) -> tuple[Any, Any, str]:
    from wbray.config import load_config
    from wbray.dataset import load_benchmark

    overrides = list(args.override)
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    if args.limit is not None:
        if args.limit < 1:
            raise WbrayError(f"--limit must be at least 1, got {args.limit}")
        overrides.append(f"data.limit={args.limit}")
    config = load_config(args.config, overrides)
    d = config.data
    bench = load_benchmark(d.data_dir).select(
        domain1=d.domain1, domain2=d.domain2, lang=d.lang, indices=d.indices, limit=d.limit
    )
    out = args.out or config.run.out or str(Path("runs") / Path(args.config).stem)
    return config, bench, out


def _execute(args: argparse.Namespace, generate: bool) -> int:
    from rich.console import Console

    from wbray.cli._progress import RunProgress
    from wbray.cli._ray import ray_session
    from wbray.storage import RunLayout, check_destination, read_manifest

    config, bench, out = _prepare(args)
    # Config wins over the environment; set before Ray starts so workers inherit it too.
    os.environ.update(config.storage.to_env())
    check_destination(out)  # a missing bucket or bad credentials fail before Ray even starts
    read_manifest(RunLayout.at(out))  # so does a corrupt manifest in a run being resumed
    console = Console(stderr=True)
    verb = "run" if generate else "score"
    console.print(f"wbray {verb}: {len(bench.queries)} queries, data {bench.data_version}, out {out}")
    with ray_session(config.ray, args.address):
        from wbray.pipelines import run_evaluation

        with RunProgress(console) as progress:
            summary = run_evaluation(config, bench, out, generate=generate, on_progress=progress.update)
    return _report(summary, bench, console)


def _report(summary: Any, bench: Any, console: Any) -> int:
    from rich.console import Console

    from wbray.aggregate import aggregate, rich_tables, write_reports
    from wbray.storage import RunLayout, read_evaluations, token_ledger

    layout = RunLayout.at(summary.root)
    evaluations = read_evaluations(layout, summary.judge, indices=set(bench.by_index), models=summary.models)
    if evaluations.empty:
        console.print("[yellow]no scores to aggregate[/]")
        return 0
    board = aggregate(evaluations, bench.queries, bench.requirements)
    write_reports(board, layout.report(summary.judge), token_ledger(layout, summary.judge))
    out = Console() if Console().is_terminal else Console(width=160)
    for table in rich_tables(board):
        out.print(table)
    rows = summary.manifest.get("row_counts", {})
    gen, sc = rows.get("generations", {}), rows.get("scores", {})
    console.print(
        f"generations: {gen.get('ok', 0)} ok, {gen.get('failed', 0)} failed; "
        f"scores: {sc.get('ok', 0)} ok, {sc.get('failed', 0)} failed (excluded from means); "
        f"wall {summary.wall_s:.1f} s"
    )
    console.print(f"reports: {layout.report(summary.judge)}")
    return 0


def _run(args: argparse.Namespace) -> int:
    return _execute(args, generate=True)


def _score(args: argparse.Namespace) -> int:
    return _execute(args, generate=False)


def _export(args: argparse.Namespace) -> int:
    from wbray.aggregate import write_upstream_responses, write_upstream_scores
    from wbray.storage import RunLayout, is_run, read_evaluations, read_generations

    if not is_run(args.run_dir):
        raise WbrayError(f"{args.run_dir}: not a wbray run directory (no manifest.json)")
    layout = RunLayout.at(args.run_dir)
    gens = read_generations(layout, ["model", "index", "sample", "response", "status", "error"])
    written = []
    if gens is not None:
        df = gens.to_pandas()
        if (df["sample"] > 0).any():
            # Upstream's response format has one answer per query; export the first sample.
            df = df[df["sample"] == 0]
        written += write_upstream_responses(df, args.out)
    evaluations = read_evaluations(layout, args.judge)
    if not evaluations.empty:
        written += write_upstream_scores(evaluations, args.out)
    for path in written:
        print(path)
    return 0
