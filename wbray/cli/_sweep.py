"""``wbray sweep``: run a grid of evaluations as Ray jobs, watch it, cancel it, report it."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from wbray.errors import WbrayError

_VERBS = ("status", "cancel", "report")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sweep",
        help="Run a sweep (candidates x judges, each cell a run) as Ray jobs; status, cancel, report.",
        description="wbray sweep SWEEP.yaml [--address http://head:8265] [--out URI]: submit every cell "
        "that has not succeeded as a Ray job (at most max_concurrent at once; without --address, run "
        "them in this process), follow them, then write one leaderboard per judge. Re-running the same "
        "command resubmits only cells that did not succeed. "
        "wbray sweep status URI: the grid with each cell's state and rows. "
        "wbray sweep cancel URI: stop the sweep's jobs. "
        "wbray sweep report URI: write the leaderboards again here.",
    )
    p.add_argument("target", metavar="SWEEP.yaml|status|cancel|report", help="A sweep file, or a verb.")
    p.add_argument("uri", nargs="?", metavar="URI", help="The sweep prefix (for status, cancel, report).")
    p.add_argument(
        "--address",
        help="The Ray jobs API (the head's dashboard, e.g. http://127.0.0.1:8265): cells run as jobs "
        "there. Without it, cells run one after another in this process. For cancel: default, the "
        "address the sweep recorded.",
    )
    p.add_argument(
        "--out", help="Sweep prefix, local or s3:// (default: the sweep's out, then sweeps/<name>)."
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    def say(line: str) -> None:
        # Plain lines, never wrapped: a sweep's log is read in files and CI output, and grepped.
        print(line, file=sys.stderr, flush=True)

    if args.target in _VERBS:
        if not args.uri:
            raise WbrayError(f"wbray sweep {args.target}: give the sweep prefix (URI)")
        if args.out:
            raise WbrayError(
                f"wbray sweep {args.target}: --out is for running a sweep; give the prefix as URI"
            )
        if args.target == "status":
            return _status(args.uri)
        if args.target == "cancel":
            from wbray.sweeps import cancel_sweep

            cancel_sweep(args.uri, address=args.address, say=say)
            return 0
        return _report(args.uri, say)
    if args.uri:
        raise WbrayError(
            f"wbray sweep {args.target}: unexpected argument {args.uri!r} (use --out for the prefix)"
        )
    return _sweep(args, say)


def _sweep(args: argparse.Namespace, say: Any) -> int:
    from wbray.sweeps import run_sweep

    try:
        outcome = run_sweep(args.target, out=args.out, address=args.address, say=say)
    except KeyboardInterrupt:
        if args.address:
            say(
                "interrupted: submitted jobs keep running on the cluster; re-run the same command to "
                "follow them, or stop them with `wbray sweep cancel URI`"
            )
        raise
    _status(outcome.root)
    _deltas(outcome.root)
    if outcome.cancelled:
        raise WbrayError(f"sweep cancelled; re-run the same command to resume it ({outcome.root})")
    if outcome.failed:
        first = "; ".join(f"{c}: {why}" for c, why in list(outcome.failed.items())[:3])
        raise WbrayError(
            f"{len(outcome.failed)} of {len(outcome.statuses)} cell(s) failed ({first}); re-run the same "
            "command to resubmit them"
        )
    return 0


def _report(uri: str, say: Any) -> int:
    from wbray.sweeps import SweepLayout, write_sweep_report

    groups = write_sweep_report(SweepLayout.at(uri), say=say)
    if not groups:
        say("no succeeded cell has scores yet: nothing to report")
    for group in groups:
        for uri_ in group.reports:
            say(f"wrote {uri_}")
    _deltas(uri)
    return 0


def _console() -> Any:
    from rich.console import Console

    out = Console()
    # Logs and pipes have no width; rich would assume 80 columns and cut the table.
    return out if out.is_terminal else Console(width=160)


def _status(uri: str) -> int:
    from rich.table import Table

    from wbray.sweeps import sweep_status

    grid, record, rows = sweep_status(uri)
    where = f", jobs at {record.address}" if record is not None and record.address else ""
    table = Table(title=f"sweep {grid.name} ({uri}{where})")
    for name, justify in (
        ("cell", "left"),
        ("status", "left"),
        ("try", "right"),
        ("generate", "right"),
        ("score", "right"),
        ("updated", "right"),
        ("job / reason", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
        table.add_row(
            row.cell,
            row.status,
            str(row.attempt or ""),
            _rows(row.rows.get("generate")),
            _rows(row.rows.get("score")),
            time.strftime("%H:%M:%S", time.localtime(row.updated_at)) if row.updated_at else "",
            row.reason if row.reason else (row.job or ""),
        )
    out = _console()
    out.print(table)
    out.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())), highlight=False)
    return 0


def _rows(value: tuple[int, int] | None) -> str:
    return f"{value[0]}/{value[1]}" if value else ""


def _deltas(uri: str) -> None:
    """Print each group's delta table, when the sweep has a baseline and a leaderboard."""
    import io

    import pandas as pd
    from rich.table import Table

    from wbray.storage import exists, join, read_bytes
    from wbray.sweeps import SweepLayout, read_grid

    layout = SweepLayout.at(uri)
    grid = read_grid(layout)
    out = _console()
    for group in dict.fromkeys(c.group for c in grid.cells):
        target = layout.report(group)
        csv = join(target, "deltas.csv")
        if not exists(csv, layout.storage):
            if exists(join(target, "leaderboard.md"), layout.storage):
                out.print(f"leaderboard {group}: {target}", highlight=False)
            continue
        df = pd.read_csv(io.BytesIO(read_bytes(csv, layout.storage)))
        table = Table(title=f"{group}: difference to the baseline {grid.baseline} (x10), reports in {target}")
        for i, col in enumerate(df.columns):
            table.add_column(str(col), justify="left" if i == 0 else "right")
        for rec in df.itertuples(index=False):
            table.add_row(
                str(rec[0]),
                *(
                    "" if pd.isna(v) else (f"{v:+.2f}" if str(c).startswith("Δ") else f"{v:.2f}")
                    for c, v in zip(df.columns[1:], rec[1:], strict=True)
                ),
            )
        out.print(table)
