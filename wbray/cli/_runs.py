"""``wbray runs list``: the runs under a local directory or an s3:// prefix."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("runs", help="List runs under a directory or s3:// prefix.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    ls = verbs.add_parser("list", help="Runs with status, models, judges, row counts and times.")
    ls.add_argument("uri", metavar="URI", help="A directory or s3:// prefix holding runs.")
    ls.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    ls.set_defaults(func=_list)


def _when(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "–"
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def describe_runs(uri: str) -> list[dict[str, Any]]:
    """One summary per run under ``uri`` (from each manifest and the stage directories)."""
    from wbray.storage import RunLayout, discover_runs, judges, read_manifest

    out = []
    for root in discover_runs(uri):
        layout = RunLayout.at(root)
        manifest = read_manifest(layout)
        if manifest is None:
            continue
        counts = {k: v.model_dump() for k, v in manifest.row_counts.items()}
        out.append(
            {
                "run": root,
                "status": manifest.status,
                "models": manifest.models,
                "judges": judges(layout),
                "generations": counts.get("generations", {}),
                "scores": counts.get("scores", {}),
                "created": manifest.created_at,
                "finished": manifest.finished_at,
                "data_version": manifest.data.data_version,
            }
        )
    return out


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    runs = describe_runs(args.uri)
    if args.json:
        print(json.dumps(runs, indent=2, default=str))
        return 0
    table = Table(title=f"runs under {args.uri}")
    columns = ("run", "status", "models", "judges", "generations ok/failed", "scores ok/failed", "created")
    for col in columns:
        table.add_column(col, overflow="fold")
    for r in runs:
        g, s = r["generations"], r["scores"]
        table.add_row(
            r["run"],
            r["status"],
            ", ".join(map(str, r["models"])) or "–",
            ", ".join(r["judges"]) or "–",
            f"{g.get('ok', 0)}/{g.get('failed', 0)}" if g else "–",
            f"{s.get('ok', 0)}/{s.get('failed', 0)}" if s else "–",
            _when(r["created"]),
        )
    console = Console() if Console().is_terminal else Console(width=160)
    console.print(table if runs else f"no runs under {args.uri}")
    return 0
