"""fal's streaming endpoint (``POST {run_url}/{endpoint_id}/stream``): server-sent events,
each ``data:`` a JSON object (progress, partial output, then the final output), as
fal-client's ``stream`` reads them.

The event-stream framing is parsed here (a few lines, per the WHATWG server-sent events
rules: ``data:`` lines joined by newlines, a blank line ends an event, ``:`` lines are
comments) rather than with httpx-sse, to avoid a dependency for what the queue's status
stream already does by hand too.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from ._core import Call
from .errors import REQUEST_ID_HEADER, FalDecodeError

__all__ = ["EventParser", "aevents", "events", "is_json", "stream_variant"]


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
        return FalDecodeError(
            message,
            status_code=self._response.status_code,
            request_id=self._response.headers.get(REQUEST_ID_HEADER),
            body=body,
            headers=self._response.headers,
        )


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
