"""Finding the fal key, and keeping it out of reprs, logs and error messages.

Order: the ``key=`` argument, else ``FAL_KEY``, else ``FAL_KEY_ID`` + ``FAL_KEY_SECRET``
(joined as ``id:secret``), else ``FAL_AI_API_KEY`` (LiteLLM's name). The environment is only
read, never written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from .errors import InvalidKeyError

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
    """The key to send as ``Authorization: Key <key>``, or ``None`` when none is configured.

    A key holding a control character (a newline from ``echo`` or a file, CR/LF, ...) or
    non-ASCII text cannot go in a header: it is refused here with
    :class:`~falbind.InvalidKeyError`, naming where it came from and never the key (httpx would
    otherwise put the whole key in its ``Illegal header value`` error).
    """
    if key is not None:
        return Secret(_checked(key, "the key= argument")) if key else None
    env = os.environ if environ is None else environ
    if env.get("FAL_KEY"):
        return Secret(_checked(env["FAL_KEY"], "FAL_KEY"))
    key_id, key_secret = env.get("FAL_KEY_ID"), env.get("FAL_KEY_SECRET")
    if key_id and key_secret:
        _checked(key_id, "FAL_KEY_ID")
        _checked(key_secret, "FAL_KEY_SECRET")
        return Secret(f"{key_id}:{key_secret}")
    if env.get("FAL_AI_API_KEY"):
        return Secret(_checked(env["FAL_AI_API_KEY"], "FAL_AI_API_KEY"))
    return None


def _checked(value: str, source: str) -> str:
    if not isinstance(value, str):
        raise InvalidKeyError(
            f"the fal key from {source} must be a string, not {type(value).__name__}",
            source=source,
        )
    for position, char in enumerate(value, 1):
        if not " " <= char < "\x7f":
            kind = _describe(char)
            raise InvalidKeyError(
                f"the fal key from {source} holds {kind} at character {position}; a key is "
                "printable ASCII (check for a stray newline or a copy-paste artefact). "
                "The key was not used.",
                source=source,
            )
    return value


def _describe(char: str) -> str:
    if char in "\r\n":
        return "a line break (CR/LF)"
    if char.isascii():
        return "a control character"
    return "a non-ASCII character"
