"""The bindings this install serves: the one module of the runtime that imports generated code.

``falbind generate`` writes falbind's own bindings from ``registry/`` into the
``falbind_generated`` package (the ``generated/`` folder of the source tree). Everything else in
the runtime reaches them through the names below: the endpoint index (which imports an
endpoint's module on first use), the size data, and, for type checkers only, the typed client
method stubs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from falbind_generated import _sizes as sizes
from falbind_generated._index import ALIASES, ENDPOINTS, UNBOUND

if TYPE_CHECKING:
    from falbind_generated._typed_client import (
        AsyncEndpointMethods as AsyncEndpointMethods,
        AsyncQueueMethods as AsyncQueueMethods,
        SyncEndpointMethods as SyncEndpointMethods,
        SyncQueueMethods as SyncQueueMethods,
    )

__all__ = ["ALIASES", "ENDPOINTS", "UNBOUND", "sizes"]
