"""Checking recognised fal calls against the bound endpoints, with falbind's own machinery.

Every judgement is falbind's: endpoint lookup (``tooling.endpoints.resolve_endpoint`` and
``images.resolve_model``), validation (``spec.input_model.model_validate``, whose errors carry
falbind's did-you-mean), error paths and messages (``tooling.validation_errors``, as ``falbind
validate`` reports them), and the OpenAI-style image parameters (``images.model_traits`` and
``sizing.plan_for``, as ``client.images.generate`` maps them). This module only decides what is
known statically and where each error points.
"""

from __future__ import annotations

import ast
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from falbind.models.suggest import suggest_names
from falbind.tooling.endpoints import EndpointLookupError, resolve_endpoint

from . import hosts
from .literals import UNKNOWN, Arguments, Path, Unknown, read_literal
from .rules import rule_for_error_type
from .scan import FileContext, Scope, qualify

# pydantic, the clients (httpx) and the endpoint index are imported inside the functions that
# need them: together ~1 s that ``falbind lint`` pays only once it finds a fal call to check.

__all__ = ["Checker"]

_PROMPT: Final = "prompt"
_DEFAULT: Final = "default"  # origin of a value the host library sends by itself
_SIZE: Final = "size"
_COUNT: Final = "n"
_HOST_NAMES: Final = {"pipecat": "Pipecat", "litellm": "LiteLLM"}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _render(path: Path) -> str:
    from falbind.tooling.validation_errors import render_path  # deferred: pydantic

    rendered = render_path(path)
    return rendered[2:] if rendered.startswith("$.") else rendered


@functools.cache
def _keyword_only(owner: str, method: str) -> frozenset[str]:
    """The keyword-only parameters of a falbind method (its own options, not model fields)."""
    from falbind import FalClient  # deferred: httpx
    from falbind.images.generate import Images  # deferred: httpx and pydantic

    target = {"client": FalClient, "images": Images}[owner]
    signature = inspect.signature(getattr(target, method))
    return frozenset(
        name
        for name, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    )


@functools.cache
def _is_client_attribute(name: str) -> bool:
    from falbind import AsyncFalClient, FalClient  # deferred: httpx

    return hasattr(FalClient, name) or hasattr(AsyncFalClient, name)


@dataclass
class _PipecatCall:
    node: ast.Call
    scope: Scope


