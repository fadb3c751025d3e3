"""Serve under load and under faults (issue 11): real Serve on the session's Ray cluster, real HTTP
on 127.0.0.1, chat deployments over the openai engine pointed at a scripted local server that
sleeps per request (so load costs no model CPU).

* Below capacity every request succeeds; above it the excess is refused at once with 503
  ``overloaded`` and ``Retry-After``, while the Serve processes' memory stays flat.
* The critic's ``/v1/score`` with batches of many criteria: the same, with every verdict counted.
* A chat replica killed under load: the requests it held fail with 502 ``replica_unavailable``,
  nothing waits past ``http.request_timeout_s``, and Serve replaces the replica.

Client counts and durations are bounded (a few threads, seconds each). Timing bounds are loose
multiples of the backend's delay: they separate "answered at once" from "waited for a timeout",
not fast from slow. Speed numbers live in ``bench/serve_load.py`` and BENCHMARKS.md.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.helpers.scripted_openai import ScriptedOpenAIServer, reply, sleep

pytestmark = pytest.mark.integration

requests = pytest.importorskip("requests")
psutil = pytest.importorskip("psutil")

APP = "faults"
#: The gateway's http.request_timeout_s in this application.
TIMEOUT_S = 8.0
#: Backend time per request of the capacity model ("cap"): 2 at a time, so 2 / 0.3 = 6.7 req/s.
SLEEP_S = 0.3
CAP_IN_FLIGHT = 2
#: The codes a failed chat request may carry here; anything else (or a 500) is a bug.
FAILURE_CODES = {"overloaded", "replica_unavailable", "upstream_error", "timeout"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _script(body: Any, attempt: int) -> Any:
    if isinstance(body, dict) and body.get("response_format"):  # a judge call from the critic
        return sleep(0.05, reply('{"score": 7, "reason": "fine"}'))
    text = body["messages"][-1]["content"] if isinstance(body, dict) else ""
    if text.startswith("sleep:"):
        return sleep(float(text.split(":", 1)[1]), reply("slept"))
    return reply("ok")


@pytest.fixture(scope="module")
def base_url(ray_cluster: None) -> Iterator[str]:
    from ray import serve

    from wbray.serve import build_application, load_serve_config

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    scripted = ScriptedOpenAIServer(_script).start()

    def model(name: str, in_flight: int, admitted: int, queued: int, **deployment: Any) -> dict[str, Any]:
        return {
            "name": name,
            "engine": {
                "backend": "openai",
                "base_url": scripted.base_url,
                "model": "m",
                "max_retries": 0,
                "max_concurrency": in_flight,
            },
            "max_batch_size": 1,
            "deployment": {
                "resources": {"num_cpus": 0.1},
                "max_ongoing_requests": admitted,
                "max_queued_requests": queued,
                **deployment,
            },
        }

    config = load_serve_config(
        {
            "name": APP,
            "http": {"request_timeout_s": TIMEOUT_S},
            "models": [
                model("cap", CAP_IN_FLIGHT, admitted=4, queued=4),
                model("judge", 16, admitted=32, queued=64),
                # Checked every 2 s, so a killed replica is replaced within the test's patience.
                model("kill", 8, admitted=8, queued=16, health_check_period_s=2),
            ],
            "critic": {
                "model": "judge",
                "template": "builtin",
                "constrained": True,
                "max_reasks": 0,
                "deployment": {
                    "resources": {"num_cpus": 0.1},
                    "max_ongoing_requests": 2,
                    "max_queued_requests": 2,
                },
            },
        }
    )
    serve.run(build_application(config), name=APP, route_prefix="/", blocking=False)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        scripted.stop()


# -- load generation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    sent_at: float
    status: int
    code: str | None
    retry_after: str | None
    elapsed_s: float
    body: Any


def _post(url: str, body: dict[str, Any], started: float) -> Outcome:
    sent = time.monotonic()
    r = requests.post(url, json=body, timeout=TIMEOUT_S + 30)
    elapsed = time.monotonic() - sent
    try:
        data = r.json()
    except ValueError:
        data = {"not_json": r.text[:300], "content_type": r.headers.get("content-type")}
    code = data.get("error", {}).get("code") if r.status_code != 200 else None
    return Outcome(sent - started, r.status_code, code, r.headers.get("Retry-After"), elapsed, data)


def run_clients(clients: int, seconds: float, request: Callable[[float], Outcome]) -> list[Outcome]:
    """``clients`` threads, each sending one request after another for ``seconds``.

    A client pauses 0.2 s after a 503 (a polite client honours Retry-After; this one stays pushy
    enough to keep the deployment over capacity).
    """
    started = time.monotonic()
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def client() -> None:
        while time.monotonic() - started < seconds:
            outcome = request(started)
            with lock:
                outcomes.append(outcome)
            if outcome.status == 503:
                time.sleep(0.2)

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    return outcomes


def _chat(model: str, content: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}]}


# -- memory of the Serve processes ------------------------------------------------------------------


def serve_processes() -> dict[int, str]:
    """pid -> title of this cluster's Serve processes (controller, proxy, replicas).

    Found as children of this session's raylet, so Serve processes of other clusters on the same
    machine are never counted.
    """
    import ray

    node = ray._private.worker._global_node  # the driver's own node: where its raylet runs
    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    out = {}
    for child in raylet.children(recursive=True):
        try:
            title = child.name()
        except psutil.Error:
            continue
        if title.startswith(("ray::ServeController", "ray::ProxyActor", f"ray::ServeReplica:{APP}:")):
            out[child.pid] = title
    return out


class RssSampler:
    """Samples the RSS of the Serve processes every ``period_s`` in a background thread."""

    def __init__(self, period_s: float = 0.5) -> None:
        self.samples: dict[int, list[int]] = {}
        self.titles = serve_processes()
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.titles:
                with contextlib.suppress(psutil.Error):  # a replica that died meanwhile
                    self.samples.setdefault(pid, []).append(psutil.Process(pid).memory_info().rss)
            self._stop.wait(self._period_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def growth_mib(self) -> dict[str, float]:
        """Per process: the highest sample minus the first, in MiB."""
        return {
            f"{self.titles[pid]} ({pid})": (max(rss) - rss[0]) / 2**20
            for pid, rss in self.samples.items()
            if len(rss) >= 2
        }


# -- chat under load --------------------------------------------------------------------------------


def test_below_capacity_every_request_succeeds(base_url: str) -> None:
    url = f"{base_url}/v1/chat/completions"
    # Three clients: fewer than the replica admits (4), so nothing ever waits in Serve's queue.
    outcomes = run_clients(3, 5.0, lambda t0: _post(url, _chat("cap", f"sleep:{SLEEP_S}"), t0))
    assert {o.status for o in outcomes} == {200}, [(o.status, o.code) for o in outcomes if o.status != 200]
    latencies = sorted(o.elapsed_s for o in outcomes)
    # At most one request ahead of each in the replica's line: two backend delays, plus overhead.
    assert latencies[-1] < 2 * SLEEP_S + 1.0, latencies[-5:]
    assert len(outcomes) >= 10
    p50 = statistics.median(latencies)
    print(f"below capacity: {len(outcomes)} ok, p50 {p50:.3f} s, max {latencies[-1]:.3f} s")


def test_above_capacity_is_refused_fast_as_overloaded_and_memory_stays_flat(base_url: str) -> None:
    url = f"{base_url}/v1/chat/completions"
    with RssSampler() as rss:
        outcomes = run_clients(24, 10.0, lambda t0: _post(url, _chat("cap", f"sleep:{SLEEP_S}"), t0))
    ok = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status == 503]
    assert len(ok) + len(refused) == len(outcomes), {(o.status, o.code) for o in outcomes}
    assert refused, "24 clients against 8 admitted requests: some must be refused"
    for o in refused:
        assert o.code == "overloaded" and o.retry_after is not None and int(o.retry_after) >= 1, o
    # Refused at once (queue full), never after waiting out the request timeout.
    assert max(o.elapsed_s for o in refused) < 2.0, sorted(o.elapsed_s for o in refused)[-5:]
    assert max(o.elapsed_s for o in ok) < TIMEOUT_S
    # Back-pressure keeps the backend working: admitted requests still flow near capacity.
    served_rps = len(ok) / 10.0
    assert served_rps > 0.5 * CAP_IN_FLIGHT / SLEEP_S, served_rps
    growth = rss.growth_mib()
    assert len(growth) >= 4, rss.titles  # controller, proxy, gateway and at least the "cap" replica
    assert max(growth.values()) < 64, growth
    print(
        f"above capacity: {len(ok)} ok ({served_rps:.1f}/s), {len(refused)} refused "
        f"(max {max(o.elapsed_s for o in refused):.3f} s); RSS growth MiB {growth}"
    )


# -- the critic under load --------------------------------------------------------------------------


def _score_body(items: int, criteria: int) -> dict[str, Any]:
    checklist = [{"name": f"C{j}", "criteria_description": f"criterion {j}"} for j in range(criteria)]
    return {
        "items": [
            {"id": f"i{i}", "query": f"Write line {i}.", "response": f"Line {i}.", "criteria": checklist}
            for i in range(items)
        ]
    }


def test_critic_batches_of_many_criteria_under_load(base_url: str) -> None:
    url = f"{base_url}/v1/score"
    body = _score_body(items=6, criteria=5)  # 30 judge calls per request

    # Below capacity: two clients (the critic admits 2): every verdict of every request comes back.
    below = run_clients(2, 4.0, lambda t0: _post(url, body, t0))
    assert below and {o.status for o in below} == {200}, [
        (o.status, o.body) for o in below if o.status != 200
    ]
    for o in below:
        results = [r for item in o.body["items"] for r in item["results"]]
        assert len(results) == 30 and {(r["status"], r["score"]) for r in results} == {("ok", 7)}

    # Above: twelve big requests at once against 2 admitted + 2 queued.
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        started = time.monotonic()
        burst = list(pool.map(lambda _: _post(url, body, started), range(12)))
    assert {o.status for o in burst} <= {200, 503}, [(o.status, o.body) for o in burst]
    refused = [o for o in burst if o.status == 503]
    assert refused and all(o.code == "overloaded" and o.retry_after for o in refused)
    assert max(o.elapsed_s for o in refused) < 2.0
    for o in burst:
        if o.status == 200:
            assert sum(len(item["results"]) for item in o.body["items"]) == 30
    print(f"critic: {len(below)} requests of 30 criteria below capacity; burst of 12: {len(refused)} refused")


# -- a replica killed under load (last: it disturbs the application) --------------------------------


def _replica_names(deployment: str) -> list[str]:
    import ray

    prefix = f"SERVE_REPLICA::{APP}#{deployment}#"
    return [
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)
    ]


def _running(deployment: str) -> int:
    from ray import serve

    return int(serve.status().applications[APP].deployments[deployment].replica_states.get("RUNNING", 0))


def test_replica_killed_under_load_fails_cleanly_and_recovers(base_url: str) -> None:
    import ray

    url = f"{base_url}/v1/chat/completions"
    (victim,) = _replica_names("chat-kill")
    outcomes: list[Outcome] = []
    stop = threading.Event()
    started = time.monotonic()

    def client() -> None:
        while not stop.is_set():
            outcomes.append(_post(url, _chat("kill", "sleep:0.5"), started))

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        clients = [pool.submit(client) for _ in range(6)]
        time.sleep(2.0)
        killed_at = time.monotonic() - started
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            _running("chat-kill") == 1 and _replica_names("chat-kill") not in ([], [victim])
        ):
            time.sleep(0.5)
        recovered_at = time.monotonic() - started
        time.sleep(3.0)  # keep the load on the new replica for a while
        stop.set()
        for future in clients:
            future.result()

    (replacement,) = _replica_names("chat-kill")
    assert replacement != victim and _running("chat-kill") == 1
    failed = [o for o in outcomes if o.status != 200]
    for o in failed:
        assert o.status in (502, 503, 504) and o.code in FAILURE_CODES, o
    # Requests in flight on the dead replica failed at once, with the code that says so.
    assert any(o.code == "replica_unavailable" for o in failed), [(o.status, o.code) for o in failed]
    # Nothing hung: every answer came within the request timeout (plus scheduling slack).
    assert max(o.elapsed_s for o in outcomes) < TIMEOUT_S + 2.0, max(o.elapsed_s for o in outcomes)
    # Before the kill and after recovery, requests succeed.
    assert any(o.status == 200 and o.sent_at + o.elapsed_s < killed_at for o in outcomes)
    after = [o for o in outcomes if o.sent_at > recovered_at + 0.5]
    assert after and {o.status for o in after} == {200}, [(o.status, o.code) for o in after]
    print(
        f"killed at {killed_at:.1f} s, replaced by {recovered_at:.1f} s; "
        f"{len(outcomes)} requests: {sorted((o.status, o.code) for o in failed)}"
    )
