"""Ray Serve end to end: real Serve on the session's local Ray cluster, real HTTP on 127.0.0.1.

Two applications are deployed once for the module:

* ``wbray-test`` at ``/``: SmolLM2-135M (CPU) as chat model and critic, with bearer-token auth;
* ``scripted`` at ``/scripted``: chat deployments over the openai engine pointed at a scripted
  local server whose replies can sleep or fail, so that scaling and overload cost no CPU.

Serve is shut down at module end (not Ray: the cluster is shared with other modules).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.scripted_openai import ScriptedOpenAIServer, reply, sleep, status

pytestmark = pytest.mark.integration

requests = pytest.importorskip("requests")
openai = pytest.importorskip("openai")

TOKEN_ENV = "WBRAY_TEST_SERVE_TOKEN"
TOKEN = "test-token-not-secret"
APP = "wbray-test"
SCRIPTED = "scripted"
#: A short English benchmark query (index 202: a quatrain about the sunset).
INDEX = 202
CRITERION = "Sunset Imagery Relevance"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _script(body: Any, attempt: int) -> Any:
    text = body["messages"][-1]["content"] if isinstance(body, dict) else ""
    if text.startswith("sleep:"):
        return sleep(float(text.split(":", 1)[1]), reply("slept"))
    if text == "fail":
        return status(400, "scripted failure")
    return reply("ok")


@pytest.fixture(scope="module")
def base_url(ray_cluster: None, smollm2_dir: Path, official_dir: Path) -> Iterator[str]:
    from ray import serve

    from wbray.serve import build_application, load_serve_config

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    previous = os.environ.get(TOKEN_ENV)
    os.environ[TOKEN_ENV] = TOKEN
    scripted = ScriptedOpenAIServer(_script).start()
    try:
        main = load_serve_config(
            {
                "name": APP,
                "models": [
                    {
                        "name": "smollm2",
                        "engine": {"backend": "transformers", "model": str(smollm2_dir), "torch_threads": 1},
                        "sampling": {"temperature": 0, "max_tokens": 16},
                        "deployment": {"resources": {"num_cpus": 0.5}},
                    }
                ],
                "critic": {
                    "model": "smollm2",
                    "template": "official",
                    "data_dir": str(official_dir),
                    "constrained": True,
                    "reason_max_chars": 40,
                    "max_reasks": 1,
                    "sampling": {"temperature": 0, "max_tokens": 100},
                },
                "auth": {"token_env": TOKEN_ENV},
                "http": {"max_body_bytes": 20_000},
            }
        )
        engine = {"backend": "openai", "base_url": scripted.base_url, "model": "m", "max_retries": 0}
        small = {"num_cpus": 0.1}
        side = load_serve_config(
            {
                "name": SCRIPTED,
                "models": [
                    {
                        "name": "elastic",
                        "engine": engine,
                        "deployment": {
                            "resources": small,
                            "max_ongoing_requests": 4,
                            "autoscaling": {
                                "min_replicas": 1,
                                "max_replicas": 2,
                                "target_ongoing_requests": 1,
                                "upscale_delay_s": 0,
                                "look_back_period_s": 12,
                            },
                        },
                    },
                    {
                        "name": "tight",
                        "engine": engine,
                        "deployment": {
                            "resources": small,
                            "max_ongoing_requests": 1,
                            "max_queued_requests": 1,
                        },
                    },
                ],
                "http": {"route_prefix": "/scripted"},
            }
        )
        serve.run(build_application(main), name=APP, route_prefix="/", blocking=False)
        serve.run(build_application(side), name=SCRIPTED, route_prefix="/scripted", blocking=False)
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        scripted.stop()
        if previous is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = previous


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _chat(base: str, model: str, content: str, **extra: Any) -> Any:
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return requests.post(f"{base}/v1/chat/completions", json=body, headers=AUTH, timeout=60)


# -- auth and health --------------------------------------------------------------------------------


def test_health_needs_no_token(base_url: str) -> None:
    r = requests.get(f"{base_url}/health", timeout=10)
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
def test_missing_or_wrong_token_is_401(base_url: str, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/score")):
        r = requests.request(method, f"{base_url}{path}", headers=headers, json={}, timeout=10)
        assert r.status_code == 401, (path, r.text)
        assert "bearer token" in r.json()["error"]["message"]
        assert TOKEN not in r.text


def test_right_token_is_200(base_url: str) -> None:
    r = requests.get(f"{base_url}/v1/models", headers=AUTH, timeout=10)
    assert r.status_code == 200
    assert [m["id"] for m in r.json()["data"]] == ["smollm2"]


def test_served_model_says_what_it_is_over_http_and_through_a_handle(
    base_url: str, smollm2_dir: Path
) -> None:
    from ray import serve

    (entry,) = requests.get(f"{base_url}/v1/models", headers=AUTH, timeout=10).json()["data"]
    want = {
        "engine": {"backend": "transformers", "model": str(smollm2_dir), "dtype": "auto", "device": "auto"},
        "sampling": {"temperature": 0.0, "max_tokens": 16},
    }
    assert entry["metadata"] == want
    handle = serve.get_deployment_handle("chat-smollm2", app_name=APP)
    assert handle.identity.remote().result(timeout_s=30) == want
    # Stable: asking again (another gateway call, possibly another replica) gives the same.
    again = requests.get(f"{base_url}/v1/models", headers=AUTH, timeout=10).json()["data"][0]
    assert again["metadata"] == want


# -- OpenAI compatibility ---------------------------------------------------------------------------


def test_openai_sdk_chat_streaming_and_models(base_url: str) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=TOKEN, max_retries=0, timeout=60)
    assert [m.id for m in client.models.list()] == ["smollm2"]
    messages = [{"role": "user", "content": "Name a colour."}]
    done = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=8, temperature=0)
    text = done.choices[0].message.content
    assert text
    assert done.usage is not None and done.usage.completion_tokens > 0
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    stream = client.chat.completions.create(
        model="smollm2",
        messages=messages,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == text  # greedy decoding: the same answer either way
    # Token by token: a multi-token answer arrives in several pieces, not one.
    assert len(pieces) >= 3 and done.usage.completion_tokens >= 3, pieces
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_openai_sdk_json_schema_is_enforced(base_url: str) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=TOKEN, max_retries=0, timeout=60)
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    done = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Is the sky blue? Answer in JSON."}],
        max_tokens=20,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )
    assert isinstance(json.loads(done.choices[0].message.content or "")["ok"], bool)


def test_handle_call_from_inside_the_cluster(base_url: str) -> None:
    from ray import serve

    handle = serve.get_deployment_handle("chat-smollm2", app_name=APP)
    out = handle.complete.remote(
        {"messages": [{"role": "user", "content": "Hi"}], "sampling": {"max_tokens": 4}}
    ).result(timeout_s=60)
    assert out["status"] == "ok" and out["text"]
    first = next(
        iter(
            handle.options(stream=True).chat.remote(
                {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
            )
        )
    )
    assert first["choices"][0]["message"]["content"]
    parts = list(
        handle.options(stream=True).stream.remote(
            {"messages": [{"role": "user", "content": "Hi"}], "sampling": {"max_tokens": 6}}
        )
    )
    assert len(parts) >= 3 and all(p["status"] == "ok" for p in parts)
    assert parts[-1]["finish_reason"] in ("stop", "length") and parts[-1]["completion_tokens"] > 0
    assert (
        "".join(p["text"] for p in parts)
        == handle.complete.remote(
            {"messages": [{"role": "user", "content": "Hi"}], "sampling": {"max_tokens": 6}}
        ).result(timeout_s=60)["text"]
    )


def test_prompt_over_the_context_is_the_requests_fault(base_url: str) -> None:
    from ray import serve

    from wbray.engines import Completion
    from wbray.serve._gateway import completion_failure

    # 40,000 characters are ~10,000 tokens, over SmolLM2's 8,192 (the HTTP edge of this app refuses
    # such a body earlier, with 413; a handle caller reaches the engine).
    handle = serve.get_deployment_handle("chat-smollm2", app_name=APP)
    out = handle.complete.remote({"messages": [{"role": "user", "content": "x" * 40_000}]}).result(
        timeout_s=60
    )
    assert out["status"] == "failed" and "model context is 8192" in out["error"]
    status, body = completion_failure(Completion(**out))
    assert status == 400 and body["error"]["param"] == "messages"
    assert body["error"]["code"] == "context_length_exceeded"


# -- the critic -------------------------------------------------------------------------------------


def test_score_benchmark_row_and_free_query_in_one_batch(base_url: str) -> None:
    body = {
        "items": [
            {
                "id": "a",
                "index": INDEX,
                "data_version": "2d04c2d4c82f",
                "response": "Red sun sinks low, gold light spills on the hill.",
                "criteria": [CRITERION],
            },
            {
                "id": "b",
                "query": "Write one line about rain.",
                "response": "Rain taps softly on the roof.",
                "criteria": [{"name": "Relevance", "criteria_description": "Is it about rain?"}],
            },
        ]
    }
    started = time.monotonic()
    r = requests.post(f"{base_url}/v1/score", json=body, headers=AUTH, timeout=300)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["prompt_source"] == "official" and out["prompt_version"].startswith("judge-")
    assert out["judge_model"] == "smollm2"
    assert [it["id"] for it in out["items"]] == ["a", "b"]
    for item, name in zip(out["items"], [CRITERION, "Relevance"], strict=True):
        (res,) = item["results"]
        assert res["criterion"] == name
        # Constrained decoding: the reply always parses; no score is ever guessed.
        assert res["status"] == "ok", res
        assert isinstance(res["score"], int) and 1 <= res["score"] <= 10
        assert isinstance(res["reason"], str) and len(res["reason"]) <= 40
        assert res["tokens"]["prompt"] > 0 and res["tokens"]["completion"] > 0
        assert res["latency_s"] > 0
        assert res["prompt_version"] == out["prompt_version"]
    print(f"score 2 criteria: {time.monotonic() - started:.1f} s")


# -- bad requests -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "code", "named"),
    [
        ("/v1/chat/completions", {"model": "smollm2"}, 422, "messages"),
        ("/v1/chat/completions", {"model": "smollm2", "messages": "hi"}, 422, "messages"),
        (
            "/v1/chat/completions",
            {"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
            422,
            "temperature",
        ),
        (
            "/v1/chat/completions",
            {"model": "nope", "messages": [{"role": "user", "content": "x"}]},
            404,
            "nope",
        ),
        (
            "/v1/chat/completions",
            {"model": "smollm2", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            400,
            "image_url",
        ),
        ("/v1/score", {"index": INDEX, "criteria": "all"}, 422, "response"),
        ("/v1/score", {"index": "two hundred", "response": "x"}, 422, "index"),
        ("/v1/score", {"index": INDEX, "query": "q", "response": "x"}, 422, "exactly one of"),
        ("/v1/score", {"index": INDEX, "response": "x", "criteria": ["No Such Thing"]}, 422, "No Such Thing"),
        ("/v1/score", {"index": 999999, "response": "x"}, 422, "999999"),
        ("/v1/score", {"index": INDEX, "data_version": "0000", "response": "x"}, 409, "data_version"),
        ("/v1/score", {"query": "q", "response": "x", "criteria": "all"}, 422, "index"),
        (
            "/v1/score",
            {"query": "q", "response": "x", "criteria": [{"name": "n"}]},
            422,
            "criteria_description",
        ),
    ],
)
def test_bad_requests_name_the_problem(
    base_url: str, path: str, body: dict[str, Any], code: int, named: str
) -> None:
    r = requests.post(f"{base_url}{path}", json=body, headers=AUTH, timeout=30)
    assert r.status_code == code, r.text
    assert named in r.json()["error"]["message"], r.text


def test_oversized_body_is_413(base_url: str) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "x" * 30_000}]}
    r = requests.post(f"{base_url}/v1/chat/completions", json=body, headers=AUTH, timeout=30)
    assert r.status_code == 413
    assert "max_body_bytes" in r.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
        yield b'{"model": "smollm2", "messages": [{"role": "user", "content": "'
        for _ in range(30):
            yield b"y" * 1000
        yield b'"}]}'

    r = requests.post(
        f"{base_url}/v1/chat/completions",
        data=chunks(),
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 413, r.text


def test_malformed_json_is_422(base_url: str) -> None:
    r = requests.post(
        f"{base_url}/v1/score",
        data=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 422


# -- scaling, overload, engine errors (scripted backend: no CPU burnt) ------------------------------


def test_engine_failure_is_a_500_with_a_reason(base_url: str) -> None:
    r = requests.post(
        f"{base_url}/scripted/v1/chat/completions",
        json={"model": "tight", "messages": [{"role": "user", "content": "fail"}]},
        timeout=30,
    )
    assert r.status_code == 500
    assert "scripted failure" in r.json()["error"]["message"]
    assert r.json()["error"]["code"] == "engine_error"


def test_overload_is_refused_fast(base_url: str) -> None:
    url = f"{base_url}/scripted/v1/chat/completions"
    body = {"model": "tight", "messages": [{"role": "user", "content": "sleep:3"}]}

    def one() -> tuple[int, float, tuple[str | None, str | None]]:
        started = time.monotonic()
        r = requests.post(url, json=body, timeout=30)
        code = r.json()["error"]["code"] if r.status_code != 200 else None
        return r.status_code, time.monotonic() - started, (code, r.headers.get("Retry-After"))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: one(), range(8)))
    codes = sorted(c for c, _, _ in results)
    refused = [(t, body) for c, t, body in results if c == 503]
    # One replica, one request at a time, one queued: most of the 8 are refused, and quickly.
    assert codes.count(200) >= 1 and len(refused) >= 4, codes
    assert max(t for t, _ in refused) < 1.5, results
    assert set(codes) <= {200, 503}, codes
    # Overload says so (a dead replica would be 502 replica_unavailable), and when to come back.
    for _, (code, retry_after) in refused:
        assert code == "overloaded" and retry_after is not None and int(retry_after) >= 1


def test_autoscaling_goes_from_one_to_two_replicas(base_url: str) -> None:
    from ray import serve

    def running() -> int:
        deployment = serve.status().applications[SCRIPTED].deployments["chat-elastic"]
        return int(deployment.replica_states.get("RUNNING", 0))

    assert running() == 1
    url = f"{base_url}/scripted/v1/chat/completions"
    body = {"model": "elastic", "messages": [{"role": "user", "content": "sleep:2"}]}
    deadline = time.monotonic() + 90
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        while running() < 2 and time.monotonic() < deadline:
            codes = list(pool.map(lambda _: requests.post(url, json=body, timeout=30).status_code, range(6)))
            assert set(codes) == {200}, codes
    assert running() == 2
