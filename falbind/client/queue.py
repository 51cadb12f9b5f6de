"""fal's queue: typed request statuses and handles on a submitted request, sync and async.

A handle watches its request through fal's status stream (``GET {status_url}/stream``, server-sent
events carrying status JSON) where it is served, and otherwise polls ``GET {status_url}`` on a
schedule that starts at 20 ms and backs off to 1 s. The status, response and cancel URLs are the
ones fal returned on submit (they drop the endpoint's sub-path); a handle rebuilt from a stored
request id builds them the same way fal does.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Protocol, TypeAlias, TypeVar

import httpx

from ._core import Call, ClientConfig, Endpoint, QueueURLs, decode_object
from .errors import (
    REQUEST_ID_HEADER,
    BadRequestError,
    FalDecodeError,
    FalError,
    FalRequestFailedError,
    FalTimeoutError,
    InvalidArgumentsError,
)
from .retry import PollSchedule, as_transport_error

__all__ = [
    "AsyncQueueHandle",
    "Completed",
    "InProgress",
    "LogEntry",
    "QueueHandle",
    "QueueStatus",
    "Queued",
    "parse_status",
]

OutputT = TypeVar("OutputT")
log = logging.getLogger("falbind")
_STREAM_READ_TIMEOUT: Final = 60.0
_CANCEL_TIMEOUT: Final = 2.0
"""How long the cancel sent when ``client_timeout`` passes may take (the deadline is past)."""


class SyncSender(Protocol):
    """What a :class:`QueueHandle` needs of its :class:`~falbind.FalClient` (a protocol, so the
    handles do not import the client that creates them)."""

    _config: ClientConfig
    _status_stream: bool

    def _send(self, call: Call) -> httpx.Response: ...

    def _open_stream(self, call: Call) -> AbstractContextManager[httpx.Response]:
        """``call`` (a status stream) opened, its body not yet read; closed on exit."""
        ...


class AsyncSender(Protocol):
    """What an :class:`AsyncQueueHandle` needs of its :class:`~falbind.AsyncFalClient`."""

    _config: ClientConfig
    _status_stream: bool

    async def _send(self, call: Call) -> httpx.Response: ...

    def _open_stream(self, call: Call) -> AbstractAsyncContextManager[httpx.Response]:
        """``call`` (a status stream) opened, its body not yet read; closed on exit."""
        ...


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log line of a running request."""

    message: str
    level: str | None = None
    source: str | None = None
    timestamp: str | None = None


@dataclass(frozen=True, slots=True)
class Queued:
    """Waiting in fal's queue; ``position`` 0 is next."""

    position: int | None = None


