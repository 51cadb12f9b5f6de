"""Test helpers: a fake fal server on 127.0.0.1 (fal's sync and queue protocols) and pytest fixtures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import (
        FakeFalServer as FakeFalServer,
        Fault as Fault,
        RecordedRequest as RecordedRequest,
    )

__all__ = ["FakeFalServer", "Fault", "RecordedRequest"]


def __getattr__(name: str) -> Any:
    """The server's names, imported on first use (the pytest plugin imports this package in
    every pytest run, which should not pay for the server and its dependencies)."""
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
