"""Reading call arguments from the syntax tree as data, without evaluating anything.

A value the lint cannot know statically (a variable, a call, an f-string) becomes
:data:`UNKNOWN`; a dict with a ``**spread`` or a computed key is *open* (its keys are not all
known, so no required parameter is reported missing from it). Every value and key keeps the
syntax node it came from, so a finding points at the exact line and column.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["UNKNOWN", "Arguments", "Path", "Unknown", "read_literal"]

Path = tuple[str | int, ...]


class Unknown:
    """The value of an expression the lint does not evaluate."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN: Final = Unknown()
_MAX_DEPTH: Final = 32


@dataclass
class Arguments:
    """A request body as far as the source shows it."""

    value: dict[str, Any] = field(default_factory=dict)
    value_nodes: dict[Path, ast.AST] = field(default_factory=dict)
    """Where each value is written (the root is the call or the dict literal)."""
    key_nodes: dict[Path, ast.AST] = field(default_factory=dict)
    """Where each key is written (a dict key, or the ``keyword`` of a call)."""
    unknown: set[Path] = field(default_factory=set)
    open: set[Path] = field(default_factory=set)
    origins: dict[Path, str] = field(default_factory=dict)
    """Top-level keys that the host library adds itself (e.g. ``"default"`` for Pipecat)."""

    def node_for(self, path: Path, *, key: bool = False) -> ast.AST:
        """The node of ``path`` (its key node when ``key``), else of its nearest parent."""
        if key and path in self.key_nodes:
            return self.key_nodes[path]
        for end in range(len(path), -1, -1):
            node = self.value_nodes.get(path[:end]) or (
                self.key_nodes.get(path[:end]) if end else None
            )
            if node is not None:
                return node
        return self.value_nodes[()]

    def under_unknown(self, path: Path) -> bool:
        return any(path[: len(u)] == u for u in self.unknown)

    def set_key(
        self, name: str, key_node: ast.AST, value_node: ast.expr, resolve: Resolver
    ) -> None:
        """Add the top-level key ``name`` written at ``key_node`` with value ``value_node``."""
        self.key_nodes[(name,)] = key_node
        self.value[name] = read_literal(value_node, (name,), self, resolve)

    def set_default(self, name: str, value: Any, origin: str) -> None:
        self.value[name] = value
        self.origins[(name,)] = origin


Resolver = Callable[[str], ast.expr | None]
"""Looks up a name bound once to a literal expression in the current scope."""


def read_literal(
    node: ast.expr, path: Path, into: Arguments, resolve: Resolver, depth: int = 0
) -> Any:
    """The value of ``node`` as JSON-like data; records nodes, unknowns and open dicts."""
    into.value_nodes.setdefault(path, node)
    if depth > _MAX_DEPTH:
        into.unknown.add(path)
        return UNKNOWN
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool | None):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub | ast.UAdd)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int | float)
        and not isinstance(node.operand.value, bool)
    ):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, ast.Dict):
        result: dict[str, Any] = {}
        for key, value in zip(node.keys, node.values, strict=True):
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                child = (*path, key.value)
                into.key_nodes[child] = key
                result[key.value] = read_literal(value, child, into, resolve, depth + 1)
            else:
                into.open.add(path)  # **spread or a computed key
        return result
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        if node.args:
            into.unknown.add(path)
            return UNKNOWN
        built: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                into.open.add(path)
                continue
            child = (*path, keyword.arg)
            into.key_nodes[child] = keyword
            built[keyword.arg] = read_literal(keyword.value, child, into, resolve, depth + 1)
        return built
    if isinstance(node, ast.List | ast.Tuple):
        if any(isinstance(item, ast.Starred) for item in node.elts):
            into.unknown.add(path)
            return UNKNOWN
        return [
            read_literal(item, (*path, index), into, resolve, depth + 1)
            for index, item in enumerate(node.elts)
        ]
    if isinstance(node, ast.Name):
        bound = resolve(node.id)
        if bound is not None:
            return read_literal(bound, path, into, resolve, depth + 1)
    into.unknown.add(path)
    return UNKNOWN
