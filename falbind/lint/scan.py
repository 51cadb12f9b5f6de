"""The syntax-tree walk: which names in a file are fal-client, LiteLLM, Pipecat or falbind, and
which calls go to fal.

Nothing scanned is imported or executed: each file is read as text and parsed with :mod:`ast`.
A file in which no line imports one of the modules the lint follows
(:data:`~.hosts.MODULE_ROOTS`) is skipped after one regular-expression search, before parsing:
every call the lint recognises starts from an import of one of them, so such a file cannot hold
one.

Names are followed within a file, flow-insensitively per scope: ``import fal_client as fc``,
``from fal_client import subscribe``, ``client = fal_client.SyncClient()``,
``with FalClient() as fal``, ``self.fal = AsyncFalClient()`` (in any method of the class),
parameters annotated with a client class, and names bound once to a literal (an endpoint id or
an arguments dict). A name bound to two different things in one scope, or rebound to something
the lint does not know, is not followed (a same-named function from another module is never
mistaken for fal's).
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from . import hosts
from .findings import Finding, LintResult, Skip

__all__ = ["FileContext", "Scope", "iter_python_files", "quick_reject"]

_ROOTS: Final = "|".join(sorted(hosts.MODULE_ROOTS))
_IMPORT_PATTERN: Final = re.compile(
    rf"^[ \t]*(?:from[ \t]+(?:{_ROOTS})\b|import[ \t][^\n]*\b(?:{_ROOTS})\b)", re.MULTILINE
)
_IGNORE: Final = re.compile(r"#\s*falbind:\s*ignore(?:\[([A-Za-z0-9_,\s]*)\])?")
_MUTATORS: Final = frozenset(
    {"update", "setdefault", "pop", "popitem", "clear", "append", "extend", "insert", "remove"}
)
_CONFLICT: Final = "<conflict>"


def quick_reject(text: str) -> bool:
    """True when no line of ``text`` imports a followed module (``import fal_client``,
    ``from litellm import ...``): every call the lint recognises starts from such an import,
    so none can be found."""
    return _IMPORT_PATTERN.search(text) is None


# --------------------------------------------------------------------------- scopes


@dataclass
class Scope:
    """Names bound in one scope (module, class attributes, function), over its parent."""

    parent: Scope | None = None
    symbols: dict[str, str | None] = field(default_factory=dict)
    """Dotted name -> what it is (``fal_client.subscribe``, ``falbind.FalClient()`` for an
    instance); ``None`` when rebound to something the lint does not follow."""
    consts: dict[str, ast.expr | None] = field(default_factory=dict)
    """Name -> the literal it is bound to once; ``None`` when bound more than once or not to a
    literal."""
    loader: Callable[[Scope], None] | None = None
    """Fills the scope on first use (a class's ``self.<name>`` clients)."""

    def _ready(self) -> Scope:
        if self.loader is not None:
            loader, self.loader = self.loader, None
            loader(self)
        return self

    def symbol(self, name: str) -> str | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope._ready().symbols:
                value = scope.symbols[name]
                return None if value == _CONFLICT else value
            scope = scope.parent
        return None

    def has(self, name: str) -> bool:
        scope: Scope | None = self
        while scope is not None:
            if name in scope._ready().symbols:
                return True
            scope = scope.parent
        return False

    def const(self, name: str) -> ast.expr | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope._ready().consts or name in scope.symbols:
                return scope.consts.get(name)
            scope = scope.parent
        return None

    def bind(self, name: str, symbol: str | None) -> None:
        if name in self.symbols and self.symbols[name] != symbol:
            self.symbols[name] = _CONFLICT
        else:
            self.symbols[name] = symbol
        self.consts[name] = None

    def bind_const(self, name: str, value: ast.expr) -> None:
        first = name not in self.consts and name not in self.symbols
        self.symbols[name] = None if first else _CONFLICT
        self.consts[name] = value if first else None


def dotted(node: ast.expr) -> str | None:
    """``self.client`` for an attribute chain over a name, else ``None``."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def qualify(node: ast.expr, scope: Scope) -> str | None:
    """What ``node`` refers to: ``fal_client.subscribe``, ``falbind.FalClient().images`` ..."""
    if isinstance(node, ast.Name):
        return scope.symbol(node.id)
    if isinstance(node, ast.Attribute):
        name = dotted(node)
        if name is not None and scope.has(name):
            return scope.symbol(name)
        base = qualify(node.value, scope)
        return hosts.canonical(f"{base}.{node.attr}") if base else None
    if isinstance(node, ast.Call):
        base = qualify(node.func, scope)
        known = base in hosts.CLIENT_CLASSES or base in hosts.CONSTRUCTED
        return f"{base}()" if known else None
    if isinstance(node, ast.Await):
        return qualify(node.value, scope)
    return None


def _annotation_symbol(annotation: ast.expr | None, scope: Scope) -> str | None:
    if annotation is None:
        return None
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            annotation = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return None
    symbol = qualify(annotation, scope)
    return f"{symbol}()" if symbol in hosts.CLIENT_CLASSES else None


def _value_symbol(value: ast.expr, scope: Scope) -> str | None:
    """What a name bound to ``value`` becomes: an instance, or an alias of a followed name."""
    symbol = qualify(value, scope)
    if symbol is None:
        return None
    root = symbol.split(".", 1)[0]
    return symbol if root in hosts.MODULE_ROOTS else None


_LITERAL_NODES: Final = (ast.Constant, ast.Dict, ast.List, ast.Tuple, ast.UnaryOp)


class _Binder:
    """Collects one scope's bindings from its statements (not from nested functions/classes)."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def statements(self, body: Iterable[ast.stmt]) -> None:
        for statement in body:
            self.statement(statement)

    def statement(self, node: ast.stmt) -> None:
        scope = self.scope
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".", 1)[0]
                known = root in hosts.MODULE_ROOTS
                if alias.asname:
                    scope.bind(alias.asname, hosts.canonical(alias.name) if known else None)
                else:
                    scope.bind(root, root if known else None)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            known = node.level == 0 and module.split(".", 1)[0] in hosts.MODULE_ROOTS
            for alias in node.names:
                if alias.name == "*":
                    continue
                name = alias.asname or alias.name
                scope.bind(name, hosts.canonical(f"{module}.{alias.name}") if known else None)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                self.assign(target, node.value)
        elif isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.assign(node.target, node.value)
            else:
                annotated = dotted(node.target)
                symbol = _annotation_symbol(node.annotation, scope)
                if annotated is not None and symbol is not None:
                    scope.bind(annotated, symbol)
        elif isinstance(node, ast.AugAssign):
            self.unbind(node.target)
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                if item.optional_vars is not None:
                    self.assign(item.optional_vars, item.context_expr, literal=False)
            self.statements(node.body)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            scope.bind(node.name, None)
        elif isinstance(node, ast.For | ast.AsyncFor):
            self.unbind(node.target)
            self.statements(node.body)
            self.statements(node.orelse)
        elif isinstance(node, ast.If | ast.While):
            self.statements(node.body)
            self.statements(node.orelse)
        elif isinstance(node, ast.Try | ast.TryStar):
            self.statements(node.body)
            for handler in node.handlers:
                if handler.name:
                    scope.bind(handler.name, None)
                self.statements(handler.body)
            self.statements(node.orelse)
            self.statements(node.finalbody)
        elif isinstance(node, ast.Match):
            for case in node.cases:
                self.statements(case.body)

    def unbind(self, target: ast.expr) -> None:
        for node in ast.walk(target):
            if isinstance(node, ast.Name):
                self.scope.bind(node.id, None)
        name = dotted(target)
        if name is not None:
            self.scope.bind(name, None)

    def assign(self, target: ast.expr, value: ast.expr, *, literal: bool = True) -> None:
        name = dotted(target)
        if name is None:
            self.unbind(target)
            return
        if (
            isinstance(value, ast.Constant)
            and value.value is None
            and self.scope.symbols.get(name) not in (None, _CONFLICT)
        ):
            return  # `except ImportError: fal_client = None`: still the module where it is used
        symbol = _value_symbol(value, self.scope)
        if (
            literal
            and isinstance(target, ast.Name)
            and ((symbol is None and isinstance(value, _LITERAL_NODES)) or symbol in _PIPECAT_CALLS)
        ):
            self.scope.bind_const(name, value)
            return
        self.scope.bind(name, symbol)


