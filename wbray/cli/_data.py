"""``wbray data download | validate | stats``: get, check and describe the benchmark data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wbray.dataset import DataStats


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``data`` command group."""
    p = sub.add_parser("data", help="Download, validate and describe WritingBench data.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    dl = verbs.add_parser(
        "download",
        help="Fetch the pinned upstream files, verify their hashes and extract the judge prompt.",
    )
    dl.add_argument(
        "--dest", type=Path, help="Target directory (default: the cache, where wbray finds it on its own)."
    )
    dl.add_argument(
        "--base-url",
        help="Raw-file server (default: $WBRAY_UPSTREAM_URL, else GitHub's raw host of X-PLUG/WritingBench).",
    )
    dl.add_argument("--timeout", type=float, default=60.0, help="Per-request timeout, seconds.")
    dl.set_defaults(func=_download)

    val = verbs.add_parser(
        "validate", help="Check a JSONL file or a data directory; print every defect as file:line."
    )
    val.add_argument("path", help="A .jsonl file or a data directory ('example' for the bundled example).")
    val.set_defaults(func=_validate)

    st = verbs.add_parser("stats", help="Counts by domain and language, and the query-length distribution.")
    st.add_argument("path", nargs="?", help="A data directory or a query .jsonl file.")
    st.add_argument(
        "--data-dir",
        help="Data directory, or 'example' (default: $WBRAY_DATA_DIR, then the download cache).",
    )
    st.add_argument("--json", action="store_true", help="Print machine-readable JSON instead of tables.")
    st.set_defaults(func=_stats)


def _download(args: argparse.Namespace) -> int:
    from wbray.dataset import UPSTREAM_COMMIT, download

    def progress(relpath: str, what: str) -> None:
        print(f"  {what:<10} {relpath}", file=sys.stderr)

    dest = download(args.dest, base_url=args.base_url, timeout=args.timeout, progress=progress)
    print(f"WritingBench data (upstream commit {UPSTREAM_COMMIT[:12]}) verified in {dest}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from wbray.dataset import example_dir, validate_path

    path = example_dir() if args.path == "example" else Path(args.path)
    defects = validate_path(path)
    for defect in defects:
        print(defect)
    if defects:
        files = len({d.path for d in defects})
        print(f"{len(defects)} defect(s) in {files} file(s) under {path}")
        return 1
    print(f"OK: no defects in {path}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from wbray.dataset import compute_stats, load_benchmark, load_queries
    from wbray.errors import WbrayError

    if args.path and args.data_dir:
        raise WbrayError("give either PATH or --data-dir, not both")
    target = args.path or args.data_dir
    requirements: dict[str, dict[str, int]] = {}
    if target and target != "example" and Path(target).is_file():
        source, version = str(target), None
        queries = load_queries(Path(target))
    else:
        bench = load_benchmark(target)
        source, version, queries = str(bench.root), bench.data_version, list(bench.queries)
        requirements = {
            name: {"queries": len(sub.r_indices), "criteria": sub.c_count}
            for name, sub in bench.requirements.items()
        }
    stats = compute_stats(queries)
    if args.json:
        doc = {"source": source, "data_version": version, **stats.to_dict(), "requirements": requirements}
        print(json.dumps(doc, ensure_ascii=False, indent=2))
        return 0
    _print_tables(stats, source, version, requirements)
    return 0


def _print_tables(
    stats: DataStats, source: str, version: str | None, requirements: dict[str, dict[str, int]]
) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    ver = f" (data version {version})" if version else ""
    console.print(f"[bold]{source}[/bold]{ver}: {stats.total:,} queries")

    def share(n: int) -> str:
        return f"{100 * n / stats.total:.1f}%" if stats.total else "-"

    table = Table(title="By domain1")
    table.add_column("domain1")
    table.add_column("queries", justify="right")
    table.add_column("share", justify="right")
    table.add_column("subdomains", justify="right")
    for d1, n in stats.by_domain1.items():
        table.add_row(d1, f"{n:,}", share(n), str(len(stats.domain2_by_domain1[d1])))
    console.print(table)

    table = Table(title="By domain2 (grouped under domain1)")
    table.add_column("domain1")
    table.add_column("domain2")
    table.add_column("queries", justify="right")
    for d1, sub in stats.domain2_by_domain1.items():
        for i, (d2, n) in enumerate(sub.items()):
            table.add_row(d1 if i == 0 else "", d2, f"{n:,}", end_section=i == len(sub) - 1)
    console.print(table)

    table = Table(title="By language")
    table.add_column("lang")
    table.add_column("queries", justify="right")
    table.add_column("share", justify="right")
    for lang, n in stats.by_lang.items():
        table.add_row(lang, f"{n:,}", share(n))
    console.print(table)

    if stats.query_length is not None:
        table = Table(title="Query length (characters)")
        values: dict[str, Any] = dict(stats.to_dict()["query_length"])
        for key in values:
            table.add_column(key, justify="right")
        table.add_row(*(f"{v:,.0f}" if isinstance(v, float) else f"{v:,}" for v in values.values()))
        console.print(table)

    if requirements:
        table = Table(title="Requirement subsets")
        table.add_column("requirement")
        table.add_column("queries (R)", justify="right")
        table.add_column("criteria (C)", justify="right")
        for name, counts in requirements.items():
            table.add_row(name, f"{counts['queries']:,}", f"{counts['criteria']:,}")
        console.print(table)
