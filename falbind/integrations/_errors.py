"""What the integrations need to know about a failed call: did fal possibly accept (and bill) it?

fal bills for work it ran. Once a request to fal's run or queue endpoint got a 2xx answer, or
was sent and its answer was lost (a read timeout, a reset), retrying the whole call may run
and bill the model twice. :class:`CallTracker` watches one call's HTTP exchanges through
httpx event hooks, so an integration can tell a failure before fal accepted anything (safe to
retry) from one after (never retried) without reaching into falbind's client.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from pydantic import ValidationError

from falbind.client.failures import may_be_billed

__all__ = [
    "CallTracker",
    "async_event_hooks",
    "describe_validation_error",
    "possibly_accepted",
    "sync_event_hooks",
    "tracking",
]

REQUEST_ID_HEADER: Final = "x-fal-request-id"

_CURRENT: contextvars.ContextVar[CallTracker | None] = contextvars.ContextVar(
    "falbind_call_tracker", default=None
)


@dataclass(slots=True)
class CallTracker:
    """What one integration call sent to fal and what fal answered."""

    posts_sent: int = 0
    """POSTs handed to the transport (run or queue submissions)."""
    accepted: bool = False
    """A POST got a 2xx answer: fal accepted a job."""
    request_ids: list[str] = field(default_factory=list)
    """fal's ids of the accepted jobs, in the order their answers arrived."""


@contextmanager
def tracking() -> Iterator[CallTracker]:
    """Track the HTTP exchanges made in this context (tasks started inside inherit it)."""
    tracker = CallTracker()
    token = _CURRENT.set(tracker)
    try:
        yield tracker
    finally:
        _CURRENT.reset(token)


def _submits_work(request: httpx.Request) -> bool:
    """A POST to fal's run or queue endpoint (not a storage upload)."""
    return request.method == "POST" and not request.url.path.endswith("/storage/upload/initiate")


def _note_request(request: httpx.Request) -> None:
    tracker = _CURRENT.get()
    if tracker is not None and _submits_work(request):
        tracker.posts_sent += 1


def _note_response(response: httpx.Response, tracker: CallTracker) -> None:
    tracker.accepted = True
    request_id = response.headers.get(REQUEST_ID_HEADER)
    if request_id is None and response.is_stream_consumed:
        request_id = _request_id_in_body(response)
    if request_id:
        tracker.request_ids.append(request_id)


def _request_id_in_body(response: httpx.Response) -> str | None:
    try:
        data = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    value = data.get("request_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _accepting(response: httpx.Response) -> CallTracker | None:
    tracker = _CURRENT.get()
    if tracker is None or not response.is_success or not _submits_work(response.request):
        return None
    return tracker


def sync_event_hooks() -> dict[str, list[Callable[..., Any]]]:
    """``event_hooks=`` for an ``httpx.Client`` whose calls should be tracked."""

    def on_response(response: httpx.Response) -> None:
        tracker = _accepting(response)
        if tracker is not None:
            if REQUEST_ID_HEADER not in response.headers:
                response.read()
            _note_response(response, tracker)

    return {"request": [_note_request], "response": [on_response]}


def async_event_hooks() -> dict[str, list[Callable[..., Any]]]:
    """``event_hooks=`` for an ``httpx.AsyncClient`` whose calls should be tracked."""

    async def on_request(request: httpx.Request) -> None:
        _note_request(request)

    async def on_response(response: httpx.Response) -> None:
        tracker = _accepting(response)
        if tracker is not None:
            if REQUEST_ID_HEADER not in response.headers:
                await response.aread()
            _note_response(response, tracker)

    return {"request": [on_request], "response": [on_response]}


def possibly_accepted(error: BaseException, tracker: CallTracker) -> bool:
    """Whether fal may have accepted (and may bill) work of the call that raised ``error``.

    True once any POST was answered 2xx; otherwise what :func:`falbind.client.failures.
    may_be_billed` says of ``error`` given whether a POST was sent (a lost answer, a 5xx fal
    did not mark retryable, a failed job: yes; a 4xx refusal, a connection never made: no).
    """
    return tracker.accepted or may_be_billed(error, sent=tracker.posts_sent > 0)


def describe_validation_error(error: ValidationError, context: str) -> str:
    """One line per error (field, message, did-you-mean), never the input values: a misspelt
    parameter may hold a secret."""
    parts = []
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        location = ".".join(str(part) for part in item["loc"]) or "<request>"
        parts.append(f"{location}: {item['msg']}")
    return f"{context}: " + "; ".join(parts)