@dataclass(frozen=True, slots=True)
class InProgress:
    """Running; ``logs`` are filled when asked for with ``with_logs=True``."""

    logs: list[LogEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Completed:
    """Done, successfully unless ``error`` is set."""

    logs: list[LogEntry] = field(default_factory=list)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None


QueueStatus: TypeAlias = Queued | InProgress | Completed
StatusCallback: TypeAlias = Callable[[QueueStatus], object]
AsyncStatusCallback: TypeAlias = Callable[[QueueStatus], Awaitable[object] | object]


def _logs(data: Mapping[str, Any]) -> list[LogEntry]:
    entries = data.get("logs") or []
    if not isinstance(entries, list):
        return []
    return [
        LogEntry(
            message=str(entry.get("message", "")),
            level=entry.get("level"),
            source=entry.get("source"),
            timestamp=entry.get("timestamp"),
        )
        for entry in entries
        if isinstance(entry, Mapping)
    ]


def parse_status(data: Mapping[str, Any]) -> QueueStatus:
    """The typed status from fal's status JSON; ``ValueError`` for an unknown status."""
    status = data.get("status")
    if status == "IN_QUEUE":
        position = data.get("queue_position")
        return Queued(position if isinstance(position, int) else None)
    if status == "IN_PROGRESS":
        return InProgress(_logs(data))
    if status == "COMPLETED":
        metrics = data.get("metrics")
        error = data.get("error")
        error_type = data.get("error_type")
        return Completed(
            logs=_logs(data),
            metrics=metrics if isinstance(metrics, Mapping) else {},
            error=None if error is None else str(error),
            error_type=error_type if isinstance(error_type, str) else None,
        )
    raise ValueError(f"unknown queue status {status!r}")


def _status_from_response(response: httpx.Response) -> QueueStatus:
    data = decode_object(response)
    try:
        return parse_status(data)
    except ValueError as exc:
        raise FalDecodeError(
            str(exc),
            status_code=response.status_code,
            request_id=response.headers.get(REQUEST_ID_HEADER),
        ) from exc


def _event_status(line: str) -> QueueStatus | None:
    """The status carried by one server-sent-event line, ``None`` for other lines."""
    if not line.startswith("data:"):
        return None
    data = json.loads(line[5:])
    if not isinstance(data, Mapping):
        raise ValueError("status event is not a JSON object")
    return parse_status(data)


def _is_event_stream(response: httpx.Response) -> bool:
    return response.status_code == 200 and response.headers.get("content-type", "").startswith(
        "text/event-stream"
    )


def _may_serve_stream(response: httpx.Response) -> bool:
    """Whether a server that did not stream this time may stream later (it failed transiently)."""
    return response.status_code == 429 or response.status_code >= 500


def _split(buffer: bytes, chunk: bytes) -> tuple[list[str], bytes]:
    """The complete lines of ``buffer + chunk``, and what is left of it.

    A status stream is server-sent events, which are UTF-8 whatever the headers say (the SSE
    standard), so the body is read as bytes and each line decoded as UTF-8 (malformed bytes
    replaced, as the standard's decoder does): httpx's text decoding would look up a charset in
    the headers for every stream (~40 µs of a sync subscribe's ~1.5 ms). A newline byte never
    occurs inside a UTF-8 character, so splitting before decoding is exact."""
    *complete, rest = (buffer + chunk).split(b"\n")
    return [line.rstrip(b"\r").decode("utf-8", "replace") for line in complete], rest


def _lines(chunks: Iterator[bytes], deadline: _Deadline) -> Iterator[str]:
    """The lines of an event stream; checks the deadline at every chunk, so a stream that keeps
    sending (status events, keep-alive comments) cannot hold a caller past it."""
    buffer = b""
    for chunk in chunks:
        if deadline.expired():
            raise _DeadlineExpired
        complete, buffer = _split(buffer, chunk)
        yield from complete
    if buffer:
        yield from _split(buffer, b"\n")[0]


async def _alines(chunks: AsyncIterator[bytes], deadline: _Deadline) -> AsyncIterator[str]:
    """:func:`_lines` over an async byte stream."""
    buffer = b""
    async for chunk in chunks:
        if deadline.expired():
            raise _DeadlineExpired
        complete, buffer = _split(buffer, chunk)
        for line in complete:
            yield line
    if buffer:
        for line in _split(buffer, b"\n")[0]:
            yield line


class _StreamUnavailable(Exception):
    """The status stream is not served, broke, or went quiet: poll instead."""


class _Deadline:
    """A client-side deadline (``client_timeout``), or none."""

    __slots__ = ("_at",)

    def __init__(self, seconds: float | None) -> None:
        if seconds is not None and seconds <= 0:
            raise InvalidArgumentsError.because(
                "client_timeout", "client_timeout must be > 0", seconds
            )
        self._at = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self._at is None else self._at - time.monotonic()

    def expired(self) -> bool:
        remaining = self.remaining()
        return remaining is not None and remaining <= 0

    def clamp(self, seconds: float) -> float:
        remaining = self.remaining()
        return seconds if remaining is None else max(0.0, min(seconds, remaining))


def check_client_timeout(seconds: float | None) -> None:
    """Refuse a ``client_timeout`` that is not > 0 before anything is submitted."""
    _Deadline(seconds)


class _HandleBase(Generic[OutputT]):
    __slots__ = ("_endpoint", "_urls", "request_id")

    def __init__(self, endpoint: Endpoint, request_id: str, urls: QueueURLs) -> None:
        self._endpoint = endpoint
        self._urls = urls
        self.request_id = request_id
        """fal's id of the request: store it to rebuild the handle later (``get_handle``)."""

    @property
    def endpoint_id(self) -> str:
        return self._endpoint.id

    @property
    def status_url(self) -> str:
        return self._urls.status

    @property
    def response_url(self) -> str:
        return self._urls.response

    @property
    def cancel_url(self) -> str:
        return self._urls.cancel

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._endpoint.id} request_id={self.request_id!r}>"

    def _failed(self, completed: Completed) -> FalRequestFailedError:
        assert completed.error is not None
        message = f"{self._endpoint.id} request {self.request_id} failed: {completed.error}"
        if completed.error_type:
            message += f" (error_type={completed.error_type})"
        return FalRequestFailedError(
            message,
            request_id=self.request_id,
            error=completed.error,
            error_type=completed.error_type,
            logs=list(completed.logs),
        )

    def _timed_out(self, client_timeout: float | None) -> FalTimeoutError:
        return FalTimeoutError(
            f"{self._endpoint.id} request {self.request_id} did not complete within "
            f"{client_timeout}s; it was cancelled"
        )


