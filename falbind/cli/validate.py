"""``falbind validate``: check request arguments against the generated models, for CI.

Two inputs: an endpoint and argument files (each a JSON or YAML object), or a manifest
(a JSON or YAML list of ``{endpoint, arguments}`` items, e.g. the requests an app sends).
Every error is reported with its file, line (when the file can be read as YAML, which JSON
nearly always can), JSON path (``$.image_size.width``), message and did-you-mean.

Output formats: ``text`` (``FILE:LINE: ENDPOINT $.path: message``), ``json`` (one document)
and ``github`` (``::error file=...,line=...,title=...::...`` workflow annotations).
Exit status: 0 every request is valid, 1 some are not, 2 an input could not be read or
understood (missing file, invalid JSON/YAML, a manifest that is not a list of items).

Only the endpoint modules the requests name are imported, so a run stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from falbind.models.index import EndpointSpec
from falbind.tooling.endpoints import EndpointLookupError, resolve_endpoint
from falbind.tooling.limits import (
    MAX_ARGUMENTS_BYTES,
    InputLimitError,
    check_nesting,
    loads_json,
    read_bounded,
)
from falbind.tooling.progress import Progress
from falbind.tooling.validation_errors import explained_errors, render_path

__all__ = [
    "InputProblem",
    "Problem",
    "Request",
    "load_manifest",
    "validate_command",
]

Echo = Callable[[str], None]
_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class InputProblem(Exception):
    """An input file cannot be read or understood (exit status 2)."""


@dataclass(frozen=True)
class Problem:
    """One validation error."""

    file: str
    line: int | None
    endpoint: str | None
    path: str
    type: str
    message: str
    suggestions: tuple[str, ...] = ()
    item: int | None = None
    """0-based index of the manifest item, or ``None`` for an argument file."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "item": self.item,
            "endpoint": self.endpoint,
            "path": self.path,
            "type": self.type,
            "message": self.message,
            "suggestions": list(self.suggestions),
        }

    def _did_you_mean(self) -> str:
        if not self.suggestions or "did you mean" in self.message:
            return ""
        return "; did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"

    def text(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        endpoint = f"{self.endpoint} " if self.endpoint else ""
        return f"{where}: {endpoint}{self.path}: {self.message}{self._did_you_mean()}"

    def github(self) -> str:
        props = f"file={_escape_property(self.file)}"
        if self.line:
            props += f",line={self.line}"
        title = f"falbind validate: {self.endpoint or 'manifest'}"
        props += f",title={_escape_property(title)}"
        return (
            f"::error {props}::{_escape_data(f'{self.path}: {self.message}{self._did_you_mean()}')}"
        )


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


# --------------------------------------------------------------------------- reading


@dataclass
class _Source:
    """A parsed input file; its YAML node tree (for line numbers) is built when first needed."""

    path: Path
    text: str
    data: Any
    _node: Any = field(default=None, repr=False)
    _composed: bool = False

    @property
    def node(self) -> Any:
        if not self._composed:
            self._composed = True
            try:
                self._node = yaml.compose(self.text, Loader=_Loader)
            except yaml.YAMLError:
                self._node = None  # JSON that YAML 1.1 rejects: no line numbers
        return self._node


def _read(path: Path) -> _Source:
    try:
        text = read_bounded(path, MAX_ARGUMENTS_BYTES, "an argument file").decode("utf-8")
    except FileNotFoundError:
        raise InputProblem(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputProblem(f"{path}: cannot read: {exc}") from None
    except InputLimitError as exc:
        raise InputProblem(str(exc)) from None
    if path.suffix.lower() == ".json":
        try:
            return _Source(path, text, loads_json(text, str(path)))
        except json.JSONDecodeError as exc:
            raise InputProblem(f"{path}: invalid JSON: {exc}") from None
        except InputLimitError as exc:
            raise InputProblem(str(exc)) from None
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader) if node is not None else None
        check_nesting(data, str(path))
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise InputProblem(f"{path}: invalid YAML: {reason}") from None
    except RecursionError:
        raise InputProblem(f"{path}: nested too deeply; refused") from None
    except InputLimitError as exc:
        raise InputProblem(str(exc)) from None
    return _Source(path, text, data, node, True)


def _node_at(node: Any, parts: Sequence[str | int]) -> Any:
    """The deepest node along ``parts`` (the parent, when the last key is missing)."""
    for part in parts:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if 0 <= part < len(node.value) else None
        if child is None:
            break
        node = child
    return node


def _line(node: Any) -> int | None:
    return int(node.start_mark.line) + 1 if node is not None else None


@dataclass(frozen=True)
class Request:
    """One request to validate: where it is written, the endpoint and its arguments."""

    source: _Source
    endpoint: str
    arguments: Any
    prefix: tuple[str | int, ...] = ()
    """Where ``arguments`` sits inside the file (``(3, "arguments")`` in a manifest)."""
    item: int | None = None

    def line_of(self, parts: Sequence[str | int]) -> int | None:
        return _line(_node_at(self.source.node, [*self.prefix, *parts]))


def load_manifest(path: Path) -> tuple[list[Request], list[Problem]]:
    """The requests of a manifest, and problems with items that are not ``{endpoint, arguments}``
    (these make the run exit 2). Raises :class:`InputProblem` if the file is unusable."""
    source = _read(path)
    if not isinstance(source.data, list):
        raise InputProblem(f"{path}: a manifest is a list of {{endpoint, arguments}} items")
    requests: list[Request] = []
    problems: list[Problem] = []
    for index, item in enumerate(source.data):
        endpoint = item.get("endpoint") if isinstance(item, dict) else None
        if not isinstance(endpoint, str) or not isinstance(item, dict) or "arguments" not in item:
            line = _line(_node_at(source.node, [index]))
            message = "a manifest item needs 'endpoint' (a string) and 'arguments'"
            problems.append(Problem(str(path), line, None, f"$[{index}]", "invalid_item", message))
            continue
        requests.append(Request(source, endpoint, item["arguments"], (index, "arguments"), index))
    return requests, problems


# --------------------------------------------------------------------------- validating


def _problems(request: Request, spec: EndpointSpec, exc: ValidationError) -> Iterator[Problem]:
    for error, path, message, suggestions in explained_errors(request.arguments, exc.errors()):
        yield Problem(
            file=str(request.source.path),
            line=request.line_of(path),
            endpoint=spec.id,
            path=render_path(path),
            type=error["type"],
            message=message,
            suggestions=suggestions,
            item=request.item,
        )


def validate_request(request: Request) -> list[Problem]:
    """Validate one request; an unknown endpoint is a problem of the request."""
    try:
        spec = resolve_endpoint(request.endpoint)
    except EndpointLookupError as exc:
        line = request.line_of(()) if request.item is None else _endpoint_line(request)
        return [
            Problem(
                str(request.source.path),
                line,
                request.endpoint,
                "$",
                "unknown_endpoint",
                str(exc).split("; did you mean")[0],
                tuple(exc.suggestions),
                request.item,
            )
        ]
    try:
        spec.input_model.model_validate(request.arguments)
    except ValidationError as exc:
        return list(_problems(request, spec, exc))
    return []


def _endpoint_line(request: Request) -> int | None:
    """The line of a manifest item's ``endpoint`` value."""
    return _line(_node_at(request.source.node, [*request.prefix[:1], "endpoint"]))


# --------------------------------------------------------------------------- command


def _collect(
    endpoint: str | None, files: Sequence[Path], manifest: Path | None
) -> tuple[list[Request], list[Problem], list[str]]:
    """Requests to validate, manifest item problems, and unreadable inputs (one line each)."""
    requests: list[Request] = []
    item_problems: list[Problem] = []
    unreadable: list[str] = []
    if manifest is not None:
        try:
            requests, item_problems = load_manifest(manifest)
        except InputProblem as exc:
            unreadable.append(str(exc))
    for path in files:
        try:
            source = _read(path)
        except InputProblem as exc:
            unreadable.append(str(exc))
            continue
        requests.append(Request(source, endpoint or "", source.data))  # arguments at the top
    return requests, item_problems, unreadable


def validate_command(
    *,
    endpoint: str | None,
    files: Sequence[Path],
    manifest: Path | None,
    output_format: str,
    echo: Echo,
) -> int:
    """Run ``falbind validate``; see the module docstring for formats and exit status."""
    if endpoint is not None:
        try:
            resolve_endpoint(endpoint)
        except EndpointLookupError as exc:  # on the command line: a usage error
            print(f"falbind: {exc}", file=sys.stderr)
            return 2
    requests, item_problems, unreadable = _collect(endpoint, files, manifest)
    for line in unreadable:
        print(f"falbind: {line}", file=sys.stderr)
    problems = list(item_problems)
    invalid = 0
    checking = Progress("validating", total=len(requests))  # drawn on a terminal only
    for done, request in enumerate(requests, 1):
        found = validate_request(request)
        invalid += bool(found)
        problems.extend(found)
        checking.update(done)
    checking.close()
    problems.sort(key=lambda p: (p.file, p.line or 0))  # reading order; stable within a line
    if output_format == "json":
        summary = {
            "checked": len(requests),
            "valid": len(requests) - invalid,
            "invalid": invalid,
            "unreadable": unreadable,
            "errors": [p.to_dict() for p in problems],
        }
        echo(json.dumps(summary, indent=2))
    else:
        for problem in problems:
            echo(problem.github() if output_format == "github" else problem.text())
        echo(
            f"{len(requests)} request(s) checked: {len(requests) - invalid} valid, "
            f"{invalid} invalid ({len(problems)} error(s))"
        )
    if unreadable or item_problems:
        return 2
    return 1 if invalid else 0