_PIPECAT_CALLS: Final = frozenset(
    {f"{hosts.PIPECAT_SETTINGS}()", f"{hosts.PIPECAT_INPUT_PARAMS}()"}
)


def _mutated_names(tree: ast.AST) -> frozenset[str]:
    """Names whose value is changed in place somewhere in the file (never read as literals)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del):
            if isinstance(node.value, ast.Name):
                names.add(node.value.id)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _MUTATORS
            and isinstance(node.func.value, ast.Name)
        ):
            names.add(node.func.value.id)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            names.update(node.names)
    return frozenset(names)


def _self_attributes(node: ast.ClassDef, scope: Scope, attributes: Scope) -> None:
    """Fill ``attributes`` with the ``self.<name>`` clients assigned in any method of the
    class."""
    for item in node.body:
        if not isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        method = Scope(parent=scope)
        for argument in (*item.args.posonlyargs, *item.args.args, *item.args.kwonlyargs):
            method.bind(argument.arg, _annotation_symbol(argument.annotation, scope))
        _Binder(method).statements(item.body)
        for statement in ast.walk(item):
            targets: list[ast.expr] = []
            value: ast.expr | None = None
            if isinstance(statement, ast.Assign):
                targets, value = statement.targets, statement.value
            elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                targets, value = [statement.target], statement.value
            for target in targets:
                name = dotted(target)
                if value is not None and name is not None and name.startswith("self."):
                    attributes.bind(name, _value_symbol(value, method))


# --------------------------------------------------------------------------- positions


class FileContext:
    """One file being linted: its text (for columns and ignore comments) and what was found."""

    def __init__(self, path: str, text: str, result: LintResult, explain: bool) -> None:
        self.path = path
        self.text = text
        self.result = result
        self.explain = explain
        self._lines: list[str] | None = None
        self.findings: list[Finding] = []
        self.tree: ast.Module | None = None
        self.module: Scope | None = None
        self._mutated: frozenset[str] | None = None
        self._followed: re.Pattern[str] | None = None

    @property
    def mutated(self) -> frozenset[str]:
        """Names changed in place somewhere in the file (computed on first use)."""
        if self._mutated is None:
            self._mutated = _mutated_names(self.tree) if self.tree is not None else frozenset()
        return self._mutated

    def mentions_followed_name(self, node: ast.stmt) -> bool:
        """Whether the source of ``node`` names a followed module or a module-level name bound
        to one (a class that does not cannot hold a ``self.<client>``)."""
        if self._followed is None:
            names = set(hosts.MODULE_ROOTS)
            if self.module is not None:
                names.update(n for n, v in self.module.symbols.items() if v and "." not in n)
            self._followed = re.compile("|".join(re.escape(n) for n in sorted(names)))
        if self._lines is None:
            self._lines = self.text.splitlines()
        end = getattr(node, "end_lineno", None) or len(self._lines)
        return any(self._followed.search(line) for line in self._lines[node.lineno - 1 : end])

    def position(self, node: ast.AST) -> tuple[int, int]:
        """1-based line and character column (ast's columns are UTF-8 byte offsets)."""
        line = int(getattr(node, "lineno", 1))
        offset = int(getattr(node, "col_offset", 0))
        if self._lines is None:
            self._lines = self.text.splitlines()
        source = self._lines[line - 1] if 0 < line <= len(self._lines) else ""
        column = len(source.encode("utf-8")[:offset].decode("utf-8", errors="replace"))
        return line, column + 1

    def report(
        self,
        node: ast.AST,
        code: str,
        message: str,
        host: str,
        *,
        endpoint: str | None = None,
        suggestions: Iterable[str] = (),
    ) -> None:
        line, column = self.position(node)
        finding = Finding(
            self.path, line, column, code, message, host, endpoint, tuple(suggestions)
        )
        if finding not in self.findings:
            self.findings.append(finding)

    def skip(self, node: ast.AST, host: str, reason: str) -> None:
        if self.explain:
            line, column = self.position(node)
            self.result.skipped.append(Skip(self.path, line, column, host, reason))

    def internal_error(self, node: ast.AST, exc: Exception) -> None:
        """A call the lint failed to check: said on stderr (and skipped), never fatal."""
        line, column = self.position(node)
        reason = f"falbind could not check this call ({type(exc).__name__}: {exc})"
        print(f"falbind: lint: {self.path}:{line}:{column}: {reason}", file=sys.stderr)
        self.result.skipped.append(Skip(self.path, line, column, "falbind", reason))

    def ignored(self) -> dict[int, frozenset[str] | None]:
        """``line -> codes`` silenced by ``# falbind: ignore[...]`` (``None``: every code)."""
        found: dict[int, frozenset[str] | None] = {}
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(self.text).readline))
        except (tokenize.TokenError, SyntaxError):
            return found
        for token in tokens:
            if token.type != tokenize.COMMENT:
                continue
            match = _IGNORE.search(token.string)
            if match is None:
                continue
            codes = match.group(1)
            found[token.start[0]] = (
                None
                if codes is None
                else frozenset(c.strip().upper() for c in codes.split(",") if c.strip())
            )
        return found


def iter_python_files(paths: Iterable[Path], exclude: Iterable[str] = ()) -> Iterator[Path]:
    """Each path once: files as given, folders walked for ``*.py`` (hidden folders, virtual
    environments, ``node_modules``, ``__pycache__``, ``build``, ``dist`` and ``exclude`` globs
    left out)."""
    patterns = tuple(exclude)
    seen: set[Path] = set()
    for path in paths:
        found = [path] if path.is_file() else sorted(_walk(path, patterns))
        for file in found:
            key = file.absolute()
            if key not in seen:
                seen.add(key)
                yield file


_SKIPPED_DIRS: Final = frozenset(
    {"node_modules", "__pycache__", "site-packages", "venv", "build", "dist"}
)


def _walk(folder: Path, patterns: tuple[str, ...]) -> Iterator[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if any(entry.match(p) for p in patterns):
            continue
        if entry.is_dir():
            if entry.name.startswith(".") or entry.name in _SKIPPED_DIRS:
                continue
            if (entry / "pyvenv.cfg").exists():
                continue
            yield from _walk(entry, patterns)
        elif entry.suffix == ".py" and entry.is_file():
            yield entry
