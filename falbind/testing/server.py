"""A fake fal server for tests: real HTTP on 127.0.0.1, fal's sync and queue protocols.

::

    with FakeFalServer() as server:
        with FalClient(**server.client_kwargs()) as client:
            output = client.flux_schnell(prompt="a red fox")
        assert server.count(route="run") == 1

It serves every endpoint in ``falbind.ENDPOINTS`` (and any added with :meth:`add_endpoint`):

* sync: ``POST {url}/run/{endpoint id}`` → the output;
* queue: ``POST {url}/queue/{endpoint id}`` → ``{request_id, status_url, response_url,
  cancel_url}``, with fal's URL shapes under ``{url}/queue/{owner}/{app}/requests/{id}``:
  ``GET …/status[?logs=1]``, ``GET …/status/stream`` (server-sent events), ``GET …`` (the
  output), ``PUT …/cancel``;
* files: ``GET {url}/files/…`` (real PNG bytes for images);
* storage (``storage_url`` = ``{url}``): ``POST {url}/storage/upload/initiate`` →
  ``{upload_url, file_url}``, ``PUT {upload_url}`` stores the bytes (no key needed: the URL is
  "pre-signed"), and ``GET {file_url}`` (under ``{url}/files/uploads/…``) serves them back.

Inputs are validated with the generated Input models (a 422 in fal's shape when they do not
fit; unknown parameters are ignored, as fal does); outputs are synthesised from the Output models (:mod:`.fake_outputs`). A queued request is
``IN_QUEUE`` for ``queue_time`` seconds, then ``IN_PROGRESS`` for ``processing_time``, then
``COMPLETED``. A cancelled request completes at once with an error.

Faults are injected with :meth:`FakeFalServer.inject` (see :class:`Fault`), per endpoint and
route, for a number of requests. Every request is recorded (:attr:`requests`) for assertions.
The server listens on loopback only, on its own thread; ``stop()`` (or leaving the ``with``
block) ends it and every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypeAlias
from urllib.parse import parse_qsl, quote, unquote

from pydantic import ValidationError

from .fake_outputs import FakeFiles, OutputContext, synthesize_output

if TYPE_CHECKING:
    from falbind.client.clients import AsyncFalClient, FalClient

__all__ = ["FakeFalServer", "Fault", "RecordedRequest", "Route", "serve_until_interrupted"]

Route: TypeAlias = Literal[
    "run",
    "run_stream",
    "submit",
    "status",
    "stream",
    "result",
    "cancel",
    "file",
    "upload_initiate",
    "upload_put",
    "pricing",
    "history",
]
ROUTES: Final[frozenset[str]] = frozenset(
    {
        "run",
        "run_stream",
        "submit",
        "status",
        "stream",
        "result",
        "cancel",
        "file",
        "upload_initiate",
        "upload_put",
        "pricing",
        "history",
    }
)
FaultKind: TypeAlias = Literal[
    "http",
    "reset",
    "slow",
    "malformed_json",
    "never_complete",
    "completed_with_error",
    "close",
    "raw",
    "json",
    "chatty_stream",
]
Handler: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})
_KEEPALIVE_SECONDS: Final = 1.0
_MAX_HEAD: Final = 64 * 1024
_UNKNOWN_FIELD_ERRORS: Final = frozenset({"extra_forbidden", "unknown_parameter"})


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake server received."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    """Lower-cased names."""
    body: bytes
    route: str | None
    """``run``, ``run_stream``, ``submit``, ``status``, ``stream``, ``result``, ``cancel``,
    ``file``, ``upload_initiate``, ``upload_put`` or ``None``."""
    endpoint_id: str | None
    peer: tuple[str, int] | None = None
    """The client's address and port: one connection per peer."""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault the server answers with instead of (or before) the normal answer.

    Build one with the class methods; pass it to :meth:`FakeFalServer.inject`.
    """

    kind: FaultKind
    status: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    error: str = ""
    error_type: str | None = None
    body: Any = None
    """The JSON body (``json``), or the bytes to write (``raw``)."""

    @classmethod
    def http(
        cls,
        status: int,
        *,
        headers: Mapping[str, str] | None = None,
        error_type: str | None = None,
        detail: str = "fake fault",
    ) -> Fault:
        """Answer ``status`` with ``{"detail": ..., "error_type": ...}``."""
        return cls(
            "http", status=status, headers=dict(headers or {}), error=detail, error_type=error_type
        )

    @classmethod
    def rate_limit(cls, retry_after: float | str | None = None) -> Fault:
        """429, with ``Retry-After`` (seconds or an HTTP date) when given."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return cls.http(429, headers=headers, detail="rate limited")

    @classmethod
    def user_timeout(cls) -> Fault:
        """504 with ``X-Fal-Request-Timeout-Type: user``: the caller's start deadline passed."""
        return cls.http(
            504,
            headers={"X-Fal-Request-Timeout-Type": "user"},
            error_type="request_timeout",
            detail="Request timed out before processing started",
        )

    @classmethod
    def json(cls, status: int, body: Any, *, headers: Mapping[str, str] | None = None) -> Fault:
        """Answer ``status`` with ``body`` as JSON, e.g. a 422 whose ``detail`` is a list."""
        return cls("json", status=status, headers=dict(headers or {}), body=body)

    @classmethod
    def html(cls, status: int, page: str = "<html><body>Bad Gateway</body></html>") -> Fault:
        """Answer ``status`` with an HTML page, as a proxy in front of fal may."""
        head = _head(status, {"Connection": "close"}, "text/html", len(page.encode()))
        return cls("raw", status=status, body=head + page.encode())

    @classmethod
    def raw(cls, data: bytes) -> Fault:
        """Write ``data`` as the whole answer, then close: not HTTP (``b"SSH-2.0-x\\r\\n"``),
        or HTTP cut short (a ``Content-Length`` larger than the body)."""
        return cls("raw", body=data)

    @classmethod
    def close(cls) -> Fault:
        """Close the connection (an orderly FIN) after reading the request, without answering."""
        return cls("close")

    @classmethod
    def chatty_stream(cls, interval: float = 0.5) -> Fault:
        """(stream) Send the request's current status every ``interval`` seconds and never end
        the stream (until the client goes away)."""
        return cls("chatty_stream", delay=interval)

    @classmethod
    def reset(cls) -> Fault:
        """Reset the connection (TCP RST) after reading the request, without answering."""
        return cls("reset")

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Wait ``seconds`` before the normal answer."""
        return cls("slow", delay=seconds)

    @classmethod
    def malformed_json(cls) -> Fault:
        """Answer 200 with a body that is not JSON."""
        return cls("malformed_json")

    @classmethod
    def never_complete(cls) -> Fault:
        """(submit) The queued request stays ``IN_PROGRESS`` until cancelled."""
        return cls("never_complete")

    @classmethod
    def completed_with_error(
        cls, error: str = "fake model failure", error_type: str | None = "runner_error"
    ) -> Fault:
        """(submit) The queued request completes with ``error``."""
        return cls("completed_with_error", error=error, error_type=error_type)


@dataclass(slots=True)
class _Rule:
    fault: Fault
    endpoint_id: str | None
    routes: frozenset[str] | None
    remaining: int | None

    def matches(self, route: str | None, endpoint_id: str | None) -> bool:
        if self.remaining == 0:
            return False
        if self.routes is not None and route not in self.routes:
            return False
        return self.endpoint_id is None or self.endpoint_id == endpoint_id


@dataclass(slots=True)
class _Job:
    id: str
    endpoint_id: str
    app: str
    output: dict[str, Any]
    submitted: float
    queue_time: float
    processing_time: float
    never_complete: bool = False
    error: tuple[str, str | None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    json_input: dict[str, Any] = field(default_factory=dict)
    sent_at: float = field(default_factory=time.time)
    """Wall-clock time of the submit (fal's request history reports it)."""

    def phase(self, now: float) -> str:
        if self.error is not None and self.error[1] == "request_cancelled":
            return "COMPLETED"
        elapsed = now - self.submitted
        if elapsed < self.queue_time:
            return "IN_QUEUE"
        if self.never_complete or elapsed < self.queue_time + self.processing_time:
            return "IN_PROGRESS"
        return "COMPLETED"

    def next_change(self, now: float) -> float | None:
        """Seconds until the phase changes by itself, ``None`` if it never does."""
        phase = self.phase(now)
        if phase == "IN_QUEUE":
            return self.submitted + self.queue_time - now
        if phase == "IN_PROGRESS" and not self.never_complete:
            return self.submitted + self.queue_time + self.processing_time - now
        return None

    def status(self, now: float, base: str, with_logs: bool) -> dict[str, Any]:
        phase = self.phase(now)
        data: dict[str, Any] = {"status": phase, "request_id": self.id, "response_url": base}
        if phase == "IN_QUEUE":
            data["queue_position"] = 0
            return data
        data["logs"] = _fake_logs(phase) if with_logs else None
        if phase == "COMPLETED":
            data["metrics"] = {"inference_time": self.processing_time}
            if self.error is not None:
                data["error"], data["error_type"] = self.error
        return data


def _fake_logs(phase: str) -> list[dict[str, Any]]:
    stamp = datetime.now(UTC).isoformat()
    lines = ["fake runner started"] + (["fake runner finished"] if phase == "COMPLETED" else [])
    return [{"message": m, "level": "INFO", "source": "user", "timestamp": stamp} for m in lines]


@dataclass(slots=True)
class _Stored:
    """An upload the server initiated: its file name, then the bytes and type once PUT."""

    file_name: str
    content_type: str = ""
    data: bytes | None = None


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


@dataclass(slots=True)
class _Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat()


def _iso_seconds(value: str | None, *, default: float) -> float:
    if not value:
        return default
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _json_answer(status: int, data: Any, headers: dict[str, str] | None = None) -> _Answer:
    return _Answer(status, json.dumps(data).encode(), headers or {})


class FakeFalServer:
    """A fake fal server on ``127.0.0.1`` (see the module docstring)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        key: str | None = None,
        queue_time: float = 0.0,
        processing_time: float = 0.02,
    ) -> None:
        if host not in _LOOPBACK:
            raise ValueError(f"the fake fal server listens on loopback only, not {host!r}")
        self.host = host
        self.port = port
        self.key = key
        """When set, fal calls without ``Authorization: Key <key>`` get a 401."""
        self.queue_time = queue_time
        self.processing_time = processing_time
        self._handlers: dict[str, Handler] = {}
        self._rules: list[_Rule] = []
        self._rules_lock = threading.Lock()
        self._log: list[RecordedRequest] = []
        self._jobs: dict[str, _Job] = {}
        self._outputs: dict[tuple[str, OutputContext], dict[str, Any]] = {}
        self._uploads: dict[str, _Stored] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.stream_progress_events = 2
        """How many progress events the streaming endpoint sends before the output."""
        self.stream_break_after: int | None = None
        """When set, the streaming endpoint resets the connection after that many progress
        events (a stream broken after it started)."""
        self.stream_partials: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None
        """When set, the events the streaming endpoint sends before the output, made from the
        output (partial outputs, as an app that streams its output sends them), instead of
        :attr:`stream_progress_events` progress events."""
        self.streams_cut_short = 0
        """How many streamed answers ended early because the client went away."""
        self.prices: dict[str, tuple[str, str]] = {}
        """fal's pricing API here (``GET {api_url}/v1/models/pricing``): endpoint id ->
        (unit price as text, unit). An endpoint not listed costs :attr:`default_price`."""
        self.default_price: tuple[str, str] | None = ("0.01", "images")
        """The price of every served endpoint not in :attr:`prices` (``None``: no price)."""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen and serve on a background thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("the fake fal server is already running")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="falbind-fake-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread.join(5)
            loop.close()
            self._thread = self._loop = None
            raise failure[0]
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve_connection, self.host, self.port, backlog=512, limit=_MAX_HEAD
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Close the listener and every connection, and end the server's thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            future.result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.url if self._thread is not None else "stopped"
        return f"<FakeFalServer {state}>"

    # -- what tests use ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def run_url(self) -> str:
        """Pass as ``run_url=`` to a client."""
        return f"{self.url}/run"

    @property
    def queue_url(self) -> str:
        """Pass as ``queue_url=`` to a client."""
        return f"{self.url}/queue"

    @property
    def storage_url(self) -> str:
        """Pass as ``storage_url=`` to a client."""
        return self.url

    @property
    def api_url(self) -> str:
        """fal's platform API here (``GET {api_url}/v1/models/pricing``)."""
        return self.url

    def client_kwargs(self) -> dict[str, Any]:
        """``run_url``, ``queue_url``, ``storage_url`` and ``key`` for a client of this server."""
        return {
            "run_url": self.run_url,
            "queue_url": self.queue_url,
            "storage_url": self.storage_url,
            "key": self.key or "",
        }

    def client(self, **options: Any) -> FalClient:
        """A :class:`~falbind.FalClient` of this server (``options`` override)."""
        from falbind.client.clients import FalClient

        return FalClient(**{**self.client_kwargs(), **options})

    def async_client(self, **options: Any) -> AsyncFalClient:
        """An :class:`~falbind.AsyncFalClient` of this server (``options`` override)."""
        from falbind.client.clients import AsyncFalClient

        return AsyncFalClient(**{**self.client_kwargs(), **options})

    def add_endpoint(self, endpoint_id: str, handler: Handler) -> None:
        """Serve ``endpoint_id`` with ``handler(input) -> output``, unvalidated (for untyped
        calls or a chosen output)."""
        self._handlers[endpoint_id] = handler

    def inject(
        self,
        fault: Fault,
        *,
        endpoint_id: str | None = None,
        route: Route | tuple[Route, ...] | None = None,
        times: int | None = 1,
    ) -> None:
        """Answer the next ``times`` matching requests (``None``: all) with ``fault``.

        ``route`` limits it to ``run``, ``run_stream``, ``submit``, ``status``, ``stream``, ``result``,
        ``cancel``, ``file``, ``upload_initiate`` or ``upload_put`` requests (default: any;
        ``submit`` for queue-only faults).
        """
        routes: frozenset[str] | None
        if route is None:
            queue_only = fault.kind in ("never_complete", "completed_with_error")
            routes = frozenset({"submit"}) if queue_only else None
        else:
            routes = frozenset((route,) if isinstance(route, str) else route)
            if not routes <= ROUTES:
                raise ValueError(f"unknown route in {sorted(routes)}; routes: {sorted(ROUTES)}")
        with self._rules_lock:
            self._rules.append(_Rule(fault, endpoint_id, routes, times))

    def clear_faults(self) -> None:
        with self._rules_lock:
            self._rules.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        return list(self._log)

    def count(self, *, route: Route | None = None, method: str | None = None) -> int:
        """How many requests were received (of a route and/or method)."""
        return sum(
            1
            for r in self._log
            if (route is None or r.route == route) and (method is None or r.method == method)
        )

    def clear_requests(self) -> None:
        self._log.clear()

    # -- HTTP --------------------------------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                request = await _read_request(reader)
                if request is None or not await self._respond(request, writer):
                    break
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _respond(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; whether the connection stays open."""
        route, endpoint_id, rest = self._route(request)
        self._log.append(
            RecordedRequest(
                request.method,
                request.path,
                request.query,
                request.headers,
                request.body,
                route,
                endpoint_id,
                _peer(writer),
            )
        )
        fault = self._take_fault(route, endpoint_id)
        if fault is not None:
            if fault.kind == "reset":
                _reset(writer)
                return False
            if fault.kind == "close":
                return False
            if fault.kind == "raw":
                writer.write(bytes(fault.body or b""))
                await writer.drain()
                return False
            if fault.kind == "json":
                answer = _json_answer(fault.status, fault.body, dict(fault.headers))
                await _write(writer, answer, request)
                return request.keep_alive
            if fault.kind == "chatty_stream" and route == "stream":
                await self._chatter(request, writer, rest, fault.delay)
                return False
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay)
            elif fault.kind == "http":
                body = {"detail": fault.error}
                if fault.error_type:
                    body["error_type"] = fault.error_type
                await _write(writer, _json_answer(fault.status, body, dict(fault.headers)), request)
                return request.keep_alive
            elif fault.kind == "malformed_json":
                await _write(writer, _Answer(200, b'{"images": [{"url": '), request)
                return request.keep_alive
        if route == "stream":
            return await self._stream(request, writer, rest) and request.keep_alive
        if route == "run_stream":
            return await self._run_stream(request, writer, endpoint_id or "", fault)
        await _write(writer, self._answer(request, route, endpoint_id, rest, fault), request)
        return request.keep_alive

    def _route(self, request: _Request) -> tuple[str | None, str | None, str]:
        """The route, the endpoint id (the app for request routes) and the request id."""
        path, method = request.path, request.method
        if path.startswith("/run/") and method == "POST":
            endpoint_id = path[len("/run/") :]
            streamed = endpoint_id.removesuffix("/stream")
            # An id that itself ends in /stream (fal-ai/flux-krea-lora/stream) is that endpoint.
            if streamed != endpoint_id and self._knows(streamed) and not self._knows(endpoint_id):
                return "run_stream", streamed, ""
            return "run", endpoint_id, ""
        if path.startswith("/files/") and method == "GET":
            return "file", None, path[len("/files/") :]
        if path == "/v1/models/pricing" and method == "GET":
            return "pricing", None, ""
        if path == "/v1/models/requests/by-endpoint" and method == "GET":
            return "history", None, ""
        if path == "/storage/upload/initiate" and method == "POST":
            return "upload_initiate", None, ""
        if path.startswith("/storage/upload/") and method == "PUT":
            return "upload_put", None, path[len("/storage/upload/") :]
        if path.startswith("/queue/"):
            parts = path[len("/queue/") :].split("/")
            if method == "POST":
                return "submit", "/".join(parts), ""
            if len(parts) >= 4 and parts[2] == "requests":
                app, request_id, tail = "/".join(parts[:2]), parts[3], parts[4:]
                job = self._jobs.get(request_id)
                if job is not None and job.app == app:
                    app = job.endpoint_id  # the full id, so faults per endpoint match
                if method == "GET" and not tail:
                    return "result", app, request_id
                if method == "GET" and tail == ["status"]:
                    return "status", app, request_id
                if method == "GET" and tail == ["status", "stream"]:
                    return "stream", app, request_id
                if method == "PUT" and tail == ["cancel"]:
                    return "cancel", app, request_id
        return None, None, ""

    def _knows(self, endpoint_id: str) -> bool:
        """Whether ``endpoint_id`` is served (a handler, or a bound endpoint)."""
        from falbind.models.bindings import ENDPOINTS

        return endpoint_id in self._handlers or endpoint_id in ENDPOINTS

    async def _run_stream(
        self,
        request: _Request,
        writer: asyncio.StreamWriter,
        endpoint_id: str,
        fault: Fault | None,
    ) -> bool:
        """fal's streaming endpoint: progress events, then the output as the last event
        (server-sent events over a chunked body); whether the connection stays open.
        Faults injected on route ``run_stream`` apply before the answer;
        :attr:`stream_break_after` breaks a stream after it started.
        """
        if not self._authorized(request):
            await _write(writer, _unauthorized(), request)
            return request.keep_alive
        answer = self._accept(request, "run", endpoint_id, fault)
        if answer.status != 200:
            await _write(writer, answer, request)
            return request.keep_alive
        head = {"Transfer-Encoding": "chunked", "Cache-Control": "no-cache", **answer.headers}
        writer.write(_head(200, head, "text/event-stream", None))
        if self.stream_partials is not None:
            before = self.stream_partials(json.loads(answer.body))
        else:
            steps = self.stream_progress_events
            before = [
                {"status": "IN_PROGRESS", "progress": round(step / (steps + 1), 3)}
                for step in range(1, steps + 1)
            ]
        try:
            for step, event in enumerate(before, 1):
                writer.write(_chunk(f": keepalive\n\ndata: {json.dumps(event)}\n\n".encode()))
                await writer.drain()
                if self.stream_break_after == step:
                    _reset(writer)
                    return False
                await asyncio.sleep(self.processing_time / max(len(before), 1))
            writer.write(_chunk(b"data: " + answer.body + b"\n\n") + b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            self.streams_cut_short += 1
            raise
        return request.keep_alive

    def _pricing(self, request: _Request) -> _Answer:
        """fal's ``GET /v1/models/pricing?endpoint_id=a,b`` (1 to 50 ids)."""
        ids = [i for i in request.query.get("endpoint_id", "").split(",") if i]
        if not 1 <= len(ids) <= 50:
            return _json_answer(422, {"detail": "endpoint_id takes 1 to 50 ids"})
        prices = []
        for endpoint_id in ids:
            price = self.prices.get(endpoint_id)
            if price is None and self._knows(endpoint_id):
                price = self.default_price
            if price is not None:
                prices.append(
                    {
                        "endpoint_id": endpoint_id,
                        "unit_price": float(price[0]),
                        "unit": price[1],
                        "currency": "USD",
                    }
                )
        return _json_answer(200, {"prices": prices, "next_cursor": None, "has_more": False})

    def _history(self, request: _Request) -> _Answer:
        """fal's request history, ``GET /v1/models/requests/by-endpoint?endpoint_id=&start=
        &end=`` (ISO 8601 times; one page: the fake never has more than fits)."""
        endpoint_id = request.query.get("endpoint_id")
        if not endpoint_id:
            return _json_answer(422, {"detail": "endpoint_id is required"})
        try:
            start = _iso_seconds(request.query.get("start"), default=time.time() - 86400)
            end = _iso_seconds(request.query.get("end"), default=time.time() + 1)
        except ValueError:
            return _json_answer(422, {"detail": "start and end are ISO 8601 date-times"})
        now = time.monotonic()
        items = [
            {
                "request_id": job.id,
                "endpoint_id": job.endpoint_id,
                "sent_at": _iso(job.sent_at),
                "status_code": (500 if job.error else 200)
                if job.phase(now) == "COMPLETED"
                else None,
                "json_input": job.json_input,
            }
            for job in list(self._jobs.values())
            if job.endpoint_id == endpoint_id and start <= job.sent_at <= end
        ]
        return _json_answer(200, {"items": items, "next_cursor": None, "has_more": False})

    def _take_fault(self, route: str | None, endpoint_id: str | None) -> Fault | None:
        with self._rules_lock:
            for rule in self._rules:
                if rule.matches(route, endpoint_id):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule.fault
        return None

    def _answer(
        self,
        request: _Request,
        route: str | None,
        endpoint_id: str | None,
        rest: str,
        fault: Fault | None,
    ) -> _Answer:
        if route == "file":
            found = self._uploaded(rest) or FakeFiles.get(rest)
            if found is None:
                return _json_answer(404, {"detail": "File not found"})
            return _Answer(200, found[1], content_type=found[0])
        if route == "upload_put":
            return self._store_upload(request, rest)
        if route == "upload_initiate":
            return self._initiate_upload(request) if self._authorized(request) else _unauthorized()
        if route == "pricing":
            return self._pricing(request) if self._authorized(request) else _unauthorized()
        if route == "history":
            return self._history(request) if self._authorized(request) else _unauthorized()
        if route is None or endpoint_id is None:
            return _json_answer(404, {"detail": f"Not found: {request.method} {request.path}"})
        if not self._authorized(request):
            return _unauthorized()
        if route in ("run", "submit"):
            return self._accept(request, route, endpoint_id, fault)
        job = self._jobs.get(rest)
        if job is None or job.endpoint_id != endpoint_id:
            return _json_answer(404, {"detail": f"Request {rest!r} not found"})
        now = time.monotonic()
        base = self._request_base(job)
        if route == "status":
            with_logs = request.query.get("logs") == "1"
            return _json_answer(200, job.status(now, base, with_logs), _request_id(job.id))
        if route == "cancel":
            if job.phase(now) == "COMPLETED":
                return _json_answer(400, {"status": "ALREADY_COMPLETED"})
            job.error = ("Request was cancelled", "request_cancelled")
            job.changed.set()
            return _json_answer(202, {"status": "CANCELLATION_REQUESTED"})
        # route == "result"
        if job.phase(now) != "COMPLETED":
            return _json_answer(400, {"detail": "Request is still in progress"})
        if job.error is not None:
            return _json_answer(
                500, {"detail": job.error[0], "error_type": job.error[1]}, _request_id(job.id)
            )
        return _json_answer(200, job.output, _request_id(job.id))

    def _accept(
        self, request: _Request, route: str, endpoint_id: str, fault: Fault | None
    ) -> _Answer:
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return _json_answer(400, {"detail": "Request body is not valid JSON"})
        if not isinstance(body, dict):
            return _json_answer(422, {"detail": "Request body must be a JSON object"})
        output = self._output(endpoint_id, body)
        if isinstance(output, _Answer):
            return output
        request_id = str(uuid.UUID(int=next(self._ids)))
        if route == "run":
            return _json_answer(200, output, _request_id(request_id))
        job = _Job(
            id=request_id,
            endpoint_id=endpoint_id,
            app=_app(endpoint_id),
            output=output,
            submitted=time.monotonic(),
            queue_time=self.queue_time,
            processing_time=self.processing_time,
            json_input=body,
        )
        if fault is not None and fault.kind == "never_complete":
            job.never_complete = True
        elif fault is not None and fault.kind == "completed_with_error":
            job.error = (fault.error, fault.error_type)
        self._jobs[request_id] = job
        base = self._request_base(job)
        data = {
            "request_id": request_id,
            "status": "IN_QUEUE",
            "queue_position": 0,
            "status_url": f"{base}/status",
            "response_url": base,
            "cancel_url": f"{base}/cancel",
        }
        return _json_answer(200, data, _request_id(request_id))

    def _authorized(self, request: _Request) -> bool:
        """Whether ``request`` carries the key (always, when the server has none)."""
        return self.key is None or request.headers.get("authorization") == f"Key {self.key}"

    def _initiate_upload(self, request: _Request) -> _Answer:
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return _json_answer(400, {"detail": "Request body is not valid JSON"})
        file_name = body.get("file_name") if isinstance(body, dict) else None
        content_type = body.get("content_type") if isinstance(body, dict) else None
        if not (isinstance(file_name, str) and file_name and isinstance(content_type, str)):
            return _json_answer(422, {"detail": "content_type and file_name are required"})
        upload_id = f"{next(self._ids):08x}"
        self._uploads[upload_id] = _Stored(file_name)
        data = {
            "upload_url": f"{self.url}/storage/upload/{upload_id}",
            "file_url": f"{self.url}/files/uploads/{upload_id}/{quote(file_name, safe='')}",
        }
        return _json_answer(200, data)

    def _store_upload(self, request: _Request, upload_id: str) -> _Answer:
        stored = self._uploads.get(upload_id)
        if stored is None:
            return _json_answer(404, {"detail": f"Upload {upload_id!r} not found"})
        stored.data = request.body
        stored.content_type = request.headers.get("content-type", "application/octet-stream")
        return _Answer(200, content_type="text/plain")

    def _uploaded(self, name: str) -> tuple[str, bytes] | None:
        """The content type and bytes of an uploaded file (``uploads/<id>/<file name>``)."""
        prefix, _, rest = name.partition("/")
        upload_id, _, file_name = rest.partition("/")
        stored = self._uploads.get(upload_id) if prefix == "uploads" else None
        if stored is None or stored.data is None or stored.file_name != file_name:
            return None
        return stored.content_type, stored.data

    def _output(self, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any] | _Answer:
        handler = self._handlers.get(endpoint_id)
        if handler is not None:
            return handler(body)
        from falbind.models.bindings import ENDPOINTS

        if endpoint_id not in ENDPOINTS:
            return _json_answer(404, {"detail": f"Application {endpoint_id!r} not found"})
        spec = ENDPOINTS[endpoint_id]
        try:
            spec.input_model.model_validate(body)
        except ValidationError as exc:
            # Like fal, ignore unknown parameters (our client refuses them before sending).
            detail = [
                {
                    "loc": ["body", *error["loc"]],
                    "msg": error["msg"],
                    "type": error["type"],
                    "input": error.get("input"),
                }
                for error in exc.errors(include_url=False, include_context=False)
                if error["type"] not in _UNKNOWN_FIELD_ERRORS
            ]
            if detail:
                return _json_answer(422, {"detail": json.loads(json.dumps(detail, default=str))})
        context = OutputContext.from_input(self.url, body)
        key = (endpoint_id, context)
        output = self._outputs.get(key)
        if output is None:
            output = self._outputs[key] = synthesize_output(spec.output_model, context)
        return _echo(output, body)

    def _request_base(self, job: _Job) -> str:
        return f"{self.queue_url}/{job.app}/requests/{job.id}"

    async def _chatter(
        self, request: _Request, writer: asyncio.StreamWriter, request_id: str, interval: float
    ) -> None:
        """The status event, again every ``interval`` seconds, never ending the stream."""
        job = self._jobs.get(request_id)
        if job is None:
            await _write(writer, _json_answer(404, {"detail": "Request not found"}), request)
            return
        head = {"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"}
        writer.write(_head(200, head, "text/event-stream", None))
        while True:
            data = job.status(time.monotonic(), self._request_base(job), False)
            if data["status"] == "COMPLETED":
                data = {"status": "IN_PROGRESS", "request_id": job.id, "logs": None}
            writer.write(_chunk(f"data: {json.dumps(data)}\n\n".encode()))
            await writer.drain()
            await asyncio.sleep(interval)

    async def _stream(
        self, request: _Request, writer: asyncio.StreamWriter, request_id: str
    ) -> bool:
        """Status events until COMPLETED (then the chunked body ends; the connection stays)."""
        job = self._jobs.get(request_id)
        if job is None or not self._authorized(request):
            await _write(writer, _json_answer(404, {"detail": "Request not found"}), request)
            return True
        with_logs = request.query.get("logs") == "1"
        head = _head(
            200,
            {"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"},
            "text/event-stream",
            None,
        )
        writer.write(head)
        sent: str | None = None
        while True:
            now = time.monotonic()
            phase = job.phase(now)
            if phase != sent:
                event = json.dumps(job.status(now, self._request_base(job), with_logs))
                writer.write(_chunk(f"data: {event}\n\n".encode()))
                sent = phase
            else:
                writer.write(_chunk(b": keepalive\n\n"))
            await writer.drain()
            if phase == "COMPLETED":
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                return True
            wait = job.next_change(now)
            job.changed.clear()
            timeout = _KEEPALIVE_SECONDS if wait is None else min(wait, _KEEPALIVE_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.changed.wait(), max(timeout, 0.0))


def _peer(writer: asyncio.StreamWriter) -> tuple[str, int] | None:
    peer = writer.get_extra_info("peername")
    return (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None


def _app(endpoint_id: str) -> str:
    return "/".join(endpoint_id.split("/")[:2])


def _unauthorized() -> _Answer:
    return _json_answer(401, {"detail": "No valid credentials were provided"})


def _request_id(request_id: str) -> dict[str, str]:
    return {"x-fal-request-id": request_id}


def _echo(output: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """``output`` with the request's ``prompt`` and ``seed`` where the output has them too."""
    echoed = dict(output)
    for key, kind in (("prompt", str), ("seed", int)):
        value = body.get(key)
        if (
            isinstance(echoed.get(key), kind)
            and isinstance(value, kind)
            and not isinstance(value, bool)
        ):
            echoed[key] = value
    return echoed


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    path, _, query = target.partition("?")
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" and (version != "HTTP/1.0" or connection == "keep-alive")
    return _Request(method, unquote(path), dict(parse_qsl(query)), headers, body, keep_alive)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _head(status: int, headers: Mapping[str, str], content_type: str, length: int | None) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Content-Type: {content_type}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _write(writer: asyncio.StreamWriter, answer: _Answer, request: _Request) -> None:
    headers = dict(answer.headers)
    if not request.keep_alive:
        headers["Connection"] = "close"
    writer.write(_head(answer.status, headers, answer.content_type, len(answer.body)) + answer.body)
    await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (linger 0) instead of an orderly close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def serve_until_interrupted(
    port: int,
    key: str | None,
    echo: Callable[[str], None],
    *,
    queue_time: float = 0.0,
    processing_time: float = 0.02,
) -> int:
    """``falbind fake-server``: serve until Ctrl-C (or SIGTERM); the exit status (0).
    ``queue_time``/``processing_time``: how long a queued request waits and runs."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        with FakeFalServer(
            port=port, key=key, queue_time=queue_time, processing_time=processing_time
        ) as server:
            echo(f"fake fal server listening on {server.url}")
            echo(f"  run_url={server.run_url}")
            echo(f"  queue_url={server.queue_url}")
            echo(f"  storage_url={server.storage_url}")
            echo("press Ctrl-C to stop")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                echo("stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
