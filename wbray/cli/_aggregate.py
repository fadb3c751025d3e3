"""``wbray aggregate``: build the leaderboard from score files."""

from __future__ import annotations

import argparse

from wbray.errors import WbrayError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "aggregate",
        help="Aggregate score files into the leaderboard (Excel, Markdown, CSV, terminal).",
        description="Each SCORES is an upstream score file (model = file stem), a directory of them, or "
        "an export directory holding scores/, or a wbray run directory. Numbers follow upstream "
        "calculate_scores.py exactly.",
    )
    p.add_argument(
        "scores",
        nargs="+",
        metavar="SCORES",
        help="Score files or directories; 'example' names the bundled example results.",
    )
    p.add_argument(
        "--data-dir",
        help="WritingBench data directory, or 'example' (default: $WBRAY_DATA_DIR, then the download cache).",
    )
    p.add_argument("--judge", help="For run directories holding several judges: the judge to aggregate.")
    p.add_argument("--xlsx", help="Write the Excel workbook here (first sheet = upstream's columns).")
    p.add_argument("--md", help="Write a Markdown report here.")
    p.add_argument("--csv", help="Write upstream's table as CSV here.")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wbray.aggregate import (
        aggregate,
        read_score_inputs,
        rich_tables,
        write_csv,
        write_markdown,
        write_xlsx,
    )
    from wbray.dataset import example_dir, load_benchmark

    if not (args.xlsx or args.md or args.csv):
        raise WbrayError("aggregate: give at least one output: --xlsx OUT.xlsx, --md OUT.md or --csv OUT.csv")
    bench = load_benchmark(args.data_dir)
    inputs = [example_dir() / "results" if s == "example" else s for s in args.scores]
    evaluations = read_score_inputs(inputs, judge=args.judge)
    board = aggregate(evaluations, bench.queries, bench.requirements)
    console = Console()
    if not console.is_terminal:
        # Logs and pipes have no width; rich would assume 80 columns and cut the headers.
        console = Console(width=160)
    for table in rich_tables(board):
        console.print(table)
    for path, writer in ((args.xlsx, write_xlsx), (args.md, write_markdown), (args.csv, write_csv)):
        if path:
            console.print(f"wrote {writer(board, path)}")
    failed = int(board.failures["evaluations_failed"].sum())
    if failed:
        console.print(
            f"[yellow]{failed} failed evaluations excluded from the means (see the Failures sheet)[/]"
        )
    return 0
