"""What a user reads when a run's pipeline stops: one line, never a Ray traceback.

Ray reports a stopped pipeline as a many-line exception: a task error carrying the remote
traceback, an actor that died with its node, Ray Data's no-progress timeout with a list of
operators. :func:`pipeline_error` turns any of them into one :class:`~wbray.errors.WbrayError`
line that says what stopped it and that the run resumes (finished parts are kept; a re-run
computes only what is missing). Pure: Ray's exception types are recognised by name, so this
module imports no Ray and is tested without a cluster.
"""

from __future__ import annotations

from wbray.errors import WbrayError

#: Said after every pipeline failure: parts already written stay, the manifest reads "failed".
RESUME_HINT = "finished rows are kept: re-run the same command to resume (only missing rows are computed)"
#: Ray Data's no-progress timeout, with the faults that cause it on a real cluster.
_STALLED = (
    "no progress within ray.no_progress_timeout_s (a node may have died, or no live node offers the "
    "resources a pool asks for: num_cpus, num_gpus, resources)"
)
#: Lines of Ray's messages worth keeping after the first (why an actor or a node died).
_REASONS = ("died because", "node was terminated", "was marked dead")
#: The most of one line a message keeps (Ray's lines can carry whole objects).
_MAX_LINE = 300


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _short(text: str) -> str:
    return text if len(text) <= _MAX_LINE else text[: _MAX_LINE - 3] + "..."


#: Exceptions that only carry another one: a task's error as Ray returns it, Ray Data's wrapper
#: of a user-code error.
_WRAPPERS = ("RayTaskError", "UserCodeException", "RayDataUserCodeException")


def _root(exc: BaseException) -> BaseException:
    """The exception a Ray task error carries, through every wrapper."""
    for _ in range(10):  # wrappers nest once or twice; the bound only guards against a cycle
        if not type(exc).__name__.startswith(_WRAPPERS):
            break
        inner = getattr(exc, "cause", None)
        inner = inner if isinstance(inner, BaseException) else exc.__cause__
        if inner is None:
            break
        exc = inner
    return exc


def describe(exc: BaseException) -> str:
    """One line saying what stopped the pipeline (no traceback, no object dumps)."""
    root = _root(exc)
    name = type(root).__name__
    if name == "ExecutionTimeoutError":
        return _STALLED
    lines = _lines(str(root))
    if isinstance(root, WbrayError):
        # wbray's messages are one line; Ray Data appends its retry advice on lines of its own.
        return lines[0] if lines else name
    first = lines[0] if lines else "no details"
    why = [line for line in lines[1:] if any(k in line for k in _REASONS)]
    return _short(" ".join([f"{name}: {first}", *why[:2]]))


def pipeline_error(exc: BaseException) -> WbrayError:
    """The one-line error a run raises when its pipeline stopped with ``exc``.

    A :class:`WbrayError` the driver raised on purpose (a config the cluster cannot run) is
    returned as is; one raised inside a stage (a row contract, an S3 error with its fix) keeps
    its message; anything else is described by :func:`describe`.
    """
    if isinstance(exc, WbrayError) and _root(exc) is exc:
        return exc
    return WbrayError(f"the run stopped: {describe(exc)}; {RESUME_HINT}")
