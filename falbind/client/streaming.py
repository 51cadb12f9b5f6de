"""fal's streaming endpoint (``POST {run_url}/{endpoint_id}/stream``): server-sent events,
each ``data:`` a JSON object (progress, partial output, then the final output), as
fal-client's ``stream`` reads them.

:class:`FalStream` and :class:`AsyncFalStream` are what ``client.stream(...)`` returns: iterate
them for each event as a dict, close them (``with``) to stop reading early, and ask
``get_final_output()`` for the last event as the endpoint's Output model, in the style of
openai-python's streams (``get_final_completion()``). fal's OpenAPI documents describe the
endpoint's Output, not each event, so only the output is typed: the events stay dicts.

The event-stream framing is parsed here (a few lines, per the WHATWG server-sent events
rules: ``data:`` lines joined by newlines, a blank line ends an event, ``:`` lines are
comments) rather than with httpx-sse, to avoid a dependency for what the queue's status
stream already does by hand too.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar, cast

import httpx
from pydantic import ValidationError

from ._core import Call, Endpoint, decode_output
from .errors import REQUEST_ID_HEADER, FalDecodeError

__all__ = [
    "AsyncFalStream",
    "EventParser",
    "FalStream",
    "aevents",
    "events",
    "is_json",
    "stream_variant",
]

OutputT = TypeVar("OutputT")
Opened = Callable[[httpx.Response], None]
"""Told the streaming answer once it arrived (its status and headers, for decoding)."""


def stream_variant(call: Call) -> Call:
    """A copy of a ``run`` call aimed at the endpoint's stream (``…/stream``), asking for
    server-sent events."""
    headers = httpx.Headers(call.headers)
    headers["Accept"] = "text/event-stream"
    return dataclasses.replace(call, url=f"{call.url.rstrip('/')}/stream", headers=headers)


class EventParser:
    """Server-sent-event lines in, each complete event's JSON object out."""

    __slots__ = ("_data", "_response")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._data: list[str] = []

    def feed(self, line: str) -> dict[str, Any] | None:
        """The event ``line`` completes (a blank line after ``data:`` lines), else ``None``."""
        line = line.rstrip("\r")
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None  # "event", "id", "retry" carry nothing fal uses

    def flush(self) -> dict[str, Any] | None:
        """The pending event, if any (at a blank line or the end of the stream)."""
        if not self._data:
            return None
        text, self._data = "\n".join(self._data), []
        try:
            event = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self._bad(f"a stream event is not JSON: {text[:200]!r}", text) from exc
        if not isinstance(event, dict):
            raise self._bad(f"a stream event is not a JSON object: {text[:200]!r}", event)
        return event

    def _bad(self, message: str, body: Any) -> FalDecodeError:
        return FalDecodeError.from_response(message, self._response, body)


def is_json(response: httpx.Response) -> bool:
    """Whether a 2xx answer is plain JSON rather than an event stream: an app that does not
    stream answers its output at once, read as the only event."""
    content_type: str = response.headers.get("content-type", "")
    return content_type.startswith("application/json")


