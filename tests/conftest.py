"""Fixtures shared by the client tests: a fake fal server and clients of it with fast retries.

A test module may override ``server`` (e.g. to require a key); the client fixtures follow it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport

from falbind.client.clients import AsyncFalClient, FalClient
from falbind.testing.server import FakeFalServer

from support import FAST_RETRY


@pytest.fixture
def server() -> Iterator[FakeFalServer]:
    with FakeFalServer() as fake:
        yield fake


@pytest.fixture
def client(server: FakeFalServer) -> Iterator[FalClient]:
    with server.client(retry=FAST_RETRY) as fal:
        yield fal


@pytest.fixture(params=["aiohttp", "httpx"])
async def async_client(
    request: pytest.FixtureRequest, server: FakeFalServer
) -> AsyncIterator[AsyncFalClient]:
    """An async client on the default aiohttp transport, and one on httpx's own."""
    if request.param == "aiohttp":
        async with server.async_client(retry=FAST_RETRY) as fal:
            assert isinstance(fal._http._transport, AiohttpTransport)
            yield fal
    else:
        async with httpx.AsyncClient() as http:
            yield server.async_client(retry=FAST_RETRY, http_client=http)