def already_completed(error: BadRequestError) -> bool:
    """Whether a 400 answer to a cancel says the request had already completed."""
    return isinstance(error.body, Mapping) and error.body.get("status") == "ALREADY_COMPLETED"


class QueueHandle(_HandleBase[OutputT]):
    """A request in fal's queue, watched with a :class:`~falbind.FalClient`."""

    __slots__ = ("_client",)

    def __init__(
        self, client: SyncSender, endpoint: Endpoint, request_id: str, urls: QueueURLs
    ) -> None:
        super().__init__(endpoint, request_id, urls)
        self._client = client

    def status(self, *, with_logs: bool = False) -> QueueStatus:
        """The request's current status (one GET, retried when it fails transiently)."""
        call = self._client._config.status_call(self._urls, with_logs=with_logs)
        return _status_from_response(self._client._send(call))

    def iter_events(self, *, with_logs: bool = False) -> Iterator[QueueStatus]:
        """Statuses until the request completes; the last one is :class:`Completed`."""
        return self._events(with_logs, _Deadline(None))

    def result(self) -> OutputT:
        """Wait for completion, then the endpoint's Output model.

        Raises :class:`~falbind.FalRequestFailedError` if the request completed with an error.
        """
        return self._wait(with_logs=False, on_queue_update=None, client_timeout=None)

    def get(self) -> OutputT:
        """fal-client's name for :meth:`result`."""
        return self.result()

    def cancel(self) -> bool:
        """Ask fal to cancel the request: ``True`` if fal accepted, ``False`` if it had already
        completed (fal answers 400 ``ALREADY_COMPLETED``)."""
        try:
            self._client._send(self._client._config.cancel_call(self._urls))
        except BadRequestError as exc:
            if already_completed(exc):
                return False
            raise
        return True

    def _wait(
        self,
        *,
        with_logs: bool,
        on_queue_update: StatusCallback | None,
        client_timeout: float | None,
    ) -> OutputT:
        deadline = _Deadline(client_timeout)
        completed: Completed | None = None
        try:
            for status in self._events(with_logs, deadline):
                if on_queue_update is not None:
                    on_queue_update(status)
                if isinstance(status, Completed):
                    completed = status
        except _DeadlineExpired:
            self._cancel_quietly()
            raise self._timed_out(client_timeout) from None
        assert completed is not None
        if completed.error is not None:
            raise self._failed(completed)
        response = self._client._send(self._client._config.result_call(self._urls))
        output: OutputT = self._endpoint.decode_output(
            response, strict=self._client._config.strict_outputs
        )
        return output

    def _cancel_quietly(self) -> None:
        try:
            self._client._send(
                self._client._config.cancel_call(self._urls, timeout=_CANCEL_TIMEOUT)
            )
        except BadRequestError as exc:
            if not already_completed(exc):
                log.warning("could not cancel request %s: %s", self.request_id, exc)
        except FalError as exc:
            log.warning("could not cancel request %s: %s", self.request_id, exc)

    def _events(self, with_logs: bool, deadline: _Deadline) -> Iterator[QueueStatus]:
        if self._client._status_stream:
            try:
                yield from self._stream(with_logs, deadline)
                return
            except _StreamUnavailable:
                pass
        yield from self._poll(with_logs, deadline)

    def _stream(self, with_logs: bool, deadline: _Deadline) -> Iterator[QueueStatus]:
        if deadline.expired():
            raise _DeadlineExpired
        read_timeout = deadline.clamp(_STREAM_READ_TIMEOUT)
        completed = False
        call = self._client._config.stream_call(
            self._urls, with_logs=with_logs, read_timeout=read_timeout
        )
        try:
            with self._client._open_stream(call) as response:
                if not _is_event_stream(response):
                    self._client._status_stream = _may_serve_stream(response)
                    raise _StreamUnavailable
                for line in _lines(response.iter_bytes(), deadline):
                    status = _event_status(line)
                    if status is not None:
                        yield status
                        completed = isinstance(status, Completed)
        except (httpx.TransportError, ValueError) as exc:
            log.debug("status stream of %s ended (%s); polling", self.request_id, exc)
        if not completed:
            raise _StreamUnavailable

    def _poll(self, with_logs: bool, deadline: _Deadline) -> Iterator[QueueStatus]:
        schedule = PollSchedule()
        previous: type[QueueStatus] | None = None
        while True:
            if deadline.expired():
                raise _DeadlineExpired
            call = self._client._config.status_call(
                self._urls, with_logs=with_logs, read_timeout=deadline.remaining()
            )
            try:
                status = _status_from_response(self._client._send(call))
            except FalError:
                if deadline.expired():
                    raise _DeadlineExpired from None
                raise
            yield status
            if isinstance(status, Completed):
                return
            if type(status) is not previous:
                schedule.reset()
                previous = type(status)
            delay = deadline.clamp(schedule.next_delay())
            time.sleep(delay)


