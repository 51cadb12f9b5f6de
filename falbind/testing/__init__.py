"""Test helpers: fake fal servers on 127.0.0.1 (the model protocols, the catalogue), pytest fixtures."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .fake_catalogue import FakeCatalogue as FakeCatalogue
    from .server import (
        FakeFalServer as FakeFalServer,
        Fault as Fault,
        RecordedRequest as RecordedRequest,
    )

__all__ = ["FakeCatalogue", "FakeFalServer", "Fault", "RecordedRequest"]

_HOMES: Final = {
    "FakeCatalogue": "fake_catalogue",
    "FakeFalServer": "server",
    "Fault": "server",
    "RecordedRequest": "server",
}


def __getattr__(name: str) -> Any:
    """The servers' names, imported on first use (the pytest plugin imports this package in
    every pytest run, which should not pay for the servers and their dependencies)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
