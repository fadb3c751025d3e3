"""``wbray aggregate``: build the leaderboard from score files or runs (local or s3://)."""

from __future__ import annotations

import argparse

from wbray.errors import WbrayError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "aggregate",
        help="Aggregate score files or runs into the leaderboard (Excel, Markdown, CSV, HTML, terminal).",
        description="Each SCORES is an upstream score file (model = file stem), a directory of them, an "
        "export directory holding scores/, a wbray run (local or s3://), or a prefix holding many runs. "
        "Numbers follow upstream calculate_scores.py exactly. A run's benchmark is the one its manifest "
        "records (bundled example, recorded directory, $WBRAY_DATA_DIR or the download cache).",
    )
    p.add_argument(
        "scores",
        nargs="+",
        metavar="SCORES",
        help="Score files, directories, runs or run prefixes; 'example' names the bundled example results.",
    )
    p.add_argument(
        "--data-dir",
        help="WritingBench data directory, or 'example'; overrides what runs recorded (default: the runs' "
        "recorded data, else $WBRAY_DATA_DIR, then the download cache).",
    )
    p.add_argument("--judge", help="For runs holding several judges: the judge to aggregate.")
    p.add_argument(
        "--resamples",
        type=int,
        default=1000,
        help="Bootstrap resamples (clustered by query) for the score ± half-width intervals; 0 = none.",
    )
    p.add_argument("--seed", type=int, default=0, help="Seed of the bootstrap (reproducible intervals).")
    p.add_argument(
        "--baseline",
        metavar="MODEL",
        help="Compare every model with this one (paired, on the queries both have; default: the leader).",
    )
    p.add_argument(
        "--out",
        help="Write every report (xlsx, per-query parquet, md, csv, html) under this directory or "
        "s3:// prefix.",
    )
    p.add_argument(
        "--xlsx",
        help="Write the Excel workbook here (first sheet = upstream's columns); the per-query table goes "
        "beside it as <name>.per_query.parquet.",
    )
    p.add_argument("--md", help="Write a Markdown report here.")
    p.add_argument("--csv", help="Write upstream's table as CSV here.")
    p.add_argument("--html", help="Write the self-contained HTML report (with plots) here.")
    p.add_argument(
        "--per-query",
        metavar="PATH",
        help="Write the per-query table (one row per model x query) here: .parquet or .csv.",
    )
    p.add_argument(
        "--per-query-sheet",
        action="store_true",
        help="Also put the per-query table in the workbook (slow and large for many models).",
    )
    p.add_argument(
        "--dedupe",
        action="store_true",
        help="Score files: keep only the last line of a repeated index (upstream counts every line).",
    )
    p.add_argument(
        "--require-complete",
        action="store_true",
        help="Fail (exit 1, nothing written) when a model was scored on fewer queries than selected.",
    )
    p.add_argument(
        "--prices",
        help="YAML of {name: {prompt_per_mtok, completion_per_mtok}} for models and judges: adds costs "
        "to the token ledger.",
    )
    p.set_defaults(func=_run)


#: Repeated-index notes shown one per line before "... and N more".
_SHOWN_NOTES = 10
#: Models shown in the terminal tables, best first (the reports hold every model): rich renders
#: ~4 ms per row of the two tables.
_SHOWN_MODELS = 20


def _run(args: argparse.Namespace) -> int:
    if not (args.out or args.xlsx or args.md or args.csv or args.html or args.per_query):
        raise WbrayError(
            "aggregate: give at least one output: --out DIR_OR_S3_PREFIX, --xlsx, --md, --csv, --html or "
            "--per-query"
        )
    import wbray.api as api

    built = api.aggregate(
        args.scores,
        data_dir=args.data_dir,
        judge=args.judge,
        dedupe=args.dedupe,
        resamples=args.resamples,
        seed=args.seed,
        baseline=args.baseline,
    )
    board, ledger = built.board, built.ledger
    from rich.console import Console

    from wbray.aggregate import (
        price_ledger,
        rich_tables,
        write_csv,
        write_html,
        write_markdown,
        write_per_query,
        write_reports,
        write_xlsx,
    )
    from wbray.aggregate._report import coverage_note, per_query_path

    err = Console(stderr=True, highlight=False)
    for note in built.notes[:_SHOWN_NOTES]:
        err.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    if len(built.notes) > _SHOWN_NOTES:
        err.print(f"[yellow]note:[/] ... and {len(built.notes) - _SHOWN_NOTES} more", soft_wrap=True)
    if args.require_complete and board.incomplete:
        shown = ", ".join(f"{m} {board.coverage_text(m)}" for m in board.incomplete)
        raise WbrayError(f"--require-complete: incomplete models (queries scored/selected): {shown}")
    if args.prices and ledger is not None:
        ledger = price_ledger(ledger, _read_prices(args.prices))
    console = Console()
    if not console.is_terminal:
        # Logs and pipes have no width; rich would assume 80 columns and cut the headers.
        console = Console(width=160)
    for table in rich_tables(board, limit=_SHOWN_MODELS):
        console.print(table)
    written = []
    if args.xlsx:
        written.append(write_xlsx(board, args.xlsx, ledger, per_query_sheet=args.per_query_sheet))
        written.append(write_per_query(board, per_query_path(args.xlsx)))
    for path, writer in ((args.md, write_markdown), (args.csv, write_csv), (args.html, write_html)):
        if path:
            written.append(writer(board, path, ledger))
    if args.per_query:
        written.append(write_per_query(board, args.per_query))
    for path in written:
        console.print(f"wrote {path}", soft_wrap=True)
    if args.out:
        for uri in write_reports(board, args.out, ledger):
            console.print(f"wrote {uri}", soft_wrap=True)
    incomplete = coverage_note(board)
    if incomplete:
        console.print(f"[yellow]{incomplete}[/]")
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
