"""The async client's direct aiohttp path (issue 11): a caller's ``aiohttp_session=`` is used
for every request and never closed; falbind's own session is closed by ``aclose()``; requests
on the wire are those of the httpx path (headers, body, query)."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import aiohttp
import aiohttp.web
import httpx
import pytest

from falbind import AsyncFalClient, FalConnectionError, RetryPolicy
from falbind.testing import FakeFalServer

SCHNELL = "fal-ai/flux/schnell"


def _counting_session() -> tuple[aiohttp.ClientSession, list[str]]:
    seen: list[str] = []

    async def started(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        seen.append(f"{params.method} {params.url.path}")

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(started)
    return aiohttp.ClientSession(trace_configs=[trace]), seen


async def test_a_given_session_carries_every_request_and_stays_open(
    server: FakeFalServer,
) -> None:
    session, seen = _counting_session()
    async with session:
        async with server.async_client(aiohttp_session=session) as client:
            output = await client.run(SCHNELL, prompt="a fox")
            queued = await client.subscribe(SCHNELL, prompt="a fox")
        assert output.images and queued.images
        assert not session.closed
        routes = [request.route for request in server.requests]
        assert "stream" in routes or "status" in routes
        # run, submit, the status stream or polls, the result: all over the caller's session.
        assert len(seen) == len(server.requests) >= 4
        # Still usable after the client is closed: the caller owns it.
        async with session.get(f"{server.url}/queue/nothing") as response:
            assert response.status >= 200


async def test_with_options_copies_share_the_session_and_never_close_it(
    server: FakeFalServer,
) -> None:
    client = server.async_client()
    copy = client.with_options(timeout=5)
    await copy.run(SCHNELL, prompt="a fox")
    await copy.aclose()
    await client.run(SCHNELL, prompt="a fox")  # the copy closed nothing
    assert client._aiohttp is not None and client._aiohttp is copy._aiohttp
    session = client._aiohttp.get()
    await client.aclose()
    assert session.closed


def test_http_client_and_aiohttp_session_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        AsyncFalClient(
            key="",
            http_client=httpx.AsyncClient(),
            aiohttp_session=object(),  # type: ignore[arg-type]
        )


async def test_the_wire_request_is_the_httpx_paths(server: FakeFalServer) -> None:
    options: dict[str, Any] = {
        "extra_headers": {"X-Trace": "t1"},
        "hint": "runner-7",
        "start_timeout": 30,
        "seed": 7,
        "image_size": "square",
    }
    async with server.async_client(key="k") as direct:
        await direct.run(SCHNELL, {"prompt": "a fox"}, **options)
        await direct.submit(SCHNELL, {"prompt": "a fox"}, webhook_url="https://hook.example/x")
    async with (
        httpx.AsyncClient() as http,
        server.async_client(key="k", http_client=http) as through_httpx,
    ):
        await through_httpx.run(SCHNELL, {"prompt": "a fox"}, **options)
        await through_httpx.submit(
            SCHNELL, {"prompt": "a fox"}, webhook_url="https://hook.example/x"
        )
    first, second = server.requests[:2], server.requests[2:]
    for mine, theirs in zip(first, second, strict=True):
        assert (mine.method, mine.path, mine.query, mine.body) == (
            theirs.method,
            theirs.path,
            theirs.query,
            theirs.body,
        )
        assert dict(mine.headers) == dict(theirs.headers)


async def test_a_refused_connection_is_a_fal_connection_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with AsyncFalClient(
        key="", run_url=f"http://127.0.0.1:{port}", retry=RetryPolicy(max_retries=0)
    ) as client:
        with pytest.raises(FalConnectionError, match=f"127.0.0.1:{port}") as caught:
            await client.run(SCHNELL, prompt="a fox")
    assert "Connect" in str(caught.value)


async def test_gzip_answers_are_decoded_as_on_the_httpx_path(server: FakeFalServer) -> None:
    """aiohttp leaves decompression to httpx (``auto_decompress=False``): a gzip answer arrives
    decoded, its headers as sent; an unencoded one is the bytes read."""
    import gzip
    import json

    output = {"images": [], "timings": {}, "seed": 1, "has_nsfw_concepts": [], "prompt": "x"}
    packed = gzip.compress(json.dumps(output).encode())

    async def answer(request: aiohttp.web.Request) -> aiohttp.web.Response:
        if request.path.endswith("plain"):
            return aiohttp.web.json_response(output)
        return aiohttp.web.Response(
            body=packed, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    app = aiohttp.web.Application()
    app.router.add_post("/{tail:.*}", answer)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with AsyncFalClient(key="", run_url=f"http://127.0.0.1:{port}") as client:
            packed_answer = await client.run("plain/gzip", untyped=True)
            plain_answer = await client.run("x/plain", untyped=True)
        assert packed_answer == plain_answer == output
    finally:
        await runner.cleanup()


def test_an_answer_builds_its_headers_when_first_read() -> None:
    from falbind.client._aiohttp import _answer, target

    raw = ((b"Content-Type", b"application/json"), (b"X-Fal-Request-Id", b"r-1"), (b"A", b"1"))
    raw += ((b"a", b"2"),)
    where = target("GET", "http://127.0.0.1:1/x", ())
    answer = _answer(where, 200, raw, "OK", stream=httpx.ByteStream(b"{}"))
    assert answer._raw_headers is raw  # nothing built yet
    assert answer.headers.multi_items() == httpx.Headers(raw).multi_items()
    assert (
        answer.headers.get_list("a") == ["1", "2"] and answer.headers["x-fal-request-id"] == "r-1"
    )
    answer.headers = httpx.Headers({"b": "3"})
    assert dict(answer.headers) == {"b": "3"}
    # An encoded answer's headers are httpx's at once (it reads them to decode the body).
    encoded = _answer(where, 200, raw, "OK", content=b"{}")
    assert encoded._raw_headers is None and encoded.headers["content-type"] == "application/json"
