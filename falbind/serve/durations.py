"""LiteLLM's durations (a key's ``duration``, its ``budget_duration``) in seconds.

Its own module because both the key routes (which read them) and the store (which renews a
budget when its period ends) need it, and the store must not import the routes. :func:`shown`
is how both name a value they refuse.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

__all__ = ["MAX_DURATION_SECONDS", "MAX_DURATION_TEXT", "parse_duration", "shown"]

MAX_DURATION_SECONDS: Final = 100 * 365 * 86400
"""A hundred years: an expiry beyond it means "never" (use ``null``), and a date thousands of
years away overflows ``datetime`` when the key is shown."""
MAX_DURATION_TEXT: Final = 32
"""The ``budget_duration`` column's size."""
_DURATION: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w|mo|y)?\s*")
_UNIT_SECONDS: Final = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "mo": 30 * 86400,
    "y": 365 * 86400,
}
_DURATION_WORDS: Final = {"hourly": "1h", "daily": "24h", "weekly": "7d", "monthly": "30d"}
"""LiteLLM's word aliases for a ``budget_duration``."""


def shown(value: Any) -> str:
    """A value for an error message: cut short (it may be huge), and never a key pasted into
    the wrong field."""
    if isinstance(value, str) and value.startswith("sk-"):
        return "<a key>"
    try:
        text = repr(value)
    except ValueError:  # an integer of over 4300 digits
        return f"<a {type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def parse_duration(value: Any) -> float | None:
    """LiteLLM's ``duration`` and ``budget_duration``: ``"30s"``, ``"10m"``, ``"1h"``,
    ``"30d"``, ``"2w"``, ``"1mo"`` (30 days), ``"1y"``, ``hourly``/``daily``/``weekly``/
    ``monthly``, or a number of seconds, in seconds; ``None`` for ``None`` (no expiry).

    Raises ``ValueError`` for anything else, for zero and for more than
    :data:`MAX_DURATION_SECONDS`."""
    if value is None:
        return None
    problem = (
        f"duration {shown(value)} is not like '30s', '10m', '1h', '30d' or '1mo' "
        f"(at most {MAX_DURATION_SECONDS // (365 * 86400)} years)"
    )
    if isinstance(value, bool):
        raise ValueError(problem)
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            raise ValueError(problem) from None
    elif isinstance(value, str) and len(value) <= MAX_DURATION_TEXT:
        text = _DURATION_WORDS.get(value.strip().lower(), value)
        match = _DURATION.fullmatch(text)
        if match is None:
            raise ValueError(problem)
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    else:
        raise ValueError(problem)
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_DURATION_SECONDS):
        raise ValueError(problem)
    return seconds
