"""``wbray agreement``: how often a judge agrees with human judgments, under three criteria modes."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from wbray.cli._config import add_override_option
from wbray.errors import ConfigError, WbrayError

if TYPE_CHECKING:
    from wbray.config import JudgeConfig


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "agreement",
        help="Judge-human agreement: score human-judged responses and compare preferences.",
        description="HUMAN_FILE is JSONL of pairwise preferences ({index|query, response_a, response_b, "
        "preferred: a|b|tie}) or of scored responses ({index|query, response, score}); 'example' names the "
        "bundled example (on the example benchmark). The judge scores every response under each criteria "
        "mode; the agreement rate is the share of human-decisive pairs where the judge prefers the same "
        "response (judge ties count as disagreement). Runs the judge in this process (no Ray).",
    )
    p.add_argument("human_file", metavar="HUMAN_FILE", help="Human judgments (JSONL), or 'example'.")
    p.add_argument(
        "--judge-config",
        required=True,
        metavar="CFG",
        help="YAML with the judge: a wbray config (its judge: section is used) or a judge section alone.",
    )
    add_override_option(p)
    p.add_argument(
        "--modes",
        default="global,domain,query",
        help="Comma-separated criteria modes among global, domain, query (default: all three).",
    )
    p.add_argument(
        "--data-dir",
        help="Benchmark for rows that give an index (default for 'example': the example benchmark).",
    )
    p.add_argument("--rubrics", help="JSON rubrics file for the global and domain modes (default: bundled).")
    p.add_argument(
        "--out", help="Write the full report (summary and every pair) as JSON here (path or s3://)."
    )
    p.set_defaults(func=_run)


def _judge_config(path: str, overrides: list[str]) -> JudgeConfig:
    from pathlib import Path

    import yaml

    from wbray.config import JudgeConfig, load_config

    try:
        tree = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    # A run config holds a judge: section; a bare judge section holds engine:, name: and so on.
    if isinstance(tree, dict) and "judge" in tree:
        return load_config(path, overrides).judge
    return load_config(path, overrides, JudgeConfig)


def _modes(text: str) -> list[str]:
    from wbray.agreement import MODES

    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise WbrayError(f"--modes {text!r}: choose among {', '.join(MODES)} (comma-separated)")
    return list(dict.fromkeys(modes))


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from rich.console import Console
    from rich.table import Table

    from wbray.agreement import example_file, judge_agreement, load_human_judgments, load_rubrics
    from wbray.dataset import load_benchmark
    from wbray.engines import create_engine
    from wbray.prompts import load_judge_template
    from wbray.storage import write_bytes

    modes = _modes(args.modes)
    judge = _judge_config(args.judge_config, list(args.override))
    if judge.engine is None:
        raise ConfigError(f"{args.judge_config}: the judge has no engine (set judge.engine)")
    is_example = args.human_file == "example"
    human_path = str(example_file()) if is_example else args.human_file
    data_dir = args.data_dir or ("example" if is_example else None)
    bench = load_benchmark(data_dir) if data_dir else None
    human = load_human_judgments(human_path, bench)
    template = load_judge_template(bench.root if bench else None, judge.template)
    rubrics = load_rubrics(args.rubrics)

    def progress(done: int, total: int) -> None:
        print(f"\rjudged {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    engine = create_engine(judge.engine)

    async def go() -> Any:
        try:
            return await judge_agreement(
                human, engine, judge, template, modes=modes, rubrics=rubrics, progress=progress
            )
        finally:
            await engine.close()

    report = asyncio.run(go())
    console = Console() if Console().is_terminal else Console(width=160)
    table = Table(title=f"Judge-human agreement ({human.kind}, {len(human.pairs)} pairs, judge {judge.name})")
    for col in ("mode", "domain1", "pairs", "scored", "decisive", "agree", "judge ties", "rate", "with ties"):
        table.add_column(col, justify="left" if col in ("mode", "domain1") else "right")
    for r in report.summary.to_dict("records"):
        table.add_row(
            r["mode"],
            r["domain1"],
            *(str(r[k]) for k in ("pairs", "scored", "decisive", "agree", "judge_ties")),
            *(("–" if r[k] != r[k] else f"{r[k]:.1%}") for k in ("rate", "rate_with_ties")),
        )
    console.print(table)
    failed = int(report.judging["failed"].sum()) if len(report.judging) else 0
    if failed:
        console.print(f"[yellow]{failed} judge calls failed; their responses count as unscored[/]")
    if args.out:
        write_bytes(args.out, json.dumps(report.to_dict(), ensure_ascii=False, indent=2).encode("utf-8"))
        console.print(f"wrote {args.out}")
    return 0
