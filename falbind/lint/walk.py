"""The walk over one file's syntax tree: each call, with the scope it is made in, goes to the
checker (:mod:`.check`); the names in scope come from :mod:`.scan`."""

from __future__ import annotations

import ast

from .check import Checker
from .findings import Finding, LintResult
from .scan import (
    FileContext,
    Scope,
    _annotation_symbol,
    _Binder,
    _self_attributes,
    qualify,
    quick_reject,
)

__all__ = ["lint_source"]


class _Walker:
    """Visits every call with the scope it is made in (a hand-rolled traversal: dispatching on
    three node types directly costs about half of ``ast.NodeVisitor``'s per-node lookup)."""

    def __init__(self, context: FileContext, module: Scope) -> None:
        self.context = context
        self.scope = module
        self.checker = Checker(context)
        self.class_scopes: list[Scope] = []

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        parent = self.class_scopes[-1] if self.class_scopes else self.scope
        scope = Scope(parent=parent)
        arguments = node.args
        for argument in (
            *arguments.posonlyargs,
            *arguments.args,
            *arguments.kwonlyargs,
            *(a for a in (arguments.vararg, arguments.kwarg) if a is not None),
        ):
            scope.bind(argument.arg, _annotation_symbol(argument.annotation, parent))
        for default in (*arguments.defaults, *(d for d in arguments.kw_defaults if d)):
            self.visit(default)
        saved, saved_classes = self.scope, self.class_scopes
        self.scope, self.class_scopes = scope, []
        if isinstance(node, ast.Lambda):
            self.visit(node.body)
        else:
            for decorator in node.decorator_list:
                self.visit(decorator)
            _Binder(scope).statements(node.body)
            for statement in node.body:
                self.visit(statement)
        self.scope, self.class_scopes = saved, saved_classes

    def visit(self, node: ast.AST) -> None:
        kind = type(node)
        if kind is ast.Call:
            self.visit_Call(node)  # type: ignore[arg-type]
        elif kind is ast.FunctionDef or kind is ast.AsyncFunctionDef or kind is ast.Lambda:
            self._function(node)  # type: ignore[arg-type]
        elif kind is ast.ClassDef:
            self.visit_ClassDef(node)  # type: ignore[arg-type]
        else:
            for child in ast.iter_child_nodes(node):
                self.visit(child)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expression in (*node.bases, *node.decorator_list, *(k.value for k in node.keywords)):
            self.visit(expression)
        attributes = Scope(parent=self.scope)
        if self.context.mentions_followed_name(node):
            outer = self.scope
            attributes.loader = lambda scope: _self_attributes(node, outer, scope)
        self.class_scopes.append(attributes)
        for statement in node.body:
            self.visit(statement)
        self.class_scopes.pop()

    def visit_Call(self, node: ast.Call) -> None:
        symbol = qualify(node.func, self.scope)
        if symbol is not None:
            try:
                self.checker.call(node, symbol, self.scope)
            except Exception as exc:  # the lint must get through any code it reads
                self.context.internal_error(node, exc)
        for child in ast.iter_child_nodes(node):
            self.visit(child)


def lint_source(path: str, text: str, result: LintResult, *, explain: bool = False) -> None:
    """Lint one file's text into ``result`` (findings already filtered by ignore comments)."""
    result.files_scanned += 1
    if quick_reject(text):
        return
    result.files_parsed += 1
    context = FileContext(path, text, result, explain)
    try:
        tree = ast.parse(text, filename=path)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None) or 1
        column = getattr(exc, "offset", None) or 1
        message = f"cannot parse: {getattr(exc, 'msg', None) or exc}"
        result.findings.append(Finding(path, line, column, "FB900", message, "file"))
        return
    module = Scope()
    _Binder(module).statements(tree.body)
    context.tree, context.module = tree, module
    walker = _Walker(context, module)
    walker.visit(tree)
    try:
        walker.checker.finish()
    except Exception as exc:  # the lint must get through any code it reads
        context.internal_error(tree, exc)
    if context.findings:
        ignored = context.ignored()
        for finding in sorted(context.findings, key=lambda f: (f.line, f.column, f.code)):
            codes = ignored.get(finding.line, frozenset())
            if finding.line in ignored and (codes is None or finding.code in codes):
                result.suppressed += 1
            else:
                result.findings.append(finding)
