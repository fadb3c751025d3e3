"""A judge actor dies mid-batch (issue 11): killed through Ray (``ray.kill``, restart allowed) or
its worker process SIGKILLed. Ray restarts the actor and retries the batch that was in flight;
no row is lost, none is written twice, and the verdicts equal an uninterrupted run's.

The kill is placed exactly: the scripted endpoint kills the process that sent the judge's sixth
request (the first of the second batch), found from the request's TCP connection, while that
request is still unanswered — so a batch is provably in flight when its actor dies.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.helpers.faults import Endpoint, is_judge, pid_of_client, run_config
from tests.helpers.on_disk import expected_ids, rows_on_disk
from tests.helpers.scripted_openai import ScriptedOpenAIServer
from wbray.config import load_config
from wbray.storage import RunLayout, read_manifest

pytestmark = pytest.mark.integration

INDICES = [1, 2, 3]
#: The judge request whose sender dies: the first of the second batch of five.
KILL_AT = 6
COLUMNS = ("score", "status", "reason", "error")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[Endpoint, ScriptedOpenAIServer]]:
    script = Endpoint()
    with ScriptedOpenAIServer(script) as srv:
        yield script, srv


def _results(out: Path) -> pd.DataFrame:
    rows = rows_on_disk(str(out / "scores"), COLUMNS).rows
    return pd.DataFrame(rows).drop(columns=["part"]).sort_values("row_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(
    ray_cluster: None,
    endpoint: tuple[Endpoint, ScriptedOpenAIServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> pd.DataFrame:
    import wbray

    script, srv = endpoint
    script.reset()
    tmp = tmp_path_factory.mktemp("reference")
    cfg = load_config(run_config(tmp / "cfg.yaml", srv.base_url, indices=INDICES))
    wbray.evaluate(cfg, out=str(tmp / "run"))
    return _results(tmp / "run")


def _kill_ray(pid: int) -> None:
    import ray
    from ray._private.state import actors

    (actor,) = [a for a in actors().values() if a["Pid"] == pid and a["State"] == "ALIVE"]
    assert "EngineStage" in actor["ActorClassName"]
    # What ray.kill(handle, no_restart=False) does; Ray Data keeps the handles of its pool's
    # actors to itself, so the actor is named by the id Ray's actor table gives.
    ray._private.worker.global_worker.core_worker.kill_actor(ray.ActorID.from_hex(actor["ActorID"]), False)


def _kill_process(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("kill", [_kill_ray, _kill_process], ids=["ray.kill", "SIGKILL"])
def test_a_killed_judge_actor_is_restarted_and_its_batch_retried(
    reference: pd.DataFrame,
    endpoint: tuple[Endpoint, ScriptedOpenAIServer],
    tmp_path: Path,
    kill: Any,
) -> None:
    import wbray

    script, srv = endpoint
    script.reset()
    killed: list[int] = []
    seen = [0]
    lock = threading.Lock()

    def on_request(body: Any) -> None:
        if not is_judge(body):
            return
        with lock:
            seen[0] += 1
            if seen[0] != KILL_AT:
                return
        # This request is unanswered until the kill is done: its batch is in flight.
        pid = pid_of_client(srv.current_peer()[1], srv.port)
        killed.append(pid)
        kill(pid)

    script.on_request = on_request
    cfg = load_config(run_config(tmp_path / "cfg.yaml", srv.base_url, indices=INDICES))
    expected = expected_ids(cfg)
    assert len(expected.scores) == 15
    out = tmp_path / "run"
    summary = wbray.evaluate(cfg, out=str(out))

    assert killed, "the judge was never killed"
    rows_on_disk(str(out / "generations")).assert_exact(expected.generations, "generations")
    rows_on_disk(str(out / "scores")).assert_exact(expected.scores, "verdicts")
    manifest = read_manifest(RunLayout.at(str(out)))
    assert manifest is not None and manifest.status == "complete" and manifest.last is not None
    (pool,) = [p for p in manifest.last.pools if p.pool == "score:api-judge"]
    assert pool.engine_loads is not None and pool.engine_loads >= 2  # the actor was restarted
    assert summary.failed == {"generate:api-model": 0, "score:api-model": 0}
    # The batch in flight was asked again, in full (each of its five prompts at least twice).
    sent = Counter(r.raw for r in srv.requests if is_judge(r.body))
    assert sum(1 for n in sent.values() if n >= 2) >= 5
    pd.testing.assert_frame_equal(_results(out), reference)
