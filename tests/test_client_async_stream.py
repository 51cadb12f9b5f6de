"""The async client's status stream (issue 11): over the aiohttp session directly on the default
transport, through httpx with a caller's ``http_client``; the same requests on the wire, the
same fallbacks (a broken stream polls, a 5xx stream is asked again later), the same decoding."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import httpx
import pytest

from falbind.client.clients import AsyncFalClient
from falbind.client.queue import Completed, InProgress, QueueStatus
from falbind.testing.server import FakeFalServer, Fault

SCHNELL = "fal-ai/flux/schnell"
DEV = "fal-ai/flux/dev"


async def test_the_direct_stream_does_not_go_through_httpx(
    server: FakeFalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with server.async_client() as client:
        assert client._direct is not None

        async def refuse(*args: Any, **kwargs: Any) -> httpx.Response:
            raise AssertionError("sent through httpx")

        monkeypatch.setattr(client._http, "send", refuse)
        server.processing_time = 0.1
        seen: list[QueueStatus] = []
        output = await client.subscribe(DEV, prompt="a fox", on_queue_update=seen.append)
    assert output.prompt == "a fox"
    assert any(isinstance(status, InProgress) for status in seen)
    assert isinstance(seen[-1], Completed)
    assert server.count(route="stream") == 1 and server.count(route="status") == 0


async def test_the_stream_request_on_the_wire_is_the_httpx_paths(server: FakeFalServer) -> None:
    async with server.async_client(key="k") as direct:
        handle = await direct.submit(DEV, prompt="x")
        events = [event async for event in handle.iter_events(with_logs=True)]
    async with (
        httpx.AsyncClient() as http,
        server.async_client(key="k", http_client=http) as through_httpx,
    ):
        handle = await through_httpx.submit(DEV, prompt="x")
        events_httpx = [event async for event in handle.iter_events(with_logs=True)]
    assert isinstance(events[-1], Completed) and isinstance(events_httpx[-1], Completed)
    mine, theirs = [request for request in server.requests if request.route == "stream"]
    assert (
        _without_id(mine.path)
        == _without_id(theirs.path)
        == ("/queue/fal-ai/flux/requests/{id}/status/stream")
    )
    assert (mine.method, mine.query) == (theirs.method, theirs.query) == ("GET", {"logs": "1"})
    assert dict(mine.headers) == dict(theirs.headers)
    assert mine.headers["accept"] == "text/event-stream"
    assert mine.headers["authorization"] == "Key k"


def _without_id(path: str) -> str:
    """``path`` with the request id in ``…/requests/{id}/…`` replaced by ``{id}``."""
    head, tail = path.split("/requests/")
    return f"{head}/requests/{{id}}/{tail.split('/', 1)[1]}"


def _cut_short(events: bytes) -> bytes:
    """A status stream that starts, sends ``events``, and is cut short (the connection closes
    before the announced length)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 4096\r\n\r\n"
    return head + events


@pytest.mark.parametrize(
    "broken",
    [
        _cut_short(b'data: {"status": "IN_QUEUE", "queue_position": 0}\n\n'),
        _cut_short(b"data: not json\n\n"),
        _cut_short(b'data: {"status": "SLEEPING"}\n\n'),
    ],
    ids=["cut_short", "not_json", "unknown_status"],
)
async def test_a_broken_stream_falls_back_to_polling(
    server: FakeFalServer, async_client: AsyncFalClient, broken: bytes
) -> None:
    server.inject(Fault.raw(broken), route="stream")
    seen: list[QueueStatus] = []
    output = await async_client.subscribe(DEV, prompt="x", on_queue_update=seen.append)
    assert output.prompt == "x" and isinstance(seen[-1], Completed)
    assert server.count(route="stream") == 1 and server.count(route="status") >= 1
    assert async_client._status_stream  # a broken stream may work next time
    await async_client.subscribe(DEV, prompt="y")
    assert server.count(route="stream") == 2


@pytest.mark.parametrize(("status", "asked_again"), [(503, True), (429, True), (404, False)])
async def test_a_stream_refused_with_a_5xx_is_asked_again_a_404_is_not(
    server: FakeFalServer, async_client: AsyncFalClient, status: int, asked_again: bool
) -> None:
    server.inject(Fault.http(status), route="stream")
    assert (await async_client.subscribe(DEV, prompt="x")).prompt == "x"
    assert server.count(route="status") >= 1
    assert async_client._status_stream is asked_again
    await async_client.subscribe(DEV, prompt="y")
    assert server.count(route="stream") == (2 if asked_again else 1)


async def test_the_stream_connection_is_reused_once_it_ends(
    server: FakeFalServer, async_client: AsyncFalClient
) -> None:
    await async_client.subscribe(DEV, prompt="x")
    await async_client.subscribe(DEV, prompt="y")
    assert [request.route for request in server.requests] == ["submit", "stream", "result"] * 2
    assert len({request.peer for request in server.requests}) == 1


@pytest.fixture
async def gzip_queue() -> AsyncIterator[str]:
    """A queue whose status stream is gzip-compressed server-sent events, two events a chunk
    apart (fal may compress; httpx decodes it, on either transport)."""
    output = {"images": [], "timings": {}, "seed": 1, "has_nsfw_concepts": [], "prompt": "z"}
    events = (
        'data: {"status": "IN_PROGRESS", "logs": [{"message": "é"}]}\n\n'
        'data: {"status": "COMPLETED", "logs": [], "metrics": {}}\n\n'
    ).encode()
    compressor = gzip.compress(events)

    async def submit(request: aiohttp.web.Request) -> aiohttp.web.Response:
        base = f"http://{request.host}/fal-ai/flux/requests/r1"
        return aiohttp.web.json_response(
            {
                "request_id": "r1",
                "status_url": f"{base}/status",
                "response_url": base,
                "cancel_url": f"{base}/cancel",
            }
        )

    async def stream(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}
        )
        await response.prepare(request)
        half = len(compressor) // 2
        await response.write(compressor[:half])
        await response.write(compressor[half:])
        await response.write_eof()
        return response

    async def result(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response(output)

    app = aiohttp.web.Application()
    app.router.add_post("/fal-ai/flux/schnell", submit)
    app.router.add_get("/fal-ai/flux/requests/r1/status/stream", stream)
    app.router.add_get("/fal-ai/flux/requests/r1", result)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_a_compressed_stream_is_decoded_on_both_transports(
    gzip_queue: str, transport: str
) -> None:
    async with httpx.AsyncClient() as http:
        options: dict[str, Any] = {"http_client": http} if transport == "httpx" else {}
        async with AsyncFalClient(key="", queue_url=gzip_queue, **options) as client:
            seen: list[QueueStatus] = []
            output = await client.subscribe(SCHNELL, prompt="z", on_queue_update=seen.append)
    assert output.prompt == "z"
    first, last = seen[0], seen[-1]
    assert isinstance(first, InProgress) and first.logs[0].message == "é"
    assert isinstance(last, Completed)
