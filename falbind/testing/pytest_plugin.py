"""pytest fixtures for testing code that calls fal, against :class:`~.testing.FakeFalServer`.

``fal_server`` is a running fake server, stopped after the test; ``fal_client`` and
``async_fal_client`` are clients of it. Installing falbind registers this module as a pytest
plugin (entry point ``falbind``); ``-p falbind.testing.pytest_plugin`` or
``pytest_plugins = ["falbind.testing.pytest_plugin"]`` in a root ``conftest.py`` load it where
the entry point is disabled (``-p no:falbind`` turns it off).

Every pytest run in an environment with falbind installed loads this module, so it imports
nothing heavy: the server and the clients (httpx, pydantic, aiohttp) are imported inside the
fixtures, by the tests that use them (benchmarks/bench_pytest_plugin.py measures the cost).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from falbind.client.clients import AsyncFalClient, FalClient

    from .server import FakeFalServer

__all__ = ["async_fal_client", "fal_client", "fal_server"]


@pytest.fixture
def fal_server() -> Iterator[FakeFalServer]:
    """A fake fal server on 127.0.0.1, stopped after the test."""
    from .server import FakeFalServer

    with FakeFalServer() as server:
        yield server


@pytest.fixture
def fal_client(fal_server: FakeFalServer) -> Iterator[FalClient]:
    """A :class:`~falbind.FalClient` of ``fal_server``."""
    with fal_server.client() as client:
        yield client


@pytest.fixture
async def async_fal_client(fal_server: FakeFalServer) -> AsyncIterator[AsyncFalClient]:
    """An :class:`~falbind.AsyncFalClient` of ``fal_server`` (needs pytest-asyncio)."""
    async with fal_server.async_client() as client:
        yield client
