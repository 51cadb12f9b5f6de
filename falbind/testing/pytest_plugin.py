"""pytest fixtures for testing code that calls fal, against :class:`~.testing.FakeFalServer`.

``fal_server`` is a running fake server, stopped after the test; ``fal_client`` and
``async_fal_client`` are clients of it. Enable them with ``-p falbind.testing.pytest_plugin``,
``pytest_plugins = ["falbind.testing.pytest_plugin"]`` in a root ``conftest.py``, or by
importing the fixtures into a ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from falbind.client.clients import AsyncFalClient, FalClient

from .server import FakeFalServer

__all__ = ["async_fal_client", "fal_client", "fal_server"]


@pytest.fixture
def fal_server() -> Iterator[FakeFalServer]:
    """A fake fal server on 127.0.0.1, stopped after the test."""
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