class AsyncQueueHandle(_HandleBase[OutputT]):
    """A request in fal's queue, watched with an :class:`~falbind.AsyncFalClient`."""

    __slots__ = ("_client",)

    def __init__(
        self, client: AsyncSender, endpoint: Endpoint, request_id: str, urls: QueueURLs
    ) -> None:
        super().__init__(endpoint, request_id, urls)
        self._client = client

    async def status(self, *, with_logs: bool = False) -> QueueStatus:
        """The request's current status (one GET, retried when it fails transiently)."""
        call = self._client._config.status_call(self._urls, with_logs=with_logs)
        return _status_from_response(await self._client._send(call))

    def iter_events(self, *, with_logs: bool = False) -> AsyncIterator[QueueStatus]:
        """Statuses until the request completes; the last one is :class:`Completed`."""
        return self._events(with_logs, _Deadline(None))

    async def result(self) -> OutputT:
        """Wait for completion, then the endpoint's Output model.

        Raises :class:`~falbind.FalRequestFailedError` if the request completed with an error.
        """
        return await self._wait(with_logs=False, on_queue_update=None, client_timeout=None)

    async def get(self) -> OutputT:
        """fal-client's name for :meth:`result`."""
        return await self.result()

    async def cancel(self) -> bool:
        """Ask fal to cancel the request; see :meth:`QueueHandle.cancel`."""
        try:
            await self._client._send(self._client._config.cancel_call(self._urls))
        except BadRequestError as exc:
            if already_completed(exc):
                return False
            raise
        return True

    async def _wait(
        self,
        *,
        with_logs: bool,
        on_queue_update: AsyncStatusCallback | None,
        client_timeout: float | None,
    ) -> OutputT:
        deadline = _Deadline(client_timeout)
        completed: Completed | None = None
        # The deadline is checked between events and caps each read; asyncio.timeout also
        # bounds whatever else awaits (a slow callback, a retry's wait), so it always holds.
        limit = asyncio.timeout(deadline.remaining())
        try:
            async with limit:
                async for status in self._events(with_logs, deadline):
                    if on_queue_update is not None:
                        outcome = on_queue_update(status)
                        if inspect.isawaitable(outcome):
                            await outcome
                    if isinstance(status, Completed):
                        completed = status
        except (_DeadlineExpired, TimeoutError) as exc:
            if isinstance(exc, TimeoutError) and not limit.expired():
                raise
            await self._cancel_quietly()
            raise self._timed_out(client_timeout) from None
        assert completed is not None
        if completed.error is not None:
            raise self._failed(completed)
        response = await self._client._send(self._client._config.result_call(self._urls))
        output: OutputT = self._endpoint.decode_output(
            response, strict=self._client._config.strict_outputs
        )
        return output

    async def _cancel_quietly(self) -> None:
        try:
            await self._client._send(
                self._client._config.cancel_call(self._urls, timeout=_CANCEL_TIMEOUT)
            )
        except BadRequestError as exc:
            if not already_completed(exc):
                log.warning("could not cancel request %s: %s", self.request_id, exc)
        except FalError as exc:
            log.warning("could not cancel request %s: %s", self.request_id, exc)

    async def _events(self, with_logs: bool, deadline: _Deadline) -> AsyncIterator[QueueStatus]:
        if self._client._status_stream:
            try:
                async for status in self._stream(with_logs, deadline):
                    yield status
                return
            except _StreamUnavailable:
                pass
        async for status in self._poll(with_logs, deadline):
            yield status

    async def _stream(self, with_logs: bool, deadline: _Deadline) -> AsyncIterator[QueueStatus]:
        if deadline.expired():
            raise _DeadlineExpired
        read_timeout = deadline.clamp(_STREAM_READ_TIMEOUT)
        completed = False
        call = self._client._config.stream_call(
            self._urls, with_logs=with_logs, read_timeout=read_timeout
        )
        try:
            async with self._client._open_stream(call) as response:
                if not _is_event_stream(response):
                    self._client._status_stream = _may_serve_stream(response)
                    raise _StreamUnavailable
                async for line in _alines(response.aiter_bytes(), deadline):
                    status = _event_status(line)
                    if status is not None:
                        yield status
                        completed = isinstance(status, Completed)
        except (httpx.TransportError, ValueError) as exc:
            log.debug("status stream of %s ended (%s); polling", self.request_id, exc)
        except Exception as exc:
            if isinstance(exc, _StreamUnavailable | _DeadlineExpired):
                raise
            if as_transport_error(exc) is None:  # aiohttp errors may arrive unwrapped
                raise
            log.debug("status stream of %s ended (%s); polling", self.request_id, exc)
        if not completed:
            raise _StreamUnavailable

    async def _poll(self, with_logs: bool, deadline: _Deadline) -> AsyncIterator[QueueStatus]:
        schedule = PollSchedule()
        previous: type[QueueStatus] | None = None
        while True:
            if deadline.expired():
                raise _DeadlineExpired
            call = self._client._config.status_call(
                self._urls, with_logs=with_logs, read_timeout=deadline.remaining()
            )
            try:
                status = _status_from_response(await self._client._send(call))
            except FalError:
                if deadline.expired():
                    raise _DeadlineExpired from None
                raise
            yield status
            if isinstance(status, Completed):
                return
            if type(status) is not previous:
                schedule.reset()
                previous = type(status)
            await asyncio.sleep(deadline.clamp(schedule.next_delay()))


class _DeadlineExpired(Exception):
    """The caller's ``client_timeout`` passed before the request completed."""