def events(response: httpx.Response, lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Each event of a streamed answer, from its text lines."""
    parser = EventParser(response)
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event
    last = parser.flush()
    if last is not None:
        yield last


async def aevents(
    response: httpx.Response, lines: AsyncIterator[str]
) -> AsyncIterator[dict[str, Any]]:
    """:func:`events` over an async stream."""
    parser = EventParser(response)
    async for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event
    last = parser.flush()
    if last is not None:
        yield last


class _StreamBase(Generic[OutputT]):
    """What the sync and async streams share: the events seen so far and the final output."""

    def __init__(self, endpoint: Endpoint, *, strict: bool) -> None:
        self._endpoint = endpoint
        self._strict = strict
        self._response: httpx.Response | None = None
        self._state: Literal["open", "done", "closed", "failed"] = "open"
        self._error: Exception | None = None
        self._last: dict[str, Any] | None = None
        self._current: OutputT | None = None
        self._current_is_last = False
        self._final: tuple[OutputT] | None = None

    @property
    def endpoint_id(self) -> str:
        """The endpoint streamed (its full id)."""
        return self._endpoint.id

    @property
    def request_id(self) -> str | None:
        """fal's request id (header ``x-fal-request-id``), once the answer has arrived."""
        return None if self._response is None else self._response.headers.get(REQUEST_ID_HEADER)

    @property
    def current_output(self) -> OutputT | None:
        """The latest event so far that validated as the endpoint's Output model, as that
        model (a partial output that already has the output's shape), else ``None``; always
        ``None`` for an untyped endpoint, whose events cannot be told apart. Iteration goes on
        yielding dicts."""
        return self._current

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._endpoint.id!r} {self._state}>"

    def _opened(self, response: httpx.Response) -> None:
        self._response = response

    def _observe(self, event: dict[str, Any]) -> dict[str, Any]:
        self._last = event
        spec = self._endpoint.spec
        if spec is not None:
            try:
                self._current = cast(OutputT, spec.output_model.model_validate(event))
                self._current_is_last = True
            except ValidationError:
                self._current_is_last = False
        return event

    def _failed(self, exc: BaseException) -> None:
        self._state = "failed"
        if isinstance(exc, Exception):
            self._error = exc

    def _final_output(self) -> OutputT:
        """The last event as the Output model, once the stream ended (see ``get_final_output``)."""
        if self._final is not None:
            return self._final[0]
        if self._state == "failed" and self._error is not None:
            raise self._error
        if self._state != "done":
            raise RuntimeError(
                f"the stream from {self._endpoint.id} was closed before its end: "
                "it has no final output"
            )
        response = self._response
        assert response is not None  # done: the answer arrived
        last = self._last
        if last is None:
            raise FalDecodeError.from_response(
                f"the stream from {self._endpoint.id} ended without an event", response
            )
        spec = self._endpoint.spec
        output: OutputT
        if spec is None:
            output = cast(OutputT, last)  # untyped: the dict itself
        elif self._current_is_last:
            output = cast(OutputT, self._current)  # set with _current_is_last
        else:
            output = decode_output(
                spec.output_model,
                last,
                source=f"the last event of the stream from {self._endpoint.id}",
                strict=self._strict,
                status_code=response.status_code,
                request_id=response.headers.get(REQUEST_ID_HEADER),
                headers=response.headers,
            )
        self._final = (output,)
        return output


class FalStream(_StreamBase[OutputT]):
    """A call to fal's streaming endpoint (``client.stream(...)``).

    Iterating yields each server-sent event as a dict (progress, partial output, then the
    output); the request is sent when iteration starts. Use it as a context manager (or call
    :meth:`close`) to stop early: leaving the ``with`` block closes the HTTP response, so no
    further event is read. :meth:`get_final_output` returns the last event as the endpoint's
    Output model (reading the rest of the stream first), decoded as leniently as ``run``'s
    answers; for an untyped endpoint, the dict.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        events: Callable[[Opened], Generator[dict[str, Any], None, None]],
        *,
        strict: bool,
    ) -> None:
        super().__init__(endpoint, strict=strict)
        self._events = events(self._opened)

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._state != "open":
            raise StopIteration
        try:
            event = next(self._events)
        except StopIteration:
            self._state = "done"
            raise
        except BaseException as exc:
            self._failed(exc)
            raise
        return self._observe(event)

    def get_final_output(self) -> OutputT:
        """The stream's last event as the endpoint's Output model, after reading whatever
        events are left (a dict for an untyped endpoint).

        An event that does not match the model is still returned as the model
        (``schema_mismatch`` lists the problems) with an :class:`~falbind.OutputSchemaWarning`;
        with ``strict_outputs=True`` it raises :class:`~falbind.FalDecodeError`. A stream that
        failed raises its error again; one closed before its end raises ``RuntimeError``.
        """
        for _ in self:
            pass
        return self._final_output()

    def close(self) -> None:
        """Stop reading: close the HTTP response (the connection is not reused)."""
        if self._state == "open":
            self._state = "closed"
        self._events.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncFalStream(_StreamBase[OutputT]):
    """:class:`FalStream` for :class:`~falbind.AsyncFalClient`: ``async for event in stream``,
    ``async with``, ``await stream.close()`` and ``await stream.get_final_output()``."""

    def __init__(
        self,
        endpoint: Endpoint,
        events: Callable[[Opened], AsyncGenerator[dict[str, Any], None]],
        *,
        strict: bool,
    ) -> None:
        super().__init__(endpoint, strict=strict)
        self._events = events(self._opened)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._state != "open":
            raise StopAsyncIteration
        try:
            event = await anext(self._events)
        except StopAsyncIteration:
            self._state = "done"
            raise
        except BaseException as exc:
            self._failed(exc)
            raise
        return self._observe(event)

    async def get_final_output(self) -> OutputT:
        """See :meth:`FalStream.get_final_output`."""
        async for _ in self:
            pass
        return self._final_output()

    async def close(self) -> None:
        """Stop reading: close the HTTP response (the connection is not reused)."""
        if self._state == "open":
            self._state = "closed"
        await self._events.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
