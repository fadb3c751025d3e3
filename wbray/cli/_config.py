"""``wbray config show``: print the resolved configuration."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="Inspect configuration files.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    show = verbs.add_parser("show", help="Print a config file with defaults and overrides applied, as YAML.")
    show.add_argument("config", nargs="?", help="YAML config file (defaults when omitted).")
    add_override_option(show)
    show.set_defaults(func=_show)


def add_override_option(parser: argparse.ArgumentParser) -> None:
    """The shared ``-o key.path=value`` option."""
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Dotted override applied after the file, e.g. -o judge.sampling.temperature=0 (repeatable).",
    )


def _show(args: argparse.Namespace) -> int:
    from wbray.config import dump_config, load_config

    print(dump_config(load_config(args.config, args.override)), end="")
    return 0
