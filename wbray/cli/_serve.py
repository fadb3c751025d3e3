"""``wbray serve``: run the Serve application a config describes; ``status`` and ``shutdown``."""

from __future__ import annotations

import argparse
import time
from typing import Any

from wbray.cli._config import add_override_option
from wbray.errors import WbrayError

#: Words taken as verbs instead of a config path (write ``./status`` for a file of that name).
_VERBS = ("status", "shutdown")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="Serve chat models and the WritingBench critic over HTTP (Ray Serve).",
        description="`wbray serve CONFIG` starts the application in CONFIG (e.g. configs/serve/local.yaml) "
        "and blocks until Ctrl-C (or returns at once with --detach on an existing cluster). "
        "`wbray serve status` lists the applications; `wbray serve shutdown` stops Serve.",
    )
    p.add_argument("target", metavar="CONFIG|status|shutdown", help="A serve config file, or a verb.")
    add_override_option(p)
    p.add_argument(
        "--address", help="Ray cluster address (default: start a local cluster; status/shutdown: 'auto')."
    )
    p.add_argument(
        "--detach",
        action="store_true",
        help="Return once the application is running (needs --address: a local cluster would end "
        "with this command).",
    )
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    if args.target == "status":
        return _status(args.address)
    if args.target == "shutdown":
        return _shutdown(args.address)
    return _start(args)


def _start(args: argparse.Namespace) -> int:
    from wbray.cli._ray import ray_session
    from wbray.config import RayConfig
    from wbray.serve import build_application, load_serve_config

    config = load_serve_config(args.target, list(args.override))
    if args.detach and not args.address:
        raise WbrayError(
            "--detach needs --address: without it the local cluster (and the application) would end "
            "with this command; start one with `ray start --head` and pass --address auto"
        )
    app = build_application(config)  # config and token errors surface before Ray starts
    with ray_session(RayConfig(), args.address):
        serve = _serve_api()

        serve.start(http_options={"host": config.http.host, "port": config.http.port})
        serve.run(app, name=config.name, route_prefix=config.http.route_prefix, blocking=False)
        _print_urls(config)
        if args.detach:
            return 0
        print("serving; press Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            if args.address:
                # A shared cluster may serve other applications: remove only ours.
                serve.delete(config.name)
            else:
                serve.shutdown()
            print(f"stopped {config.name}")
    return 0


def _serve_api() -> Any:
    # Typed as Any: Ray's partial annotations make mypy reject ordinary Serve calls.
    from ray import serve

    return serve


def _print_urls(config: Any) -> None:
    host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::") else config.http.host
    base = f"http://{host}:{config.http.port}{config.http.route_prefix.rstrip('/')}"
    print(f"application {config.name!r} is running at {base}/")
    print(f"  GET  {base}/health")
    print(f"  GET  {base}/v1/models            models: {', '.join(m.name for m in config.models)}")
    print(f"  POST {base}/v1/chat/completions")
    if config.critic is not None:
        print(f"  POST {base}/v1/score              judge: {config.critic.name} ({config.critic.model})")
    if config.auth.token_env:
        print(f"  auth: Authorization: Bearer ${config.auth.token_env} (every route but /health)")


def _status(address: str | None) -> int:
    from wbray.cli._ray import ray_session
    from wbray.config import RayConfig

    with ray_session(RayConfig(), address or "auto"):
        serve = _serve_api()

        apps = serve.status().applications
        if not apps:
            print("no Serve applications running")
            return 0
        for name, app in apps.items():
            message = f" - {app.message}" if app.message else ""
            print(f"{name}: {_word(app.status)}{message}")
            for dep_name, dep in app.deployments.items():
                replicas = (
                    ", ".join(f"{n} {s}" for s, n in sorted(dep.replica_states.items())) or "no replicas"
                )
                message = f" - {dep.message}" if dep.message else ""
                print(f"  {dep_name}: {_word(dep.status)} ({replicas}){message}")
    return 0


def _word(status: Any) -> str:
    """``RUNNING`` rather than ``ApplicationStatus.RUNNING``."""
    return str(getattr(status, "value", status))


def _shutdown(address: str | None) -> int:
    from wbray.cli._ray import ray_session
    from wbray.config import RayConfig

    with ray_session(RayConfig(), address or "auto"):
        serve = _serve_api()

        serve.shutdown()
    print("Serve shut down")
    return 0
