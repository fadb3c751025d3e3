"""``wbray config show`` (the resolved configuration) and ``wbray config check`` (validate files)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="Inspect configuration files.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    show = verbs.add_parser("show", help="Print a config file with defaults and overrides applied, as YAML.")
    show.add_argument("config", nargs="?", help="YAML config file (defaults when omitted).")
    add_override_option(show)
    show.set_defaults(func=_show)

    check = verbs.add_parser(
        "check",
        help="Validate config files: evaluation, serve, Ray Serve, launcher, sweep, KubeRay manifests.",
        description="Prints one line per file: ok, skip (with the reason) or FAIL with the file and the key "
        "at fault. Exits 1 if any file fails. Directories are searched for *.yaml / *.yml. What a file is "
        "comes from its content (e.g. `applications:` = Ray Serve config, `models:` = serve config, "
        "`apiVersion`/`kind` = Kubernetes manifests, `cluster_name` + `provider` = Ray cluster launcher "
        "config); --kind forces it.",
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="Config files or directories.")
    check.add_argument(
        "--kind",
        choices=["eval", "serve", "serve-native", "kuberay", "ray-cluster", "sweep"],
        help="Check every FILE as this kind instead of detecting it.",
    )
    check.set_defaults(func=_check)


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


def _check(args: argparse.Namespace) -> int:
    import sys

    from wbray.cli._check import check_file, expand

    files = expand(args.files)
    if not files:
        print("wbray config check: no YAML files found", file=sys.stderr)
        return 1
    failed = 0
    for path in files:
        result = check_file(path, args.kind)
        print(result.line(), flush=True)
        failed += not result.ok
    if failed:
        print(f"{failed} of {len(files)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0
