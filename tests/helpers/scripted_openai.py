"""A scripted OpenAI-compatible server on 127.0.0.1, for testing HTTP engines and their faults.

The server is real HTTP (stdlib ``ThreadingHTTPServer`` in a background thread, port 0) and speaks
``POST /v1/chat/completions``. What it does with each request comes from a script: either a list
of actions consumed in arrival order, or a callable ``(request_json, attempt) -> action`` where
``attempt`` is 1 the first time an identical body arrives, 2 for its first retry, and so on.

Example::

    script = [status(429, headers={"Retry-After": "0.01"}), reply("hello")]
    with ScriptedOpenAIServer(script) as srv:
        config = OpenAIEngineConfig(base_url=srv.base_url, model="m")
        ...
        assert srv.request_count == 2

Every request is recorded (:attr:`ScriptedOpenAIServer.requests`), as is the largest number of
requests handled at once (:attr:`ScriptedOpenAIServer.max_in_flight`). When a list script runs
out, or a callable script raises, the server answers 418 with a body saying so: a status no
client retries, so the test fails with a readable reason instead of hanging.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

# -- actions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """Answer 200 with a chat completion whose message content is ``text`` (None sends null)."""

    text: str | None
    finish_reason: str | None = "stop"
    usage: Mapping[str, int] | None = None


@dataclass(frozen=True)
class Status:
    """Answer ``code`` with ``body`` and extra ``headers`` (e.g. 429 with Retry-After)."""

    code: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` (interrupted when the server stops), then perform ``then``."""

    seconds: float
    then: Action


@dataclass(frozen=True)
class Malformed:
    """Answer 200 with ``body`` as is (not a valid completion)."""

    body: bytes


@dataclass(frozen=True)
class CloseConnection:
    """Drop the connection without sending any response."""


@dataclass(frozen=True)
class CutBody:
    """Announce a complete chat completion (its full Content-Length), send the first ``keep``
    bytes, then drop the connection: a reply cut off in transit."""

    text: str
    keep: int


Action = Reply | Status | Sleep | Malformed | CloseConnection | CutBody
ScriptFn = Callable[[Any, int], Action]
Script = Sequence[Action] | ScriptFn

_DEFAULT_USAGE: Mapping[str, int] = {"prompt_tokens": 7, "completion_tokens": 3}


def reply(
    text: str | None = "ok",
    finish_reason: str | None = "stop",
    usage: Mapping[str, int] | None = _DEFAULT_USAGE,
) -> Reply:
    """A successful completion (``usage=None`` leaves the usage block out)."""
    return Reply(text=text, finish_reason=finish_reason, usage=usage)


def status(code: int, body: str | bytes = "", headers: Mapping[str, str] | None = None) -> Status:
    """An HTTP status with an optional body and headers."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return Status(code=code, body=raw, headers=dict(headers or {}))


def sleep(seconds: float, then: Action | None = None) -> Sleep:
    """Delay ``seconds`` before ``then`` (default: ``reply("slow")``)."""
    return Sleep(seconds=seconds, then=then if then is not None else reply("slow"))


def malformed(body: str | bytes) -> Malformed:
    """A 200 whose body is ``body`` verbatim."""
    return Malformed(body=body.encode("utf-8") if isinstance(body, str) else body)


def close_connection() -> CloseConnection:
    """Drop the socket without answering."""
    return CloseConnection()


def cut_body(text: str = "ok", keep: int = 40) -> CutBody:
    """A 200 completion whose body stops after ``keep`` bytes (the connection then drops)."""
    return CutBody(text=text, keep=keep)


# -- recording ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the server received it.

    Attributes:
        path: The request path.
        headers: Header names lower-cased.
        body: The parsed JSON body, or None when it was not JSON.
        raw: The body bytes.
        attempt: 1 for the first arrival of this exact body, 2 for the next, ...
    """

    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    attempt: int


# -- server ---------------------------------------------------------------------------------------


class _HTTPServer(http.server.ThreadingHTTPServer):
    # socketserver's default backlog of 5 makes bursts of concurrent connects wait for SYN
    # retransmits (about 1 s); clients under test open up to max_concurrency at once.
    request_queue_size = 128
    owner: ScriptedOpenAIServer


class _Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as real servers do, so clients' pooling is exercised.
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._untrack(self.connection)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet

    def do_GET(self) -> None:
        # GET /v1/models: what the endpoint serves (engines probe it before any work).
        owner = self.server.owner
        if self.path.rstrip("/") != "/v1/models":
            self._send(404, f"no route {self.path}".encode(), {})
            return
        with owner._lock:
            owner.model_list_requests += 1
        data = [
            {"id": m, "object": "model", "created": int(time.time()), **owner.model_info}
            for m in owner.models
        ]
        payload = json.dumps({"object": "list", "data": data}).encode()
        self._send(200, payload, {"Content-Type": "application/json"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        owner = self.server.owner
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, f"no route {self.path}".encode(), {})
            return
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner._local.peer = self.client_address
        with owner._in_flight() as leave:
            action = owner._next_action(self.path, headers, body, raw)
            while isinstance(action, Sleep):
                owner._stopping.wait(action.seconds)
                action = action.then
            # Leave the in-flight count before answering: the client may send its next request as
            # soon as it reads this answer, and must not be counted alongside this one.
            leave()
            self._perform(action, body)

    def _perform(self, action: Action, body: Any) -> None:
        if isinstance(action, CloseConnection):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        elif isinstance(action, Status):
            self._send(action.code, action.body, action.headers)
        elif isinstance(action, Malformed):
            self._send(200, action.body, {"Content-Type": "application/json"})
        elif isinstance(action, Reply):
            self._send(200, _completion_json(action, body), {"Content-Type": "application/json"})
        elif isinstance(action, CutBody):
            payload = _completion_json(Reply(action.text), body)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload[: action.keep])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
        else:  # pragma: no cover - Sleep is unwrapped by the caller
            raise TypeError(f"unknown action {action!r}")

    def _send(self, code: int, payload: bytes, headers: Mapping[str, str]) -> None:
        try:
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            # The client gave up (e.g. its timeout fired while we slept): nothing to answer.
            self.close_connection = True


