"""A call with no header option sends headers its client built once (issue 11): read-only,
the same on the wire as headers built per call, and never another client's (a ``with_options``
copy with another key sends its own key, over a real socket, on both clients)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from falbind import AsyncFalClient, FalClient, InvalidArgumentsError
from falbind.client._core import ClientConfig, QueueURLs, SharedHeaders, resolve_endpoint
from falbind.client.auth import Secret
from falbind.testing import FakeFalServer

SCHNELL = "fal-ai/flux/schnell"
KEY_A = "key-a:secret-a"
KEY_B = "key-b:secret-b"


def test_shared_headers_are_read_only_and_their_copies_are_not() -> None:
    shared = SharedHeaders({"Authorization": "Key x", "Content-Type": "application/json"})
    with pytest.raises(TypeError):
        shared["X-Other"] = "1"
    with pytest.raises(TypeError):
        del shared["authorization"]
    with pytest.raises(TypeError):
        shared.update({"X-Other": "1"})
    with pytest.raises(TypeError):
        shared.setdefault("X-Other", "1")
    assert dict(shared) == {"authorization": "Key x", "content-type": "application/json"}
    copy = httpx.Headers(shared)
    copy["X-Other"] = "1"
    assert "x-other" not in shared and "Key x" not in repr(shared)


@pytest.mark.parametrize("auth", [Secret(KEY_A), None])
def test_shared_headers_equal_the_headers_built_per_call(auth: Secret | None) -> None:
    config = ClientConfig(run_url="http://127.0.0.1:1", queue_url="http://127.0.0.1:1", auth=auth)
    endpoint = resolve_endpoint(SCHNELL)
    urls = QueueURLs.rebuilt(config.queue_url, SCHNELL, "req-1")

    def built(**extra: str) -> list[tuple[str, str]]:
        headers = config.headers()
        headers.update(extra)
        return sorted(headers.multi_items())

    calls: list[tuple[Any, list[tuple[str, str]]]] = [
        (
            config.run_call(endpoint, b"{}", None, None),
            built(**{"Content-Type": "application/json"}),
        ),
        (
            config.submit_call(endpoint, b"{}", None, None),
            built(**{"Content-Type": "application/json"}),
        ),
        (config.status_call(urls, with_logs=False), built()),
        (
            config.stream_call(urls, with_logs=False, read_timeout=1.0),
            built(Accept="text/event-stream"),
        ),
        (config.result_call(urls), built()),
        (config.cancel_call(urls), built()),
    ]
    for call, expected in calls:
        assert isinstance(call.headers, SharedHeaders)
        assert sorted(call.headers.multi_items()) == expected, call.url
    # Only a call with a header option gets headers of its own.
    assert config.option_headers() is None and config.option_headers(extra_headers={}) is None
    assert config.option_headers(priority="low")["x-fal-queue-priority"] == "low"
    # A header option builds the call's own headers, Content-Type added.
    own = config.run_call(endpoint, b"{}", config.headers(hint="h"), None)
    assert not isinstance(own.headers, SharedHeaders)
    assert own.headers["x-fal-runner-hint"] == "h"
    assert own.headers["content-type"] == "application/json"


def _keys_seen(server: FakeFalServer) -> list[str | None]:
    return [request.headers.get("authorization") for request in server.requests]


def test_a_with_options_copy_sends_its_own_key(server: FakeFalServer) -> None:
    with FalClient(KEY_A, run_url=server.run_url, queue_url=server.queue_url) as client:
        other = client.with_options(key=KEY_B)
        client.run(SCHNELL, {"prompt": "a fox"})
        other.run(SCHNELL, {"prompt": "a fox"})
        other.subscribe(SCHNELL, {"prompt": "a fox"})
        client.run(SCHNELL, {"prompt": "a fox"}, hint="runner-1")
    seen = _keys_seen(server)
    assert seen[0] == f"Key {KEY_A}" and seen[-1] == f"Key {KEY_A}"
    assert set(seen[1:-1]) == {f"Key {KEY_B}"} and len(seen) >= 5
    assert server.requests[-1].headers["x-fal-runner-hint"] == "runner-1"


async def test_the_async_direct_path_sends_each_clients_own_headers(
    server: FakeFalServer,
) -> None:
    async with AsyncFalClient(KEY_A, run_url=server.run_url, queue_url=server.queue_url) as client:
        other = client.with_options(key=KEY_B)
        await client.run(SCHNELL, {"prompt": "a fox"})
        await other.subscribe(SCHNELL, {"prompt": "a fox"})
        await client.run(SCHNELL, {"prompt": "a fox"}, extra_headers={"X-Trace": "t1"})
        await client.run(SCHNELL, {"prompt": "a fox"})
    seen = _keys_seen(server)
    assert seen[0] == f"Key {KEY_A}" and seen[-2:] == [f"Key {KEY_A}"] * 2
    assert set(seen[1:-2]) == {f"Key {KEY_B}"}
    # The call with its own header sent it; the next call, with none, did not keep it.
    assert server.requests[-2].headers["x-trace"] == "t1"
    assert "x-trace" not in server.requests[-1].headers
    for request in server.requests:
        assert request.headers["user-agent"].startswith("python-httpx/")
        if request.route in ("run", "submit"):
            assert request.headers["content-type"] == "application/json"
        if request.route == "stream":
            assert request.headers["accept"] == "text/event-stream"


def test_a_call_option_among_the_arguments_is_still_refused(client: FalClient) -> None:
    # adapt_call's shortcut for plain arguments must not skip this check.
    with pytest.raises(InvalidArgumentsError, match="extra_headers="):
        client.run(SCHNELL, {"prompt": "x", "headers": {"X-A": "1"}})
    with pytest.raises(InvalidArgumentsError, match="client_timeout="):
        client.submit(SCHNELL, {"prompt": "x", "timeout": 3})
