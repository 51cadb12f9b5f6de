"""pydantic's validation errors about request arguments, located and explained.

Each error gets its path in the arguments as given (pydantic's union member names dropped), a
message and did-you-mean suggestions, and moot errors from union members that cannot match are
dropped. ``falbind validate`` and ``falbind lint`` report through these, so both say the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from falbind.models.base import UNKNOWN_PARAMETER, suggest_names

__all__ = ["data_path", "explained_errors", "render_path"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")
_EXTRA_BODY_HINT = " (pass it through extra_body="
# Scalar errors from one member of a union, made moot when another member's error goes deeper.
_SHALLOW_TYPES = {"literal_error", "string_type", "int_type", "float_type", "bool_type", "enum"}
_MODEL_TYPES = {"model_type", "dict_type", "model_attributes_type"}


def _is_union_tag(part: str) -> bool:
    """pydantic names union members in ``loc`` (``ImageSize``, ``literal['a','b']``)."""
    return any(c in part for c in "[]('\", ")


def data_path(arguments: Any, loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """The location of an error in the arguments (union member names in ``loc`` dropped)."""
    parts: list[str | int] = []
    current = arguments
    for index, part in enumerate(loc):
        in_dict = isinstance(current, dict) and isinstance(part, str) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            current = current[part]
            parts.append(part)
        elif (
            index == len(loc) - 1
            and isinstance(current, dict)
            and isinstance(part, str)
            and not _is_union_tag(part)
        ):
            parts.append(part)  # a missing field
    return tuple(parts)


def render_path(parts: Sequence[str | int]) -> str:
    """``$.image_size.width``, ``$.loras[0].path``, ``$['odd key']``."""
    rendered = "$"
    for part in parts:
        if isinstance(part, int):
            rendered += f"[{part}]"
        elif _IDENTIFIER.match(part):
            rendered += f".{part}"
        else:
            rendered += f"[{json.dumps(part)}]"
    return rendered


def _message_and_suggestions(error: Any) -> tuple[str, tuple[str, ...]]:
    ctx = error.get("ctx") or {}
    if error["type"] == UNKNOWN_PARAMETER:
        detail = str(ctx.get("detail", error["msg"]))
        return detail.split(_EXTRA_BODY_HINT)[0], tuple(ctx.get("suggestions") or ())
    if error["type"] == "literal_error" and isinstance(error.get("input"), str):
        allowed = _QUOTED.findall(str(ctx.get("expected", "")))
        return str(error["msg"]), tuple(suggest_names(error["input"], allowed, limit=1))
    return str(error["msg"]), ()


def _moot(error: Any) -> bool:
    """An error from a union member that cannot match the input's kind (an object given to a
    ``literal[...]`` member, a string given to a model member)."""
    given = error.get("input")
    if error["type"] in _MODEL_TYPES:
        return not isinstance(given, dict)
    return error["type"] in _SHALLOW_TYPES and isinstance(given, dict | list)


def _relevant(located: list[tuple[Any, tuple[str | int, ...]]]) -> Iterator[Any]:
    """Drop moot union-member errors when another error at the same place (or deeper) says
    more; if every error at a place is moot, keep them all."""
    for error, path in located:
        if _moot(error) and any(
            other is not error and not _moot(other) and other_path[: len(path)] == path
            for other, other_path in located
        ):
            continue
        yield error, path


def explained_errors(
    arguments: Any, errors: list[Any]
) -> Iterator[tuple[Any, tuple[str | int, ...], str, tuple[str, ...]]]:
    """Each of pydantic's ``errors`` about ``arguments`` worth reporting (moot union-member
    errors dropped), with its path in ``arguments``, its message and its suggestions."""
    located = [(error, data_path(arguments, error["loc"])) for error in errors]
    for error, path in _relevant(located):
        message, suggestions = _message_and_suggestions(error)
        yield error, path, message, suggestions
