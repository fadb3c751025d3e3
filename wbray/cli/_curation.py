"""``wbray criteria`` (criteria for new queries) and ``wbray curate`` (SFT data curation)."""

from __future__ import annotations

import argparse
import sys

from wbray.cli._config import add_override_option

#: Characters of a failure reason shown per line (the failures file holds them in full).
_REASON_CHARS = 160


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "criteria",
        help="Write 5 query-specific criteria for new writing queries: a benchmark of your own.",
        description="INPUT is JSONL or Parquet with `query` and optional `index`, `domain1`, `domain2`, "
        "`lang`. A model writes 5 criteria per query (asked with a JSON schema, validated strictly, "
        "re-asked up to criteria.max_reasks times). OUT becomes a benchmark directory "
        "(OUT/benchmark_query/benchmark_all.jsonl) that `wbray data validate OUT` accepts and "
        "`wbray run CFG --data-dir OUT` evaluates; queries without valid criteria go to "
        "OUT/criteria_failures.jsonl with the reason. Exits 1 when no query got criteria.",
    )
    _common(p)
    p.set_defaults(func=_criteria)

    c = sub.add_parser(
        "curate",
        help="Score prompt/response pairs with query-specific criteria and a judge; keep the best.",
        description="INPUT is JSONL or Parquet with `prompt` (or `query`) and `response`, optional `id`, "
        "`checklist` (criteria already written), `domain1`, `domain2`, `lang`. Criteria are written for "
        "rows without a checklist, every criterion is judged, a pair's score is the mean of its ok "
        "criterion scores. OUT gets kept, dropped and unscored sets in the input's format (every column "
        "kept, plus score, criteria_scores and checklist; unscored_reason says why), report.json, "
        "histogram.txt and histogram.html.",
    )
    _common(c)
    rule = c.add_mutually_exclusive_group(required=True)
    rule.add_argument(
        "--keep",
        type=float,
        metavar="F",
        help="Keep this fraction of the scored pairs, rounded down (the paper keeps 0.5); ties: earlier "
        "row first.",
    )
    rule.add_argument(
        "--min-score",
        type=float,
        metavar="S",
        help="Keep the scored pairs with a score of at least S (1-10).",
    )
    c.add_argument(
        "--data-dir",
        help="WritingBench data directory holding the official judge prompt (default: $WBRAY_DATA_DIR, "
        "then the download cache; else wbray's builtin wording).",
    )
    c.set_defaults(func=_curate)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help="JSONL or Parquet file (path or s3://).")
    p.add_argument("--out", required=True, metavar="DIR", help="Output directory (path or s3://).")
    p.add_argument(
        "--config",
        required=True,
        metavar="CFG",
        help="YAML with criteria: (engine, sampling, max_reasks, resources, defaults), judge: (curate), "
        "ray: and storage: sections.",
    )
    add_override_option(p)
    p.add_argument(
        "--address",
        help="Ray cluster to join (auto, ray://host:10001); default: ray.address, then $RAY_ADDRESS, else "
        "a private local cluster.",
    )


def _short(text: str) -> str:
    one = " ".join(text.split())
    return one if len(one) <= _REASON_CHARS else one[: _REASON_CHARS - 3] + "..."


def _progress(stage: str, done: int, total: int) -> None:
    print(f"\r{stage}: {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def _criteria(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wbray.criteria import generate_criteria

    console = Console(stderr=True)
    summary = generate_criteria(
        args.input,
        args.out,
        args.config,
        overrides=args.override,
        address=args.address,
        on_event=lambda line: console.print(line, highlight=False, markup=False),
        on_progress=lambda done, total: _progress("criteria", done, total),
    )
    print(
        f"criteria: {summary.queries} queries -> {summary.ok} with criteria, {len(summary.failed)} failed "
        f"(prompt {summary.prompt_version}, {summary.wall_s:.1f} s)"
    )
    for index, reason in summary.failed:
        print(f"  failed: index {index}: {_short(reason)}")
    if summary.failed:
        print(f"failures: {summary.failures_file}")
    if summary.benchmark is None:
        print("no query got valid criteria: nothing to evaluate", file=sys.stderr)
        return 1
    print(f"benchmark: {summary.benchmark}")
    print(f"next: wbray data validate {summary.out}; wbray run CONFIG --data-dir {summary.out}")
    return 0


def _curate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wbray.curate import curate

    console = Console(stderr=True)
    summary = curate(
        args.input,
        args.out,
        args.config,
        keep=args.keep,
        min_score=args.min_score,
        data_dir=args.data_dir,
        overrides=args.override,
        address=args.address,
        on_event=lambda line: console.print(line, highlight=False, markup=False),
        on_progress=_progress,
    )
    assert summary.selection is not None
    sel = summary.selection
    print(summary.text, end="")
    print(f"rule: {sel.rule}")
    if sel.cut is not None:
        tied, kept = sel.tied_at_cut
        ties = f"; {kept} of {tied} pairs tied at it kept" if tied > 1 else ""
        print(f"lowest kept score: {sel.cut:.3f}{ties}")
    reasons = ", ".join(f"{n} {kind}" for kind, n in sorted(summary.unscored_reasons.items()))
    print(
        f"pairs: {summary.pairs} = kept {summary.kept} + dropped {summary.dropped} + unscored "
        f"{summary.unscored}{f' ({reasons})' if reasons else ''}; {summary.wall_s:.1f} s"
    )
    for name in ("kept", "dropped", "unscored", "report", "histogram_html"):
        print(f"{name}: {summary.files[name]}")
    return 0
