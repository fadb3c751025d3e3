"""``wbray run``, ``wbray score`` and ``wbray export``: the evaluation verbs."""

from __future__ import annotations

import argparse
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
    p.add_argument(
        "--address",
        help="Ray cluster to join (auto, ray://host:10001, host:6379); default: ray.address, then "
        "$RAY_ADDRESS, else a private local cluster.",
    )
    p.add_argument("--data-dir", help="WritingBench data directory, or 'example' (overrides data.data_dir).")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="Candidates given by response files may lack answers for selected queries; they count "
        "as missing (shown as coverage) instead of failing.",
    )


def _execute(args: argparse.Namespace, generate: bool) -> int:
    from rich.console import Console

    import wbray.api as api
    from wbray.cli._progress import RunProgress

    console = Console(stderr=True)
    call = api.evaluate if generate else api.score
    with RunProgress(console) as progress:
        summary = call(
            args.config,
            out=args.out,
            limit=args.limit,
            data_dir=args.data_dir,
            overrides=args.override,
            address=args.address,
            allow_missing=args.allow_missing,
            on_progress=progress.update,
            on_event=lambda line: console.print(line, highlight=False),
        )
    return _report(summary, console)


def _report(summary: Any, console: Any) -> int:
    from rich.console import Console

    from wbray.aggregate import rich_tables

    if summary.leaderboard is None:
        console.print("[yellow]no scores to aggregate[/]")
        return 0
    out = Console() if Console().is_terminal else Console(width=160)
    for table in rich_tables(summary.leaderboard):
        out.print(table)
    rows = summary.manifest.row_counts if summary.manifest is not None else {}
    gen, sc = rows.get("generations"), rows.get("scores")
    console.print(
        f"generations: {gen.ok if gen else 0} ok, {gen.failed if gen else 0} failed; "
        f"scores: {sc.ok if sc else 0} ok, {sc.failed if sc else 0} failed (excluded from means); "
        f"wall {summary.wall_s:.1f} s"
    )
    if summary.reports:
        console.print(f"reports: {summary.reports[0].rsplit('/', 1)[0]}")
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
    # Only sealed stages: a crashed writer's parts never leave the run as if complete.
    # Sealed stages only, each model's current answers only (an older config or response file may
    # have left others stored).
    gens = read_generations(
        layout,
        ["model", "index", "sample", "response", "status", "error"],
        committed_only=True,
        current_only=True,
    )
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
