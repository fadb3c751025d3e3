"""The Ray Job Submission API, behind the few calls a sweep makes (a seam: tests pass a fake).

``ray.job_submission`` is imported inside :class:`RayJobs` only, so the rest of the sweep code (and
``import wbray.sweeps``) stays free of Ray.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from wbray.errors import WbrayError


@dataclass(frozen=True)
class JobView:
    """What the jobs API says about one job.

    Attributes:
        status: Ray's ``JobStatus`` value (``PENDING``, ``RUNNING``, ``SUCCEEDED``, ``FAILED``, ``STOPPED``).
        message: Ray's message (why it failed, who stopped it), if any.
    """

    status: str
    message: str | None = None


@dataclass(frozen=True)
class JobRequest:
    """One job to submit (the arguments of ``JobSubmissionClient.submit_job``)."""

    submission_id: str
    entrypoint: str
    runtime_env: Mapping[str, Any]
    num_cpus: float
    num_gpus: float
    memory_mb: int | None
    metadata: Mapping[str, str]


class Jobs(Protocol):
    """The calls a sweep makes to a Ray jobs API."""

    @property
    def address(self) -> str: ...

    def submit(self, request: JobRequest) -> bool:
        """Submit; False when a job with this submission id exists already (nothing submitted)."""
        ...

    def view(self, submission_id: str) -> JobView | None:
        """The job's status, or None when the cluster does not know it."""
        ...

    def stop(self, submission_id: str) -> bool:
        """Ask the job to stop; False when it was not running."""
        ...


class RayJobs:
    """:class:`Jobs` over ``ray.job_submission.JobSubmissionClient``.

    A submission the head refuses for a moment (its job agent not registered yet, which happens on
    a busy or freshly started head: HTTP 500 "No available agent ... try again later", or a 503) is
    tried again after ``retry_delays_s``; every other error is reported at once.

    Args:
        address: The jobs API, e.g. ``http://head:8265`` (what ``ray job submit --address`` takes).
        retry_delays_s: Waits before each further try of a refused submission.
        client: A ``JobSubmissionClient`` to use instead of making one (tests).
    """

    def __init__(
        self,
        address: str,
        *,
        retry_delays_s: Sequence[float] = (1, 2, 4, 8, 15, 30),
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._address = address
        self._delays = tuple(retry_delays_s)
        self._sleep = sleep
        if client is not None:
            self._client = client
            return
        try:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(address)
        except Exception as exc:
            raise _error(address, exc) from None

    @property
    def address(self) -> str:
        return self._address

    def submit(self, request: JobRequest) -> bool:
        for delay in (*self._delays, None):
            try:
                return self._submit_once(request)
            except _Refused as refused:
                if delay is None:
                    raise _error(self._address, refused.exc) from None
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _submit_once(self, request: JobRequest) -> bool:
        try:
            self._client.submit_job(
                entrypoint=request.entrypoint,
                submission_id=request.submission_id,
                runtime_env=dict(request.runtime_env),
                entrypoint_num_cpus=request.num_cpus,
                entrypoint_num_gpus=request.num_gpus,
                entrypoint_memory=request.memory_mb * 1024 * 1024 if request.memory_mb else None,
                metadata=dict(request.metadata),
            )
        except Exception as exc:
            if "already exists" in str(exc):
                return False  # also when an earlier, refused-looking try did get through
            if _momentary(exc):
                raise _Refused(exc) from None
            raise _error(self._address, exc) from None
        return True

    def view(self, submission_id: str) -> JobView | None:
        try:
            info = self._client.get_job_info(submission_id)
        except Exception as exc:
            if "does not exist" in str(exc) or "404" in str(exc):
                return None
            raise _error(self._address, exc) from None
        status = getattr(info.status, "value", info.status)
        return JobView(status=str(status), message=info.message)

    def stop(self, submission_id: str) -> bool:
        try:
            return bool(self._client.stop_job(submission_id))
        except Exception as exc:
            if "does not exist" in str(exc):
                return False
            raise _error(self._address, exc) from None


class _Refused(Exception):
    """A submission the head refused for now (see :func:`_momentary`)."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(str(exc))
        self.exc = exc


def _momentary(exc: Exception) -> bool:
    """Whether the jobs API asked to try again later (no job agent yet, or unavailable)."""
    text = str(exc)
    return "No available agent" in text or "try again later" in text or "status code 503" in text


def _error(address: str, exc: Exception) -> WbrayError:
    """One line for what goes wrong talking to a jobs API."""
    text = " ".join(str(exc).split())[:500]
    name = type(exc).__name__
    if name == "AuthenticationError" or "authentication" in text.lower():
        return WbrayError(
            f"Ray jobs API at {address}: authentication failed ({text}); set RAY_AUTH_MODE=token and "
            "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) for a cluster with token auth"
        )
    if "No available agent" in text:
        return WbrayError(
            f"Ray jobs API at {address}: the head's job agent is not running ({text}); see the head's "
            "logs/dashboard_agent.log: e.g. another Ray node on the same machine holds the agent's "
            "port (52365; start the head with --dashboard-agent-listen-port)"
        )
    if isinstance(exc, ConnectionError) or "connect" in text.lower():
        return WbrayError(
            f"cannot reach the Ray jobs API at {address} ({text}); is the head's dashboard up "
            "(port 8265 by default), or a tunnel to it?"
        )
    return WbrayError(f"Ray jobs API at {address}: {name}: {text}")
