"""Finding the fal key, and keeping it out of reprs, logs and error messages.

Order: the ``key=`` argument, else ``FAL_KEY``, else ``FAL_KEY_ID`` + ``FAL_KEY_SECRET``
(joined as ``id:secret``), else ``FAL_AI_API_KEY`` (LiteLLM's name). The environment is only
read, never written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

__all__ = ["Secret", "resolve_key"]

_REDACTED: Final = "<redacted>"


class Secret:
    """A credential whose ``repr``/``str`` never shows it; ``reveal()`` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_REDACTED})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not picklable")


def resolve_key(key: str | None, environ: Mapping[str, str] | None = None) -> Secret | None:
    """The key to send as ``Authorization: Key <key>``, or ``None`` when none is configured."""
    if key is not None:
        return Secret(key) if key else None
    env = os.environ if environ is None else environ
    if env.get("FAL_KEY"):
        return Secret(env["FAL_KEY"])
    key_id, key_secret = env.get("FAL_KEY_ID"), env.get("FAL_KEY_SECRET")
    if key_id and key_secret:
        return Secret(f"{key_id}:{key_secret}")
    if env.get("FAL_AI_API_KEY"):
        return Secret(env["FAL_AI_API_KEY"])
    return None
