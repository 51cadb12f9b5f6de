"""Find a bound endpoint by any of its names: its id, a registry alias or its Python name.

``falbind show``, ``validate`` and ``sizes`` and ``falbind lint`` all look endpoints up here, so
an unknown or unbindable endpoint is named the same way, with the same suggestions, everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import falbind
from falbind.models.index import EndpointSpec, UnknownEndpointError

__all__ = ["EndpointLookupError", "resolve_endpoint"]


class EndpointLookupError(LookupError):
    """A name that is not a bound endpoint; ``suggestions`` holds the closest bound ids."""

    def __init__(self, message: str, suggestions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.suggestions = list(suggestions)

    def __str__(self) -> str:
        return str(self.args[0])


def resolve_endpoint(name: str) -> EndpointSpec:
    """The spec for an endpoint id, a registry alias or a Python name (e.g. ``flux_schnell``)."""
    target = falbind.ENDPOINTS.canonical_id(name)
    if target in falbind.UNBOUND:
        raise EndpointLookupError(
            f"{target} is in the registry but could not be bound: {falbind.UNBOUND[target]}"
        )
    try:
        return falbind.ENDPOINTS.resolve(name)
    except UnknownEndpointError as error:
        raise EndpointLookupError(str(error), error.suggestions) from None
