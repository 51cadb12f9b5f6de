"""``client.stream``: fal's SSE stream endpoint (``POST {run_url}/{id}/stream``), sync and async,
over the loopback fake server, with run's timeouts, errors and no-retry-after-send rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from falbind import (
    AsyncFalClient,
    AuthenticationError,
    FalClient,
    FalConnectionError,
    FalDecodeError,
    FalTimeoutError,
    InvalidArgumentsError,
    ServerError,
)
from falbind.client.streaming import EventParser
from falbind.testing import FakeFalServer, Fault

SCHNELL = "fal-ai/flux/schnell"


def test_stream_yields_progress_then_the_output(client: FalClient, server: FakeFalServer) -> None:
    events = list(client.stream(SCHNELL, {"prompt": "a fox", "seed": 3}))
    assert events[:2] == [
        {"status": "IN_PROGRESS", "progress": 0.333},
        {"status": "IN_PROGRESS", "progress": 0.667},
    ]
    assert events[-1]["seed"] == 3 and events[-1]["images"]
    sent = server.requests[-1]
    assert (sent.route, sent.path, sent.method) == ("run_stream", f"/run/{SCHNELL}/stream", "POST")
    assert sent.headers["accept"] == "text/event-stream"
    assert sent.json() == {"prompt": "a fox", "seed": 3}


async def test_async_stream(async_client: AsyncFalClient, server: FakeFalServer) -> None:
    server.stream_progress_events = 3
    events = [event async for event in async_client.stream(SCHNELL, arguments={"prompt": "x"})]
    assert len(events) == 4 and events[-1]["images"]


def test_arguments_are_validated_before_anything_is_sent(
    client: FalClient, server: FakeFalServer
) -> None:
    with pytest.raises(InvalidArgumentsError, match="unknown parameter 'promt'"):
        client.stream(SCHNELL, promt="x")
    with pytest.raises(InvalidArgumentsError, match="extra_headers="):
        client.stream(SCHNELL, prompt="x", headers={})
    assert server.count() == 0


def test_a_server_error_is_raised_and_not_retried(client: FalClient, server: FakeFalServer) -> None:
    server.inject(Fault.http(500, detail="boom"), route="run_stream", times=1)
    with pytest.raises(ServerError, match="boom"):
        list(client.stream(SCHNELL, prompt="x"))
    assert server.count(route="run_stream") == 1


def test_a_rate_limit_is_retried(client: FalClient, server: FakeFalServer) -> None:
    server.inject(Fault.rate_limit(0), route="run_stream", times=1)
    assert list(client.stream(SCHNELL, prompt="x"))[-1]["images"]
    assert server.count(route="run_stream") == 2


def test_a_stream_broken_after_it_started_is_not_resent(
    client: FalClient, server: FakeFalServer
) -> None:
    server.stream_break_after = 1
    received: list[dict[str, Any]] = []
    with pytest.raises(FalConnectionError, match=r"POST .*/stream"):
        for event in client.stream(SCHNELL, prompt="x"):
            received.append(event)
    assert received == [{"status": "IN_PROGRESS", "progress": 0.333}]
    assert server.count(route="run_stream") == 1


async def test_async_broken_stream_is_not_resent(
    async_client: AsyncFalClient, server: FakeFalServer
) -> None:
    server.stream_break_after = 2
    with pytest.raises(FalConnectionError):
        async for _ in async_client.stream(SCHNELL, prompt="x"):
            pass
    assert server.count(route="run_stream") == 1


def test_the_call_timeout_bounds_each_read(client: FalClient, server: FakeFalServer) -> None:
    server.inject(Fault.slow(2.0), route="run_stream", times=1)
    with pytest.raises(FalTimeoutError):
        list(client.stream(SCHNELL, prompt="x", timeout=0.2))
    assert server.count(route="run_stream") == 1


async def test_async_timeout(async_client: AsyncFalClient, server: FakeFalServer) -> None:
    server.inject(Fault.slow(2.0), route="run_stream", times=1)
    with pytest.raises(FalTimeoutError):
        async for _ in async_client.stream(SCHNELL, prompt="x", timeout=0.2):
            pass


def test_the_key_is_sent_and_checked() -> None:
    with FakeFalServer(key="k1") as server:
        with server.client(key="k1") as fal:
            assert list(fal.stream(SCHNELL, prompt="x"))
        with server.client(key="wrong") as fal, pytest.raises(AuthenticationError):
            list(fal.stream(SCHNELL, prompt="x"))


def _parse(lines: list[str]) -> Iterator[dict[str, Any]]:
    response = httpx.Response(200, request=httpx.Request("POST", "http://127.0.0.1/x"))
    parser = EventParser(response)
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event
    last = parser.flush()
    if last is not None:
        yield last


def test_event_framing() -> None:
    lines = [": ping", "event: message", 'data: {"a":', "data: 1}", "", "id: 3", 'data: {"b": 2}']
    assert list(_parse(lines)) == [{"a": 1}, {"b": 2}]


@pytest.mark.parametrize("data", ["data: [1]", "data: {not json"])
def test_a_bad_event_is_a_decode_error(data: str) -> None:
    with pytest.raises(FalDecodeError, match="stream event"):
        list(_parse([data, ""]))


def test_an_endpoint_answering_plain_json_gives_one_event(
    client: FalClient, server: FakeFalServer
) -> None:
    server.add_endpoint("acme/plain", lambda body: {"echo": body})
    server.add_endpoint("acme/plain/stream", lambda body: {"whole": True, **body})
    assert list(client.stream("acme/plain", {"a": 1}, untyped=True)) == [{"whole": True, "a": 1}]
    assert server.requests[-1].route == "run"


async def test_async_plain_json(async_client: AsyncFalClient, server: FakeFalServer) -> None:
    server.add_endpoint("acme/plain/stream", lambda body: {"whole": True})
    events = [e async for e in async_client.stream("acme/plain", untyped=True)]
    assert events == [{"whole": True}]


def test_fal_clients_stream_path_and_a_sub_path(client: FalClient, server: FakeFalServer) -> None:
    assert list(client.stream(SCHNELL, {"prompt": "x"}, path="/stream"))[-1]["images"]
    assert server.requests[-1].path == f"/run/{SCHNELL}/stream"
    assert list(client.stream("fal-ai/flux", {"prompt": "x"}, path="schnell"))[-1]["images"]
    assert server.requests[-1].path == f"/run/{SCHNELL}/stream"
