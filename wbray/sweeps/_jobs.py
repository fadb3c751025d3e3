"""The Ray Job Submission API, behind the few calls a sweep makes (a seam: tests pass a fake).

``ray.job_submission`` is imported inside :class:`RayJobs` only, so the rest of the sweep code (and
``import wbray.sweeps``) stays free of Ray.
"""

from __future__ import annotations

from collections.abc import Mapping
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

    Args:
        address: The jobs API, e.g. ``http://head:8265`` (what ``ray job submit --address`` takes).
    """

    def __init__(self, address: str) -> None:
        self._address = address
        try:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(address)
        except Exception as exc:
            raise _error(address, exc) from None

    @property
    def address(self) -> str:
        return self._address

    def submit(self, request: JobRequest) -> bool:
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
                return False
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


def _error(address: str, exc: Exception) -> WbrayError:
    """One line for what goes wrong talking to a jobs API."""
    text = " ".join(str(exc).split())[:500]
    name = type(exc).__name__
    if name == "AuthenticationError" or "authentication" in text.lower():
        return WbrayError(
            f"Ray jobs API at {address}: authentication failed ({text}); set RAY_AUTH_MODE=token and "
            "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) for a cluster with token auth"
        )
    if isinstance(exc, ConnectionError) or "connect" in text.lower():
        return WbrayError(
            f"cannot reach the Ray jobs API at {address} ({text}); is the head's dashboard up "
            "(port 8265 by default), or a tunnel to it?"
        )
    return WbrayError(f"Ray jobs API at {address}: {name}: {text}")
