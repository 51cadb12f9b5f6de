"""AsyncFalClient over real sockets, with the aiohttp transport (default) and httpx's own."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from pydantic import ValidationError

import falbind
from falbind.client.clients import AsyncFalClient
from falbind.client.errors import (
    FalConnectionError,
    FalRequestFailedError,
    FalTimeoutError,
    ServerError,
    UnexpectedContentTypeError,
    UnprocessableEntityError,
)
from falbind.client.queue import Completed, QueueStatus
from falbind.testing.server import FakeFalServer, Fault

SCHNELL = "fal-ai/flux/schnell"


async def test_typed_call_returns_the_output_model(
    server: FakeFalServer, async_client: AsyncFalClient
) -> None:
    output = await async_client.flux_schnell(prompt="a fox", num_images=2)
    assert isinstance(output, falbind.ENDPOINTS[SCHNELL].output_model)
    assert len(output.images) == 2
    assert server.requests[0].json() == {"prompt": "a fox", "num_images": 2}


async def test_validation_happens_before_sending(
    server: FakeFalServer, async_client: AsyncFalClient
) -> None:
    with pytest.raises(ValidationError, match="did you mean 'num_images'"):
        await async_client.flux_schnell(prompt="x", num_image=2)
    with pytest.raises(falbind.UnknownEndpointError):
        await async_client.run("fal-ai/flux/schnel")
    assert server.count() == 0


async def test_object_lifecycle_reaches_fal_and_is_checked_first(
    server: FakeFalServer, async_client: AsyncFalClient
) -> None:
    await async_client.run(SCHNELL, prompt="x", object_lifecycle_seconds=3600)
    await (await async_client.submit(SCHNELL, prompt="x", object_lifecycle_seconds=60)).result()
    await async_client.subscribe(SCHNELL, prompt="x", object_lifecycle_seconds=2)
    await async_client.flux_schnell(prompt="x", object_lifecycle_seconds=5)
    await async_client.queue.flux_schnell(prompt="x", object_lifecycle_seconds=9)
    sent = [
        r.headers.get("x-fal-object-lifecycle-preference")
        for r in server.requests
        if r.route in ("run", "submit")
    ]
    assert sent == [f'{{"expiration_duration_seconds": {n}}}' for n in (3600, 60, 2, 5, 9)]
    server.clear_requests()
    with pytest.raises(ValueError, match="object_lifecycle_seconds"):
        await async_client.submit(SCHNELL, prompt="x", object_lifecycle_seconds=0)
    with pytest.raises(ValueError, match="object_lifecycle_seconds"):
        await async_client.subscribe(SCHNELL, prompt="x", object_lifecycle_seconds=-1)
    with pytest.raises(TypeError, match="object_lifecycle_seconds"):
        await async_client.run(SCHNELL, prompt="x", object_lifecycle_seconds=2.5)  # type: ignore[arg-type]
    assert server.count() == 0


async def test_422_has_field_errors(async_client: AsyncFalClient) -> None:
    with pytest.raises(UnprocessableEntityError) as caught:
        await async_client.run(SCHNELL, {"num_images": 2}, untyped=True)
    assert [e.field for e in caught.value.field_errors] == ["prompt"]


async def test_concurrent_calls(server: FakeFalServer, async_client: AsyncFalClient) -> None:
    outputs = await asyncio.gather(*(async_client.flux_schnell(prompt=f"p{i}") for i in range(64)))
    assert sorted(o.prompt for o in outputs) == sorted(f"p{i}" for i in range(64))
    assert server.count(route="run") == 64


async def test_post_retried_on_429_only(
    server: FakeFalServer, async_client: AsyncFalClient
) -> None:
    server.inject(Fault.rate_limit(), route="run", times=2)
    await async_client.flux_schnell(prompt="x")
    assert server.count(route="run") == 3
    server.inject(Fault.http(502), route="run")
    with pytest.raises(ServerError):
        await async_client.flux_schnell(prompt="x")
    assert server.count(route="run") == 4


async def test_post_not_retried_after_reset(
    server: FakeFalServer, async_client: AsyncFalClient
) -> None:
    server.inject(Fault.reset(), route="run")
    with pytest.raises(FalConnectionError):
        await async_client.flux_schnell(prompt="x")
    assert server.count(route="run") == 1


async def test_no_duplicate_post_on_read_timeout(
    server: FakeFalServer, async_client: AsyncFalClient
) -> None:
    server.inject(Fault.slow(1.0), route="run")
    with pytest.raises(FalTimeoutError):
        await async_client.flux_schnell(prompt="x", timeout=0.2)
    await asyncio.sleep(0.05)
    assert server.count(route="run") == 1


async def test_gets_are_retried_on_reset_and_5xx(
    server: FakeFalServer, async_client: AsyncFalClient
) -> None:
    handle = await async_client.submit(SCHNELL, prompt="x")
    server.inject(Fault.reset(), route="status")
    server.inject(Fault.http(503), route="status")
    await handle.status()
    assert server.count(route="status") == 3


async def test_queue_subscribe_with_sync_and_async_callbacks(
    server: FakeFalServer, async_client: AsyncFalClient
) -> None:
    server.processing_time = 0.1
    seen: list[QueueStatus] = []

    async def record(status: QueueStatus) -> None:
        seen.append(status)

    output = await async_client.queue.flux_schnell(prompt="q", on_queue_update=record)
    assert output.prompt == "q"
    assert isinstance(seen[-1], Completed)
    plain: list[QueueStatus] = []
    await async_client.subscribe(SCHNELL, prompt="q", on_queue_update=plain.append)
    assert isinstance(plain[-1], Completed)
    assert server.count(route="stream") == 2


async def test_handle_status_events_result_cancel(
    server: FakeFalServer, async_client: AsyncFalClient
) -> None:
    server.processing_time = 0.1
    handle = await async_client.submit("fal-ai/flux/dev", prompt="h")
    assert "/queue/fal-ai/flux/requests/" in handle.status_url
    events = [event async for event in handle.iter_events(with_logs=True)]
    assert isinstance(events[-1], Completed) and events[-1].logs
    assert (await handle.result()).prompt == "h"
    rebuilt = async_client.get_handle("fal-ai/flux/dev", handle.request_id)
    assert (await rebuilt.result()).prompt == "h"
    server.inject(Fault.never_complete())
    stuck = await async_client.submit(SCHNELL, prompt="x")
    await stuck.cancel()
    status = await stuck.status()
    assert isinstance(status, Completed) and status.error is not None


async def test_polling_fallback(server: FakeFalServer, async_client: AsyncFalClient) -> None:
    server.inject(Fault.http(405), route="stream", times=None)
    server.processing_time = 0.1
    assert (await async_client.subscribe(SCHNELL, prompt="p")).prompt == "p"
    assert server.count(route="status") >= 2


async def test_completed_with_error(server: FakeFalServer, async_client: AsyncFalClient) -> None:
    server.inject(Fault.completed_with_error("boom"))
    with pytest.raises(FalRequestFailedError, match="boom"):
        await async_client.subscribe(SCHNELL, prompt="x")


async def test_client_timeout_cancels(server: FakeFalServer, async_client: AsyncFalClient) -> None:
    server.inject(Fault.never_complete())
    started = time.monotonic()
    with pytest.raises(FalTimeoutError, match="cancelled"):
        await async_client.subscribe(SCHNELL, prompt="x", client_timeout=0.3)
    assert time.monotonic() - started < 5
    assert server.count(route="cancel") == 1


async def test_download(
    server: FakeFalServer, async_client: AsyncFalClient, tmp_path: object
) -> None:
    output = await async_client.flux_schnell(prompt="x")
    data = await async_client.download(output.images[0], expected_type="image/")
    assert data.startswith(b"\x89PNG")
    with pytest.raises(UnexpectedContentTypeError):
        await async_client.download(output.images[0], expected_type="video/")
    synced = await async_client.flux_schnell(prompt="x", sync_mode=True)
    before = server.count()
    assert await async_client.download(synced.images[0]) == data
    assert server.count() == before


async def test_caller_owned_client_stays_open(server: FakeFalServer) -> None:
    async with httpx.AsyncClient() as http:
        async with server.async_client(http_client=http) as async_client:
            await async_client.flux_schnell(prompt="x")
        assert not http.is_closed