_ids = itertools.count(1)


def _completion_json(action: Reply, request: Any) -> bytes:
    model = request.get("model") if isinstance(request, dict) else None
    data: dict[str, Any] = {
        "id": f"chatcmpl-scripted-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model or "scripted",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": action.text},
                "finish_reason": action.finish_reason,
            }
        ],
    }
    if action.usage is not None:
        usage = dict(action.usage)
        usage.setdefault("total_tokens", usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0))
        data["usage"] = usage
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


class ScriptedOpenAIServer:
    """A scripted ``/v1/chat/completions`` server on 127.0.0.1 (see the module docstring).

    Args:
        script: Actions consumed in order, or a callable ``(request_json, attempt) -> action``.
        models: The model ids ``GET /v1/models`` lists.
        model_info: Extra fields of every listed model (e.g. ``{"root": "/weights/v2"}``).
    """

    def __init__(
        self, script: Script, models: Sequence[str] = ("m",), model_info: Mapping[str, Any] | None = None
    ) -> None:
        self.models = list(models)
        self.model_info = dict(model_info or {"owned_by": "scripted"})
        self.model_list_requests = 0
        self._script_fn: ScriptFn | None = None
        self._queue: list[Action] = []
        if callable(script):
            self._script_fn = script
        else:
            self._queue = list(script)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._stopping = threading.Event()
        self._requests: list[ReceivedRequest] = []
        self._attempts: dict[str, int] = {}
        self._connections: set[socket.socket] = set()
        self._in_flight_now = 0
        self._max_in_flight = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []
        """Script problems (ran out of actions, callable raised), in order."""

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> ScriptedOpenAIServer:
        """Bind an ephemeral port on 127.0.0.1 and serve in a background thread."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="scripted-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and join every thread. Safe to call twice."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        # Handler threads block reading idle keep-alive connections; shutting the sockets
        # unblocks them so server_close() can join them instead of hanging.
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what tests read --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """How many requests arrived."""
        with self._lock:
            return len(self._requests)

    def current_peer(self) -> tuple[str, int]:
        """``(host, port)`` of the client whose request this thread is handling (call it from a
        script: it runs on the handler's thread), e.g. to find the process that sent it."""
        peer: tuple[str, int] = self._local.peer
        return peer

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def max_in_flight(self) -> int:
        """The most requests being handled at the same time."""
        with self._lock:
            return self._max_in_flight

    # -- used by the handler ----------------------------------------------------------------------

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    @contextlib.contextmanager
    def _in_flight(self) -> Iterator[Callable[[], None]]:
        left = False

        def leave() -> None:
            nonlocal left
            if not left:
                left = True
                with self._lock:
                    self._in_flight_now -= 1

        with self._lock:
            self._in_flight_now += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight_now)
        try:
            yield leave
        finally:
            leave()

    def _next_action(self, path: str, headers: dict[str, str], body: Any, raw: bytes) -> Action:
        key = hashlib.sha256(raw).hexdigest()
        with self._lock:
            attempt = self._attempts.get(key, 0) + 1
            self._attempts[key] = attempt
            number = len(self._requests) + 1
            self._requests.append(ReceivedRequest(path, headers, body, raw, attempt))
            if self._script_fn is None:
                if self._queue:
                    return self._queue.pop(0)
                problem = f"script exhausted at request {number}"
                self.errors.append(problem)
                return status(418, f"scripted server: {problem}")
        try:
            return self._script_fn(body, attempt)
        except Exception as exc:
            problem = f"script raised at request {number}: {exc!r}"
            with self._lock:
                self.errors.append(problem)
            return status(418, f"scripted server: {problem}")


def api_run_config(
    tmp: Path, base_url: str, *, max_retries: int = 1, timeout_s: float = 120.0, max_reasks: int = 2
) -> Path:
    """A run config whose candidate and judge are OpenAI-compatible engines on ``base_url``.

    Both stages reserve a quarter CPU: the work happens in the scripted server, not in the actors.
    """
    engine = (
        f"{{backend: openai, base_url: '{base_url}', model: m, max_retries: {max_retries}, "
        f"initial_backoff_s: 0.01, timeout_s: {timeout_s}}}"
    )
    path = tmp / "cfg.yaml"
    path.write_text(
        f"""
data: {{data_dir: example}}
candidates:
  - name: api-model
    engine: {engine}
generation:
  resources: {{actors: 1, num_cpus: 0.25}}
judge:
  name: api-judge
  engine: {engine}
  max_reasks: {max_reasks}
  resources: {{actors: 1, num_cpus: 0.25}}
"""
    )
    return path
