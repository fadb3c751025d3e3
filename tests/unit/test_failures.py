"""What a user reads when a run's pipeline stops: one line, whatever Ray raised (no Ray needed:
Ray's exception types are recognised by name, so look-alikes stand in for them here)."""

from __future__ import annotations

import pytest

from wbray.errors import ConfigError, WbrayError
from wbray.pipelines import pipeline_error


class ExecutionTimeoutError(Exception):
    """Ray Data's no-progress timeout, as far as its name and message go."""


class ActorDiedError(Exception):
    """An actor that died with its node."""


class UserCodeException(Exception):
    """Ray Data's wrapper of a stage's own error."""


class RayTaskError(Exception):
    """Ray's carrier of a remote task's error (``cause``)."""

    def __init__(self, text: str, cause: BaseException) -> None:
        super().__init__(text)
        self.cause = cause


ACTOR_DIED = """The actor died unexpectedly before finishing this task.
\tclass_name: ProgressActor
\tactor_id: 1b88b06b1f8018f13976636307000000
\tpid: 11963
The actor died because its node has died. Node Id: bd69f5a6
\tthe actor's node was terminated unexpectedly: health check failed due to missing too many heartbeats"""
STALLED = """Dataset execution made no progress for at least 40s of scheduling time (timeout: 40s).
Operators still running:
  - MapBatches(EngineStage): 2 active task(s), 1 finished, 1 outputs taken"""
S3_DOWN = (
    "s3://b/run/scores/part-1.parquet: cannot reach the S3 endpoint http://127.0.0.1:9 (is the server up?)"
)


@pytest.mark.parametrize(
    ("raised", "says"),
    [
        (
            ExecutionTimeoutError(STALLED),
            "no progress within ray.no_progress_timeout_s (a node may have died",
        ),
        (
            ActorDiedError(ACTOR_DIED),
            "ActorDiedError: The actor died unexpectedly before finishing this task. The actor died "
            "because its node has died.",
        ),
        # A stage's WbrayError keeps its own line; Ray Data's retry advice after it is dropped.
        (
            RayTaskError("Traceback ...", WbrayError(S3_DOWN + "\nFailed to apply UDF transform after 1/1")),
            S3_DOWN,
        ),
        (RayTaskError("Traceback ...", UserCodeException("boom")), "UserCodeException: boom"),
    ],
)
def test_a_stopped_pipeline_is_one_line_that_says_what_and_how_to_resume(
    raised: Exception, says: str
) -> None:
    error = pipeline_error(raised)
    text = str(error)
    assert isinstance(error, WbrayError) and "\n" not in text and "Traceback" not in text
    assert text.startswith("the run stopped: ") and says in text
    assert text.endswith("re-run the same command to resume (only missing rows are computed)")
    assert len(text) < 600


def test_an_error_the_driver_raised_on_purpose_is_kept_as_is() -> None:
    mine = ConfigError("the run's pools need 2 CPUs at once but the cluster has 1")
    assert pipeline_error(mine) is mine