class Checker:
    """Checks the fal calls of one file; findings go to the file's context."""

    def __init__(self, context: FileContext) -> None:
        self.context = context
        self.scope = Scope()
        self._pipecat_settings: list[_PipecatCall] = []
        self._pipecat_services: list[_PipecatCall] = []

    # ------------------------------------------------------------------ dispatch

    def call(self, node: ast.Call, symbol: str, scope: Scope) -> None:
        self.scope = scope
        if symbol in hosts.FAL_CLIENT_FUNCTIONS:
            self._checked()
            self.fal_client(node, stream=symbol.startswith("fal_client.stream"))
            return
        if symbol in hosts.LITELLM_FUNCTIONS:
            self.litellm(node, edit=symbol in hosts.LITELLM_EDIT)
            return
        if symbol == hosts.PIPECAT_SERVICE:
            self._pipecat_services.append(_PipecatCall(node, scope))
            return
        if symbol == hosts.PIPECAT_SETTINGS:
            self._pipecat_settings.append(_PipecatCall(node, scope))
            return
        owner, sep, member = symbol.partition("().")
        if not sep:
            return
        if owner in hosts.FAL_CLIENT_CLASSES and member in hosts.FAL_CLIENT_METHODS:
            self._checked()
            self.fal_client(node, stream=member == "stream")
        elif owner in hosts.FALBIND_CLIENTS:
            self.falbind(node, member)

    def finish(self) -> None:
        """Pipecat calls, once the whole file is walked (a service may name settings built
        anywhere in its scope)."""
        handled: set[int] = set()
        for service in self._pipecat_services:
            self.scope = service.scope
            handled.update(self.pipecat_service(service.node))
        for settings in self._pipecat_settings:
            if id(settings.node) not in handled:
                self.scope = settings.scope
                self._checked()
                self.pipecat(settings.node, None, None, settings.node)

    # ------------------------------------------------------------------ helpers

    def _checked(self) -> None:
        self.context.result.calls_checked += 1

    def _resolve(self, name: str) -> ast.expr | None:
        """The literal ``name`` is bound to once, unless it is changed in place somewhere."""
        bound = self.scope.const(name)
        if bound is None or name in self.context.mutated:
            return None
        return bound

    def _string(self, node: ast.expr | None) -> str | Unknown | None:
        """A literal string (also through a name bound once to one); UNKNOWN otherwise."""
        if node is None:
            return None
        probe = Arguments()
        value = read_literal(node, (), probe, self._resolve)
        return value if isinstance(value, str) else UNKNOWN

    def _literal(self, node: ast.expr) -> Any:
        return read_literal(node, (), Arguments(), self._resolve)

    @staticmethod
    def _keywords(node: ast.Call) -> dict[str, ast.keyword]:
        return {k.arg: k for k in node.keywords if k.arg is not None}

    @staticmethod
    def _argument(node: ast.Call, index: int, name: str) -> ast.expr | None:
        """Positional argument ``index`` or keyword ``name`` (``None`` if neither, or after a
        ``*args``)."""
        for position, argument in enumerate(node.args):
            if isinstance(argument, ast.Starred):
                return None
            if position == index:
                return argument
        for keyword in node.keywords:
            if keyword.arg == name:
                return keyword.value
        return None

    def _skip(self, node: ast.AST, host: str, reason: str) -> None:
        self.context.skip(node, host, reason)

    def _lookup(self, node: ast.AST, endpoint: str, host: str, *, exact: bool) -> Any:
        """The spec of a bound endpoint, or ``None`` after reporting FB100."""
        try:
            spec = resolve_endpoint(endpoint)
        except EndpointLookupError as exc:
            self.context.report(
                node, "FB100", str(exc), host, endpoint=endpoint, suggestions=exc.suggestions
            )
            return None
        if exact and spec.id != endpoint:
            self.context.report(
                node,
                "FB100",
                f"{endpoint!r} is falbind's name for {spec.id}; {host} sends the id to fal "
                f"unchanged, so fal cannot find it; use {spec.id!r}",
                host,
                endpoint=endpoint,
                suggestions=[spec.id],
            )
        return spec

    # ------------------------------------------------------------------ validation

    def validate(
        self,
        spec: Any,
        arguments: Arguments,
        host: str,
        *,
        default_anchor: ast.AST | None = None,
        default_note: Callable[[str], str] | None = None,
    ) -> None:
        """Validate ``arguments`` with the endpoint's request model and report each error
        that concerns what the source shows."""
        from pydantic import ValidationError  # deferred: pydantic

        from falbind.tooling.validation_errors import explained_errors  # deferred: pydantic

        try:
            spec.input_model.model_validate(arguments.value)
        except ValidationError as exc:
            errors = exc.errors()
        else:
            return
        for error, path, message, suggestions in explained_errors(arguments.value, errors):
            if arguments.under_unknown(path):
                continue
            kind = str(error["type"])
            if kind == "missing" and (path[:-1] in arguments.open or not path):
                continue
            code = rule_for_error_type(kind)
            origin = arguments.origins.get(path[:1]) if path else None
            if origin == _DEFAULT and default_anchor is not None and default_note is not None:
                if code == "FB101":
                    self._skip(default_anchor, host, default_note(str(path[0])))
                    continue
                text = (
                    f"{_HOST_NAMES.get(host, host)} sends {path[0]}={_short(arguments.value.get(str(path[0])))} by "
                    f"default and {spec.id} refuses it: {message}; set {path[0]} explicitly"
                )
                self.context.report(default_anchor, "FB301", text, host, endpoint=spec.id)
                continue
            name = _render(path)
            if code == "FB101":
                text = message
            elif code == "FB104":
                text = f"missing required parameter {name!r} for {spec.id}"
            else:
                text = f"{name}={_short(error.get('input'))} for {spec.id}: {message}"
                if suggestions and "did you mean" not in text:
                    text += "; did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
            node = arguments.node_for(path, key=code == "FB101")
            self.context.report(node, code, text, host, endpoint=spec.id, suggestions=suggestions)

    def _arguments_from(self, root: ast.AST, node: ast.expr | None) -> Arguments | None:
        """The body in a dict argument (``None`` when the argument is not a literal)."""
        arguments = Arguments()
        arguments.value_nodes[()] = node if node is not None else root
        if node is None:
            return arguments
        value = read_literal(node, (), arguments, self._resolve)
        if not isinstance(value, dict):
            return None
        arguments.value = value
        return arguments

    # ------------------------------------------------------------------ fal-client

    def fal_client(self, node: ast.Call, *, stream: bool) -> None:
        host = "fal-client"
        id_node = self._argument(node, 0, "application")
        endpoint = self._string(id_node)
        if id_node is None or not isinstance(endpoint, str):
            self._skip(node, host, "the endpoint id is not a literal string")
            return
        keywords = self._keywords(node)
        method = self._literal(keywords["method"].value) if "method" in keywords else "POST"
        if method != "POST":
            self._skip(node, host, "not a POST request (method=)")
            return
        if "path" in keywords and not stream:
            path = self._string(keywords["path"].value)
            if not isinstance(path, str):
                self._skip(node, host, "path= is not a literal string")
                return
            if path.strip("/"):
                endpoint = f"{endpoint.rstrip('/')}/{path.strip('/')}"
        spec = self._lookup(id_node, endpoint, host, exact=True)
        if spec is None:
            return
        arguments_node = self._argument(node, 1, "arguments")
        if arguments_node is None:
            self._skip(node, host, "no arguments= to check")
            return
        arguments = self._arguments_from(node, arguments_node)
        if arguments is None:
            self._skip(arguments_node, host, "arguments is not a literal dict")
            return
        self.validate(spec, arguments, host)

    # ------------------------------------------------------------------ falbind

    def falbind(self, node: ast.Call, member: str) -> None:
        host = "falbind"
        if member == "images.generate":
            self._checked()
            self.falbind_images(node)
            return
        queue, _, name = member.rpartition(".")
        if member in ("run", "submit", "subscribe"):
            self._checked()
            self.falbind_endpoint(node, member, None)
        elif queue in ("", "queue") and name.isidentifier() and not _is_client_attribute(name):
            from falbind import ENDPOINTS, UnknownEndpointError  # deferred: the index

            try:
                spec = ENDPOINTS.by_name(name)
            except UnknownEndpointError:
                return  # not an endpoint method; the type checker reports unknown attributes
            self._checked()
            self.falbind_endpoint(node, "subscribe" if queue else "run", spec)
        else:
            self._skip(node, host, f"falbind call .{member}() is not checked")

    def falbind_endpoint(self, node: ast.Call, method: str, spec: Any) -> None:
        host = "falbind"
        keywords = self._keywords(node)
        first = 0
        if spec is None:
            id_node = (
                node.args[0] if node.args and not isinstance(node.args[0], ast.Starred) else None
            )
            endpoint = self._string(id_node)
            if id_node is None or not isinstance(endpoint, str):
                self._skip(node, host, "the endpoint id is not a literal string")
                return
            untyped = "untyped" in keywords and self._literal(keywords["untyped"].value) is True
            if untyped:
                try:
                    spec = resolve_endpoint(endpoint)
                except EndpointLookupError:
                    self._skip(node, host, f"untyped=True call to {endpoint!r}, not bound")
                    return
            else:
                spec = self._lookup(id_node, endpoint, host, exact=False)
                if spec is None:
                    return
            first = 1
        arguments_node = None
        if len(node.args) > first and not isinstance(node.args[first], ast.Starred):
            arguments_node = node.args[first]
        arguments = self._arguments_from(node, arguments_node)
        if arguments is None:
            assert arguments_node is not None
            self._skip(arguments_node, host, "the arguments are not a literal dict")
            arguments = Arguments()
            arguments.value_nodes[()] = node
            arguments.open.add(())
        if any(isinstance(a, ast.Starred) for a in node.args):
            arguments.open.add(())
        reserved = _keyword_only("client", method)
        for keyword in node.keywords:
            if keyword.arg is None:
                arguments.open.add(())
            elif keyword.arg not in reserved:
                arguments.set_key(keyword.arg, keyword, keyword.value, self._resolve)
        self.validate(spec, arguments, host)

    def falbind_images(self, node: ast.Call) -> None:
        host = "falbind"
        keywords = self._keywords(node)
        model = self._string(keywords["model"].value if "model" in keywords else None)
        if not isinstance(model, str):
            self._skip(node, host, "images.generate: model is not a literal string")
            return
        reserved = _keyword_only("images", "generate")
        strict = "strict_size" in keywords and self._literal(keywords["strict_size"].value) is True
        self.images(
            node,
            host,
            model,
            keywords["model"].value,
            reserved,
            strict_size=strict,
            count_limit=False,
        )

    # ------------------------------------------------------------------ LiteLLM

    def litellm(self, node: ast.Call, *, edit: bool) -> None:
        host = "litellm"
        keywords = self._keywords(node)
        model_node = self._argument(node, 2 if edit else 1, "model")
        model = self._string(model_node)
        provider = (
            self._string(keywords["custom_llm_provider"].value)
            if "custom_llm_provider" in keywords
            else None
        )
        if not isinstance(model, str):
            if model_node is not None or any(k.arg is None for k in node.keywords):
                self._skip(node, host, "the model is not a literal string")
            return
        if model.startswith(("fal_ai/", "falbind/")):
            prefix, _, endpoint = model.partition("/")
        elif provider in ("fal_ai", "falbind"):
            prefix, endpoint = str(provider), model
        else:
            return  # another provider's model: not a fal call
        assert model_node is not None
        self._checked()
        if edit:
            self.litellm_edit(node, endpoint, model_node)
            return
        self.images(
            node,
            host,
            endpoint,
            model_node,
            None,
            strict_size=prefix == "fal_ai",
            count_limit=prefix == "fal_ai",
        )

    def litellm_edit(self, node: ast.Call, endpoint: str, model_node: ast.expr) -> None:
        host = "litellm"
        spec = self._lookup(model_node, endpoint, host, exact=False)
        if spec is None:
            return
        arguments = Arguments()
        arguments.value_nodes[()] = node
        arguments.open.add(())  # LiteLLM adds the image URLs itself
        for keyword in node.keywords:
            if keyword.arg is not None and not hosts.is_litellm_owned(keyword.arg):
                arguments.set_key(keyword.arg, keyword, keyword.value, self._resolve)
        self._skip(node, host, "image_edit: size, n and the images LiteLLM adds are not checked")
        self.validate(spec, arguments, host)

    # ------------------------------------------------------------------ images

    def images(
        self,
        node: ast.Call,
        host: str,
        model: str,
        model_node: ast.expr,
        reserved: frozenset[str] | None,
        *,
        strict_size: bool,
        count_limit: bool,
    ) -> None:
        """An OpenAI-style image call (LiteLLM, ``client.images.generate``): the endpoint,
        ``response_format``, ``n`` and ``size`` as falbind maps them, then the request body."""
        from falbind import ENDPOINTS, UnknownEndpointError  # deferred: the index
        from falbind.images.generate import model_traits, resolve_model  # deferred: httpx
        from falbind.images.sizing import SizeError, parse_size, plan_for  # deferred: pydantic

        try:
            endpoint_id = resolve_model(model)
        except UnknownEndpointError as exc:
            self.context.report(
                model_node, "FB100", str(exc), host, endpoint=model, suggestions=exc.suggestions
            )
            return
        except ValueError as exc:
            self.context.report(model_node, "FB205", str(exc), host, endpoint=model)
            return
        traits = model_traits(endpoint_id)
        keywords = self._keywords(node)

        def owned(name: str) -> bool:
            if reserved is None:
                return hosts.is_litellm_owned(name)
            return name in reserved

        body = Arguments()
        body.value_nodes[()] = node
        prompt_node = self._argument(node, 0, _PROMPT)
        if prompt_node is not None:
            body.set_key(_PROMPT, prompt_node, prompt_node, self._resolve)
        else:
            body.value[_PROMPT] = UNKNOWN
            body.unknown.add((_PROMPT,))
        for keyword in node.keywords:
            if keyword.arg is None:
                body.open.add(())
            elif not owned(keyword.arg):
                body.set_key(keyword.arg, keyword, keyword.value, self._resolve)

        format_node = keywords["response_format"].value if "response_format" in keywords else None
        response_format = self._literal(format_node) if format_node is not None else None
        if isinstance(response_format, str) and response_format not in ("url", "b64_json"):
            self.context.report(
                format_node or node,
                "FB204",
                f"response_format must be 'url' or 'b64_json', not {response_format!r}",
                host,
                endpoint=endpoint_id,
            )

        count_node = keywords[_COUNT].value if _COUNT in keywords else None
        count = self._literal(count_node) if count_node is not None else None
        if count_node is not None and isinstance(count, int) and not isinstance(count, bool):
            self._count(count, count_node, traits, body, host, limit=count_limit)

        size_node = keywords[_SIZE].value if _SIZE in keywords else None
        size = self._literal(size_node) if size_node is not None else None
        explicit = [name for name in traits.size_fields if name in body.value]
        if size_node is not None and isinstance(size, str):
            if explicit:
                self._skip(
                    size_node, host, f"size is not mapped: {explicit[0]} is given explicitly"
                )
            else:
                try:
                    parse_size(size)
                except SizeError as exc:
                    self.context.report(size_node, "FB202", str(exc), host, endpoint=endpoint_id)
                else:
                    try:
                        plan = plan_for(endpoint_id, size, strict=strict_size)
                    except SizeError as exc:
                        self.context.report(
                            size_node, "FB201", str(exc), host, endpoint=endpoint_id
                        )
                    else:
                        for name, value in plan.params.items():
                            body.value[name] = value
                            body.value_nodes[(name,)] = size_node
                            body.key_nodes[(name,)] = size_node
        elif size_node is not None:
            self._skip(size_node, host, "size is not a literal string")
        self.validate(ENDPOINTS[endpoint_id], body, host)

    def _count(
        self, count: int, node: ast.expr, traits: Any, body: Arguments, host: str, *, limit: bool
    ) -> None:
        endpoint_id = traits.endpoint_id
        field = traits.count_field
        if count < 1:
            message = f"n must be a positive integer, not {count!r}"
            self.context.report(node, "FB203", message, host, endpoint=endpoint_id)
            return
        if field is not None and field in body.value:
            given = body.value[field]
            if isinstance(given, int) and count not in (1, given):
                message = f"n={count} and {field}={given} disagree; pass one of them"
                self.context.report(node, "FB203", message, host, endpoint=endpoint_id)
            return
        if limit and field is None and count > 1:
            message = (
                f"{endpoint_id} has no image-count parameter: LiteLLM's fal_ai provider makes "
                f"one request, so n={count} returns one image"
            )
            self.context.report(node, "FB203", message, host, endpoint=endpoint_id)
            return
        if field is None:
            return
        maximum = traits.count_max
        if limit and maximum is not None and count > maximum:
            message = (
                f"n={count} is above {endpoint_id}'s {field} maximum of {maximum} "
                "(falbind's images.generate would split it into several requests)"
            )
            self.context.report(node, "FB203", message, host, endpoint=endpoint_id)
            return
        body.value[field] = min(count, maximum) if maximum is not None else count
        body.value_nodes[(field,)] = node
        body.key_nodes[(field,)] = node

    # ------------------------------------------------------------------ Pipecat

    def _call_of(self, node: ast.expr | None, symbol: str) -> ast.Call | None:
        """``node`` when it is a call of ``symbol``, or a name bound once to one."""
        if isinstance(node, ast.Name):
            node = self.scope.const(node.id)
        if isinstance(node, ast.Call) and qualify(node.func, self.scope) == symbol:
            return node
        return None

    def pipecat_service(self, node: ast.Call) -> set[int]:
        """Check a ``FalImageGenService(...)`` call; the ids of the settings calls it used."""
        host = "pipecat"
        keywords = self._keywords(node)
        settings_node = keywords["settings"].value if "settings" in keywords else None
        params_node = keywords["params"].value if "params" in keywords else None
        settings = self._call_of(settings_node, hosts.PIPECAT_SETTINGS)
        params = self._call_of(params_node, hosts.PIPECAT_INPUT_PARAMS)
        if settings_node is not None and settings is None:
            self._skip(
                settings_node, host, "settings is not a FalImageGenService.Settings(...) call"
            )
            return set()
        if params_node is not None and params is None and settings_node is None:
            self._skip(
                params_node, host, "params is not a FalImageGenService.InputParams(...) call"
            )
            return set()
        if settings_node is not None and params_node is not None:
            self._skip(params_node, host, "params= is ignored: settings= is given")
            params = None
        self._checked()
        self.pipecat(settings, params, keywords.get("model"), node)
        return {id(settings)} if settings is not None else set()

    def pipecat(
        self,
        settings: ast.Call | None,
        params: ast.Call | None,
        model_keyword: ast.keyword | None,
        anchor: ast.Call,
    ) -> None:
        """What ``FalImageGenService`` would send: its defaults, under the deprecated
        ``model=``/``params=``, under ``settings`` (the order of its ``__init__``)."""
        host = "pipecat"
        given: dict[str, ast.keyword] = {}
        if params is not None:
            for keyword in params.keywords:
                if keyword.arg is None:
                    continue
                if keyword.arg in hosts.PIPECAT_PARAMS:
                    given[keyword.arg] = keyword
                else:
                    self._unknown_setting(keyword, "InputParams ignores it", hosts.PIPECAT_PARAMS)
        model_node: ast.AST | None = model_keyword.value if model_keyword is not None else None
        model = self._string(model_keyword.value) if model_keyword is not None else None
        if settings is not None:
            for keyword in settings.keywords:
                if keyword.arg is None:
                    self._skip(keyword.value, host, "**settings are not checked")
                elif keyword.arg == "model":
                    model, model_node = self._string(keyword.value), keyword.value
                elif keyword.arg == "extra":
                    self.context.report(
                        keyword,
                        "FB303",
                        "FalImageGenService never sends Settings.extra to fal; "
                        "these parameters are dropped",
                        host,
                    )
                elif keyword.arg in hosts.PIPECAT_SETTINGS_FIELDS:
                    given[keyword.arg] = keyword
                else:
                    fields = hosts.PIPECAT_SETTINGS_FIELDS
                    self._unknown_setting(keyword, "Settings raises TypeError", fields)
        if model is None:
            model = str(hosts.PIPECAT_DEFAULTS["model"])
        if not isinstance(model, str):
            self._skip(model_node or anchor, host, "the model is not a literal string")
            return
        spec = self._lookup(model_node or anchor, model, host, exact=True)
        if spec is None:
            return
        body = Arguments()
        body.value_nodes[()] = settings or anchor
        body.set_default(_PROMPT, UNKNOWN, _DEFAULT)
        body.unknown.add((_PROMPT,))
        for name, default in hosts.PIPECAT_DEFAULTS.items():
            if name == "model":
                continue
            if name in given:
                keyword = given[name]
                value = read_literal(keyword.value, (name,), body, self._resolve)
                body.key_nodes[(name,)] = keyword
            else:
                value = default
                body.origins[(name,)] = _DEFAULT
            if value is None and name in hosts.PIPECAT_SENT_WHEN_NOT_NONE:
                continue
            body.value[name] = value

        def note(name: str) -> str:
            return (
                f"Pipecat always sends {name}={_short(body.value.get(name))}; {spec.id} has no "
                "such parameter, so fal ignores it"
            )

        self.validate(spec, body, host, default_anchor=settings or anchor, default_note=note)

    def _unknown_setting(
        self, keyword: ast.keyword, consequence: str, valid: frozenset[str]
    ) -> None:
        name = str(keyword.arg)
        suggestions = suggest_names(name, sorted(valid))
        message = f"{name!r} is not a FalImageGenService setting ({consequence})"
        if suggestions:
            message += "; did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
        self.context.report(keyword, "FB302", message, "pipecat", suggestions=suggestions)
