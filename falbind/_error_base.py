"""The base of every falbind error, in a module that imports nothing of falbind.

It lives apart from :mod:`falbind.client.errors` so that modules below the client (the endpoint
index's :class:`~falbind.UnknownEndpointError`, sizing's ``SizeError``) can be ``FalError``\\ s
without an import cycle, and so that ``import falbind`` (which loads the index) stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FalError", "FalWarning"]


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """Unpickle an error without calling its ``__init__`` (whose keyword-only arguments the
    default ``BaseException`` pickling cannot pass)."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class FalError(Exception):
    """Base of every error raised by falbind."""

    def __reduce__(self) -> tuple[Any, ...]:
        # BaseException pickles as ``cls(*args)`` plus ``__dict__``: that fails for every
        # subclass whose __init__ takes keyword-only attributes (status_code=, request_id=...).
        # Rebuilding from ``args`` and ``__dict__`` keeps every attribute, for every subclass.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class FalWarning(UserWarning):
    """Base of every warning falbind emits."""
