"""``wbray aggregate``: build the leaderboard from score files or runs (local or s3://)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from wbray.errors import WbrayError

if TYPE_CHECKING:
    import pandas as pd

    from wbray.aggregate import Leaderboard


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "aggregate",
        help="Aggregate score files or runs into the leaderboard (Excel, Markdown, CSV, HTML, terminal).",
        description="Each SCORES is an upstream score file (model = file stem), a directory of them, an "
        "export directory holding scores/, a wbray run (local or s3://), or a prefix holding many runs. "
        "Numbers follow upstream calculate_scores.py exactly.",
    )
    p.add_argument(
        "scores",
        nargs="+",
        metavar="SCORES",
        help="Score files, directories, runs or run prefixes; 'example' names the bundled example results.",
    )
    p.add_argument(
        "--data-dir",
        help="WritingBench data directory, or 'example' (default: $WBRAY_DATA_DIR, then the download cache).",
    )
    p.add_argument("--judge", help="For runs holding several judges: the judge to aggregate.")
    p.add_argument(
        "--out", help="Write every report (xlsx, md, csv, html) under this directory or s3:// prefix."
    )
    p.add_argument("--xlsx", help="Write the Excel workbook here (first sheet = upstream's columns).")
    p.add_argument("--md", help="Write a Markdown report here.")
    p.add_argument("--csv", help="Write upstream's table as CSV here.")
    p.add_argument("--html", help="Write the self-contained HTML report (with plots) here.")
    p.add_argument(
        "--prices",
        help="YAML of {name: {prompt_per_mtok, completion_per_mtok}} for models and judges: adds costs "
        "to the token ledger.",
    )
    p.set_defaults(func=_run)


def build(
    scores: list[str], data_dir: str | None, judge: str | None
) -> tuple[Leaderboard, pd.DataFrame | None]:
    """Read the inputs and aggregate them: (leaderboard, token ledger or None)."""
    from pathlib import Path

    import pandas as pd

    from wbray.aggregate import aggregate, read_score_inputs
    from wbray.dataset import example_dir, load_benchmark
    from wbray.storage import RunLayout, discover_runs, is_s3, read_manifest, token_ledger

    bench = load_benchmark(data_dir)
    inputs = [str(example_dir() / "results") if s == "example" else s for s in scores]
    runs = [run for item in inputs if is_s3(item) or Path(item).is_dir() for run in discover_runs(item)]
    for run in runs:
        # A run is known by its manifest; a truncated one fails here, before any report is written.
        read_manifest(RunLayout.at(run))
    evaluations = read_score_inputs(inputs, judge=judge)
    board = aggregate(evaluations, bench.queries, bench.requirements)
    ledgers = [token_ledger(RunLayout.at(run), judge) for run in runs]
    ledger = pd.concat(ledgers, ignore_index=True) if ledgers else None
    return board, ledger


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wbray.aggregate import (
        price_ledger,
        rich_tables,
        write_csv,
        write_html,
        write_markdown,
        write_reports,
        write_xlsx,
    )

    if not (args.out or args.xlsx or args.md or args.csv or args.html):
        raise WbrayError(
            "aggregate: give at least one output: --out DIR_OR_S3_PREFIX, --xlsx, --md, --csv or --html"
        )
    board, ledger = build(args.scores, args.data_dir, args.judge)
    if args.prices and ledger is not None:
        ledger = price_ledger(ledger, _read_prices(args.prices))
    console = Console()
    if not console.is_terminal:
        # Logs and pipes have no width; rich would assume 80 columns and cut the headers.
        console = Console(width=160)
    for table in rich_tables(board):
        console.print(table)
    outputs = (
        (args.xlsx, write_xlsx),
        (args.md, write_markdown),
        (args.csv, write_csv),
        (args.html, write_html),
    )
    for path, writer in outputs:
        if path:
            console.print(f"wrote {writer(board, path, ledger)}")
    if args.out:
        for uri in write_reports(board, args.out, ledger):
            console.print(f"wrote {uri}")
    failed = int(board.failures["evaluations_failed"].sum())
    if failed:
        console.print(
            f"[yellow]{failed} failed evaluations excluded from the means (see the Failures sheet)[/]"
        )
    return 0


def _read_prices(path: str) -> dict[str, dict[str, float]]:
    from pathlib import Path

    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise WbrayError(f"{path}: cannot read prices ({exc})") from None
    if not isinstance(data, dict):
        raise WbrayError(f"{path}: expected a mapping of name -> {{prompt_per_mtok, completion_per_mtok}}")
    out: dict[str, dict[str, float]] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or set(entry) - {"prompt_per_mtok", "completion_per_mtok"}:
            raise WbrayError(f"{path}: {name}: use the keys prompt_per_mtok and completion_per_mtok")
        try:
            out[str(name)] = {k: float(v) for k, v in entry.items()}
        except (TypeError, ValueError):
            raise WbrayError(f"{path}: {name}: prices must be numbers") from None
    return out
