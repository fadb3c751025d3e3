"""The ``wbray`` command: a thin shell over the Python API, one verb per step.

Heavy imports happen inside each command. Errors wbray raises on purpose print as one line and exit
non-zero; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from wbray import __version__
from wbray.errors import WbrayError

# Each command group lives in its own module exposing ``register(subparsers)``.
from . import (
    _aggregate,
    _agreement,
    _browse,
    _config,
    _curation,
    _data,
    _inspect,
    _run,
    _runs,
    _serve,
    _sweep,
)

_GROUPS = (_data, _inspect, _run, _aggregate, _browse, _agreement, _curation, _runs, _serve, _config, _sweep)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by the docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="wbray", description="WritingBench evaluation on Ray: data, prompts, scoring, leaderboards."
    )
    parser.add_argument("--version", action="version", version=f"wbray {__version__}")
    parser.add_argument("--debug", action="store_true", help="Show tracebacks instead of one-line errors.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in _GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wbray`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except WbrayError as exc:
        if args.debug:
            raise
        # One line whatever the message holds: parts of it (keys, values) come from the user's files.
        text = str(exc).replace("\r", "\\r").replace("\n", "\\n")
        print(f"wbray: error: {text}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("wbray: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
