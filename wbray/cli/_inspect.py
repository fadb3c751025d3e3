"""``wbray inspect prompt``: show the exact judge messages for one (query, criterion, response)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from wbray.errors import WbrayError

if TYPE_CHECKING:
    from wbray.records import Criterion, Query


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("inspect", help="Show what wbray would send to a model.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    prompt = verbs.add_parser(
        "prompt",
        help="Print the judge messages for one query, criterion and response as JSON.",
        description="Render the judge prompt exactly as it would be sent, with the template version "
        "and data version that score rows record.",
    )
    prompt.add_argument("--index", type=int, required=True, metavar="N", help="Benchmark query index.")
    prompt.add_argument(
        "--criterion",
        required=True,
        metavar="K",
        help="Criterion name, or its 1-based position in the query's checklist.",
    )
    prompt.add_argument(
        "--response-file",
        required=True,
        metavar="F",
        help="File holding the candidate response (UTF-8); '-' reads standard input.",
    )
    prompt.add_argument(
        "--data-dir",
        default=None,
        metavar="D",
        help="WritingBench data directory, or 'example' for the bundled example "
        "(default: $WBRAY_DATA_DIR, then the download cache).",
    )
    prompt.add_argument(
        "--template",
        choices=("auto", "official", "builtin"),
        default="auto",
        help="Judge template: 'official' requires upstream's prompt in the data dir, 'builtin' is "
        "wbray's own wording, 'auto' (default) takes official when available.",
    )
    prompt.set_defaults(func=_prompt)


def _read_response(name: str) -> str:
    # Bytes decoded as UTF-8, never newline-translated: the judge must see the response as stored.
    if name == "-":
        buffer = getattr(sys.stdin, "buffer", None)
        data = buffer.read() if buffer is not None else sys.stdin.read().encode("utf-8")
        source = "standard input"
    else:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            raise WbrayError(f"--response-file {name}: cannot read ({exc.strerror})") from None
        source = name
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WbrayError(f"--response-file {source}: not valid UTF-8 (byte {exc.start})") from None


def _pick_criterion(query: Query, key: str) -> Criterion:
    # A name wins over a position, so a criterion literally named "2" stays reachable.
    for criterion in query.checklist:
        if criterion.name == key:
            return criterion
    if key.isdigit() and 1 <= int(key) <= len(query.checklist):
        return query.checklist[int(key) - 1]
    listed = "; ".join(f"{i}: {c.name!r}" for i, c in enumerate(query.checklist, start=1))
    raise WbrayError(
        f"--criterion {key!r}: query {query.index} has no such criterion; give a name or a "
        f"position 1-{len(query.checklist)} ({listed})"
    )


def _prompt(args: argparse.Namespace) -> int:
    from wbray.dataset import load_benchmark, resolve_data_dir
    from wbray.prompts import load_judge_template, render_judge_messages

    benchmark = load_benchmark(resolve_data_dir(args.data_dir))
    try:
        query = benchmark.get(args.index)
    except KeyError as exc:
        raise WbrayError(str(exc.args[0]) if exc.args else f"no query with index {args.index}") from None
    criterion = _pick_criterion(query, args.criterion)
    response = _read_response(args.response_file)
    template = load_judge_template(benchmark.root, args.template)
    if template.source == "builtin":
        why = (
            "as requested"
            if args.template == "builtin"
            else f"the official judge prompt was not found under {benchmark.root / 'prompts'}"
        )
        print(
            f"wbray: notice: {why}; using wbray's own builtin judge wording "
            "(scores are not comparable with published WritingBench results)",
            file=sys.stderr,
        )
    out = {
        "messages": render_judge_messages(template, query.query, criterion.item, response),
        "prompt_version": template.version,
        "template_source": template.source,
        "template_origin": template.origin,
        "index": query.index,
        "criterion": criterion.name,
        "data_version": benchmark.data_version,
    }
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0
