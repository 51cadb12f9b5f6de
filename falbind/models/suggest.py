"""Did-you-mean suggestions (difflib only, so the endpoint index can use it without pydantic)."""

from __future__ import annotations

import difflib

__all__ = ["suggest_names"]


def suggest_names(name: str, valid: list[str], limit: int = 3, cutoff: float = 0.6) -> list[str]:
    """Closest valid names to ``name``, best first (difflib's ratio, case-insensitive)."""
    lowered = {v.lower(): v for v in valid}
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=limit, cutoff=cutoff)
    return [lowered[m] for m in matches]
