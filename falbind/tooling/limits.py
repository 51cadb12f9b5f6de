"""Bounds on the files the CLI and the generator read: size, nesting depth and value count.

A hostile or broken input must end in a one-line ``falbind: ...`` error, never in a
``RecursionError`` from a recursive parser or walker, a ``MemoryError``, or a YAML alias bomb
that expands to billions of values. Every reader checks the file's size before reading it,
parses it, then walks the result once, iteratively, within :data:`MAX_DEPTH` levels and
:data:`MAX_VALUES` visited values. fal's own documents stay far inside these limits (the largest
of ~940 is 66 KB and 13 levels deep).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

__all__ = [
    "MAX_ARGUMENTS_BYTES",
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_VALUES",
    "InputLimitError",
    "check_nesting",
    "loads_json",
    "read_bounded",
]

MAX_DOCUMENT_BYTES: Final = 8 * 1024 * 1024
"""An OpenAPI document or a registry file (``models.yaml``, ``sizes.yaml``, a schema)."""
MAX_ARGUMENTS_BYTES: Final = 32 * 1024 * 1024
"""A ``falbind validate`` argument file or manifest (arguments may inline data URIs)."""
MAX_DEPTH: Final = 64
"""Nesting levels of objects and arrays."""
MAX_VALUES: Final = 2_000_000
"""Values visited in one parsed file (YAML aliases count every time they are used)."""


class InputLimitError(ValueError):
    """An input over a limit; the message is one line and names the file."""


def _size(count: int) -> str:
    return f"{count / (1024 * 1024):.1f} MiB" if count >= 1024 * 1024 else f"{count} bytes"


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``, refused when over ``limit`` (checked before reading, and while
    reading for files whose size is unknown, such as pipes). ``OSError`` propagates."""
    with path.open("rb") as stream:
        try:
            size = os.fstat(stream.fileno()).st_size
        except OSError:
            size = 0
        if size > limit:
            raise InputLimitError(
                f"{path}: {_size(size)} is over the {_size(limit)} limit for {what}"
            )
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise InputLimitError(f"{path}: more than the {_size(limit)} limit for {what}")
    return data


def check_nesting(
    data: Any, source: str, *, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES
) -> None:
    """Refuse ``data`` nested deeper than ``max_depth`` levels or holding more than
    ``max_values`` values (iterative: deep data cannot exhaust the stack here)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    visited = 0
    while stack:
        node, depth = stack.pop()
        visited += 1
        if visited > max_values:
            raise InputLimitError(
                f"{source}: more than {max_values} values (YAML aliases expanding?); refused"
            )
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        if depth > max_depth:
            raise InputLimitError(f"{source}: nested deeper than {max_depth} levels; refused")
        stack.extend((child, depth + 1) for child in children)


def loads_json(raw: bytes | str, source: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` within the nesting limit. ``ValueError`` (``json.JSONDecodeError``,
    ``UnicodeDecodeError``) for invalid JSON propagates; too deep is :class:`InputLimitError`."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise InputLimitError(f"{source}: nested deeper than {max_depth} levels; refused") from None
    check_nesting(data, source, max_depth=max_depth)
    return data
