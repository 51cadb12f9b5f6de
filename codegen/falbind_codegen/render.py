"""Rendering: normalised schemas -> Python source, through datamodel-code-generator and jinja2.

datamodel-code-generator (dcg) writes the pydantic models. It is called once per *batch* of
endpoints with each endpoint's schemas namespaced as ``<module>.<Class>``, which dcg turns into one
module per endpoint; one call per endpoint would spend most of the time in dcg's fixed setup.
A batch that fails is retried endpoint by endpoint so one bad schema cannot hide the others.
jinja2 templates add our header and footer; one ``ruff format`` pass gives stable layout.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .normalise import REF_PREFIX, NormalisedEndpoint, allows_null, reserved_field_names

__all__ = [
    "DCG_OPTIONS",
    "EndpointSource",
    "format_sources",
    "render_endpoint_batch",
    "render_template",
]

TEMPLATES = Path(__file__).parent / "templates"
RUNTIME_MODELS = "falbind.models.base"

# The options DESIGN.md §2 recommends; see the module docstring for why no formatter runs here.
DCG_OPTIONS: dict[str, Any] = {
    "use_annotated": True,
    "field_constraints": True,
    "use_standard_collections": True,
    "use_union_operator": True,
    "strict_nullable": True,
    "collapse_root_models": True,
    "keep_model_order": True,
    "disable_timestamp": True,
    "strict_refs": True,
    "type_mappings": ["string+uri=string"],
    # fal's advisory limits (min/max width, file size, aspect ratio...) stay readable at runtime
    # through the field's JSON schema, for checks fal itself does not make.
    "field_extra_keys": ["x-fal"],
    "formatters": [],
}

# Keyword arguments of the typed client methods; a model field of the same name stays settable
# through the Input model but is left out of the keyword parameters.
CLIENT_KEYWORDS = frozenset(
    {
        "input",
        "extra_body",
        "extra_headers",
        "timeout",
        "start_timeout",
        "hint",
        "webhook_url",
        "priority",
        "client_timeout",
        "with_logs",
        "on_queue_update",
        "object_lifecycle_seconds",
    }
)

_DCG_HEADER = re.compile(r"\A(#[^\n]*\n)+\n?")
_CLASS = re.compile(r"^class (\w+)\(", re.MULTILINE)
_PLAIN_MODEL = re.compile(r"^class (\w+)\(BaseModel\)", re.MULTILINE)
_FUTURE = "from __future__ import annotations\n"


@dataclass(frozen=True)
class EndpointSource:
    """One endpoint to render."""

    endpoint_id: str
    module: str
    source: str  # the vendored schema path, for the header
    normalised: NormalisedEndpoint


if TYPE_CHECKING:
    import jinja2


@cache
def _environment() -> jinja2.Environment:
    import jinja2  # here, not at the top: `falbind check` usually renders nothing

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # Python source, not HTML: every schema string goes through pyrepr
    )
    # Every string from a schema lands in generated code as a Python literal, never as code.
    env.filters["pyrepr"] = repr
    return env


def render_template(name: str, **context: Any) -> str:
    return _environment().get_template(name).render(**context)


def template_sources() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(TEMPLATES.glob("*.j2"))}


def _namespaced(endpoint: EndpointSource) -> dict[str, Any]:
    """The endpoint's schemas as ``<module>.<Class>``, refs rewritten to match."""
    prefix = f"{endpoint.module}."
    text = json.dumps(endpoint.normalised.schemas)
    text = text.replace(f'"{REF_PREFIX}', f'"{REF_PREFIX}{prefix}')
    return {prefix + name: schema for name, schema in json.loads(text).items()}


def _base_classes(endpoint: EndpointSource) -> dict[str, str]:
    normalised = endpoint.normalised
    return {
        f"{endpoint.module}.{name}": f"{RUNTIME_MODELS}."
        + ("RequestModel" if name in normalised.request_models else "ResponseModel")
        for name in normalised.schemas
    }


def warm_up() -> None:
    """Run datamodel-code-generator once on a one-field schema. Its first call in a process
    imports and builds most of what every later call uses (~0.5 s of CPU); a process that
    forks renderers calls this first so they inherit that work instead of each repeating it."""
    _generate({"warm_up.WarmUp": {"type": "object", "properties": {"a": {"type": "string"}}}}, {})


def _run_dcg(endpoints: list[EndpointSource]) -> dict[str, str]:
    schemas: dict[str, Any] = {}
    base_classes: dict[str, str | list[str]] = {}
    for endpoint in endpoints:
        schemas.update(_namespaced(endpoint))
        base_classes.update(_base_classes(endpoint))
    return _generate(schemas, base_classes)


def _generate(schemas: dict[str, Any], base_classes: dict[str, str | list[str]]) -> dict[str, str]:
    """dcg's modules (``{module: code}``) for ``<module>.<Class>``-named component schemas."""
    from datamodel_code_generator import LiteralType, PythonVersion, generate
    from datamodel_code_generator.enums import DataModelType, InputFileType

    document = {
        "openapi": "3.0.4",
        "info": {"title": "falbind", "version": "1"},
        "paths": {},
        "components": {"schemas": schemas},
    }
    result = generate(
        json.dumps(document),
        input_file_type=InputFileType.OpenAPI,
        output_model_type=DataModelType.PydanticV2BaseModel,
        target_python_version=PythonVersion.PY_311,
        enum_field_as_literal=LiteralType.All,
        base_class_map=base_classes,
        **DCG_OPTIONS,
    )
    if not isinstance(result, dict):
        raise RuntimeError("datamodel-code-generator returned a single module for a modular input")
    modules: dict[str, str] = {}
    for key, code in result.items():
        name = key[-1] if isinstance(key, tuple) else str(key)
        if name.endswith(".py") and name != "__init__.py":
            modules[name.removesuffix(".py")] = code
    return modules


def _is_structured(node: ast.expr) -> bool:
    if isinstance(node, ast.Dict):
        return True
    return isinstance(node, ast.List | ast.Tuple) and any(_is_structured(e) for e in node.elts)


Edit = tuple[int, int, int, int, str]
"""``(line, col, end line, end col) -> text``: ast positions (1-based lines, UTF-8 byte columns)."""


def _structured_default_edits(tree: ast.Module) -> list[Edit]:
    spans = [
        statement.value
        for cls in tree.body
        if isinstance(cls, ast.ClassDef)
        for statement in cls.body
        if isinstance(statement, ast.AnnAssign)
        and statement.value is not None
        and _is_structured(statement.value)
    ]
    edits: list[Edit] = []
    for value in spans:
        assert value.end_lineno is not None and value.end_col_offset is not None
        start, end = (value.lineno, value.col_offset), (value.end_lineno, value.end_col_offset)
        edits += [(*start, *start, "structured_default("), (*end, *end, ")")]
    return edits


def mark_structured_defaults(body: str, tree: ast.Module | None = None) -> str:
    """Wrap object/array-of-object field defaults in ``structured_default(...)``.

    dcg writes ``image_size: ImageSize | Literal[...] = {"width": 1024, ...}`` with
    ``validate_default=True``: right at runtime (pydantic turns the dict into the model) but a type
    error for mypy. ``structured_default`` returns its argument typed ``Any``, keeping the runtime
    behaviour and making the module pass ``mypy --strict``.
    """
    edits = _structured_default_edits(tree or ast.parse(body))
    return _with_import(_splice(body, edits), "structured_default") if edits else body


def _with_import(body: str, name: str) -> str:
    """``body`` importing ``name`` from the runtime models too (first in dcg's import line)."""
    return body.replace(
        f"from {RUNTIME_MODELS} import ", f"from {RUNTIME_MODELS} import {name}, ", 1
    )


def _splice(body: str, edits: list[Edit]) -> str:
    """Replace each ``(line, col, end line, end col) -> text`` span (ast positions: 1-based
    lines, UTF-8 byte columns) in ``body``; spans must not overlap (an insertion is an empty
    span)."""
    lines = [line.encode() for line in body.splitlines(keepends=True)]
    for line, col, end_line, end_col, text in sorted(edits, reverse=True):
        head = lines[line - 1][:col]
        tail = lines[end_line - 1][end_col:]
        lines[line - 1 : end_line] = [head + text.encode() + tail]
    return b"".join(lines).decode()


def _field_type(annotation: ast.expr) -> ast.expr:
    """``T`` of dcg's ``Annotated[T, Field(...)]``, or the annotation itself."""
    if (
        isinstance(annotation, ast.Subscript)
        and isinstance(annotation.value, ast.Name)
        and annotation.value.id == "Annotated"
        and isinstance(annotation.slice, ast.Tuple)
    ):
        return annotation.slice.elts[0]
    return annotation


def _wire_name(statement: ast.AnnAssign, name: str) -> str:
    """The field's name in the JSON body: its ``Field(alias=...)``, else its Python name."""
    for node in ast.walk(statement.annotation):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "Field"
        ):
            for keyword in node.keywords:
                if keyword.arg == "alias" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
    return name


def _is_none(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


_OR_NONE = re.compile(rb"\s*\|\s*None")


def _drop_null_edits(
    body: str, tree: ast.Module, normalised: NormalisedEndpoint
) -> tuple[list[Edit], dict[ast.AnnAssign, ast.expr]]:
    """The edits of :func:`drop_null_from_non_nullable`, and each edited field's new type."""
    edits: list[Edit] = []
    narrowed: dict[ast.AnnAssign, ast.expr] = {}
    lines: list[bytes] | None = None
    for cls in tree.body:
        if not isinstance(cls, ast.ClassDef) or cls.name not in normalised.request_models:
            continue
        schema = normalised.schemas.get(cls.name, {})
        properties = schema.get("properties")
        required = schema.get("required") or []
        if not isinstance(properties, dict):
            continue
        for statement in cls.body:
            if not (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and _is_none(statement.value)
            ):
                continue
            wire = _wire_name(statement, statement.target.id)
            prop = properties.get(wire)
            if not isinstance(prop, dict) or wire in required or "default" in prop:
                continue
            if allows_null(prop, normalised.schemas):
                continue
            hint = _field_type(statement.annotation)
            if not (
                isinstance(hint, ast.BinOp)
                and isinstance(hint.op, ast.BitOr)
                and _is_none(hint.right)
            ):
                continue
            value = statement.value
            assert value is not None and value.end_lineno is not None
            assert value.end_col_offset is not None
            left, right = hint.left, hint.right
            assert left.end_lineno is not None and left.end_col_offset is not None
            assert right.end_lineno is not None and right.end_col_offset is not None
            # The cut must leave valid code that reads as ``left`` alone (the module is not
            # parsed again): only `` | None`` may go, not a closing parenthesis with it.
            lines = lines or [line.encode() for line in body.splitlines(keepends=True)]
            cut = b"".join(lines[left.end_lineno - 1 : right.end_lineno])
            cut_end = len(cut) - len(lines[right.end_lineno - 1]) + right.end_col_offset
            if not _OR_NONE.fullmatch(cut[left.end_col_offset : cut_end]):
                raise ValueError(
                    f"{cls.name}.{statement.target.id}: cannot drop None from its type"
                )
            edits += [
                (
                    value.lineno,
                    value.col_offset,
                    value.end_lineno,
                    value.end_col_offset,
                    "omitted()",
                ),
                (left.end_lineno, left.end_col_offset, right.end_lineno, right.end_col_offset, ""),
            ]
            narrowed[statement] = left
    return edits, narrowed


def drop_null_from_non_nullable(
    body: str, normalised: NormalisedEndpoint, tree: ast.Module | None = None
) -> str:
    """An optional request field whose schema does not allow null, typed ``T`` instead of dcg's
    ``T | None = None``.

    dcg gives every optional field without a default ``T | None = None``, so ``seed=None`` would
    type-check, validate and be sent as ``"seed": null``, which the schema does not allow. The
    rewritten field ``seed: Annotated[int, Field(...)] = omitted()`` refuses ``None`` (the runtime
    default stays ``None``, never sent, as ``to_body`` sends only the fields the caller set).
    """
    edits, _ = _drop_null_edits(body, tree or ast.parse(body), normalised)
    return _with_import(_splice(body, edits), "omitted") if edits else body


def input_parameters(
    body: str,
    input_name: str,
    tree: ast.Module | None = None,
    narrowed: dict[ast.AnnAssign, ast.expr] | None = None,
) -> list[tuple[str, str, bool]]:
    """``(python name, type source, required)`` of each field of the class ``input_name`` in
    ``body``.

    The type is the first argument of dcg's ``Annotated[T, Field(...)]`` (or the plain
    annotation); it becomes the type of the keyword argument in typed client methods. A field
    without a default is required. ``narrowed`` gives the type of fields whose annotation was
    edited after ``tree`` was parsed (see :func:`drop_null_from_non_nullable`).
    """
    tree = tree or ast.parse(body)
    for cls in tree.body:
        if isinstance(cls, ast.ClassDef) and cls.name == input_name:
            fields = []
            for statement in cls.body:
                if not (
                    isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                ):
                    continue
                if statement.target.id == "model_config":
                    continue
                annotation = (narrowed or {}).get(statement) or _field_type(statement.annotation)
                fields.append(
                    (statement.target.id, ast.unparse(annotation), statement.value is None)
                )
            return fields
    raise ValueError(f"no class {input_name} in the generated module")


class UnusableModule(ValueError):
    """dcg's module would import but fail in use; the message says why."""


@cache
def _pattern_problem(pattern: str, engine: str) -> str | None:
    """Why pydantic cannot build a validator for ``pattern`` with ``engine``, if it cannot."""
    from typing import Annotated

    from pydantic import ConfigDict, Field, TypeAdapter
    from pydantic_core import SchemaError

    config = ConfigDict(regex_engine="python-re" if engine == "python-re" else "rust-regex")
    try:
        TypeAdapter(Annotated[str, Field(pattern=pattern)], config=config)
    except (SchemaError, RecursionError, OverflowError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return lines[-1] if lines else type(exc).__name__
    return None


def _regex_engine(cls: ast.ClassDef) -> str:
    """The ``regex_engine`` of the class's ``model_config = ConfigDict(...)`` (pydantic's
    default, ``rust-regex``, if it sets none); dcg sets ``python-re`` for lookarounds."""
    for statement in cls.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        if isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        value = getattr(statement, "value", None)
        named = any(isinstance(t, ast.Name) and t.id == "model_config" for t in targets)
        if named and isinstance(value, ast.Call):
            for keyword in value.keywords:
                if keyword.arg == "regex_engine" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
    return "rust-regex"


def check_module(body: str, tree: ast.Module | None = None) -> None:
    """Refuse a rendered module whose models would fail in use (the normaliser refuses these
    cases in the schema already; this checks what dcg actually wrote): a field named like a
    method of its falbind base, or a ``pattern`` pydantic cannot compile with the class's
    regex engine."""
    # Walking every node of every class for ``pattern=`` was a tenth of the time spent per
    # endpoint; a module whose text has no "pattern" has no such keyword (3 of ~940 have one).
    patterns = "pattern" in body
    for cls in (tree or ast.parse(body)).body:
        if not isinstance(cls, ast.ClassDef):
            continue
        bases = {base.id for base in cls.bases if isinstance(base, ast.Name)}
        role = "request" if "RequestModel" in bases else "response"
        for statement in cls.body:
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and statement.target.id in reserved_field_names(role)
            ):
                raise UnusableModule(
                    f"{cls.name}.{statement.target.id} would shadow the method of the same "
                    "name of falbind's model base"
                )
        if not patterns:
            continue
        engine = _regex_engine(cls)
        for node in ast.walk(cls):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                value = keyword.value
                if keyword.arg == "pattern" and isinstance(value, ast.Constant):
                    problem = _pattern_problem(str(value.value), engine)
                    if problem is not None:
                        raise UnusableModule(
                            f"{cls.name}: pattern {str(value.value)[:80]!r} cannot be compiled "
                            f"by pydantic ({engine}): {problem}"
                        )


def edit_fields(
    body: str, tree: ast.Module, normalised: NormalisedEndpoint
) -> tuple[str, dict[ast.AnnAssign, ast.expr]]:
    """:func:`mark_structured_defaults` then :func:`drop_null_from_non_nullable`, in one pass
    over ``tree`` (``body`` parsed): the edited body, and the new type of each field whose
    annotation lost its `` | None``."""
    structured = _structured_default_edits(tree)
    nullable, narrowed = _drop_null_edits(body, tree, normalised)
    body = _splice(body, structured + nullable)
    if structured:
        body = _with_import(body, "structured_default")
    if nullable:
        body = _with_import(body, "omitted")
    return body, narrowed


def _wrap(endpoint: EndpointSource, body: str) -> str:
    normalised = endpoint.normalised
    body = _DCG_HEADER.sub("", body, count=1).strip("\n")
    # Parsed once: the edits are computed on this tree and applied together, and the checks
    # read it too (the edits only wrap or replace field defaults and drop `` | None``, which
    # neither check looks at; the dropped types are passed on as ``narrowed``).
    tree = ast.parse(body)
    body, narrowed = edit_fields(body, tree, normalised)
    plain = _PLAIN_MODEL.findall(body)
    if plain:  # dcg named a class differently from our base-class map: extras would be ignored
        raise RuntimeError(f"classes {plain} lost their falbind base class")
    check_module(body, tree)
    parameters = [
        (name, f"Required[{annotation}]" if required else annotation, required)
        for name, annotation, required in input_parameters(
            body, normalised.input_name, tree, narrowed
        )
        if name not in CLIENT_KEYWORDS
    ]
    typing_names = "Required, TypedDict" if any(r for *_, r in parameters) else "TypedDict"
    body = body.replace(_FUTURE, _FUTURE + f"from typing import {typing_names}\n", 1)
    stem = normalised.input_name.removesuffix("Input")
    return render_template(
        "endpoint.py.j2",
        source=endpoint.source,
        endpoint_id=endpoint.endpoint_id,
        body=body,
        input_name=normalised.input_name,
        output_name=normalised.output_name,
        params_name=f"{stem}Params",
        parameters=[(name, annotation) for name, annotation, _ in parameters],
        exports=sorted([*_CLASS.findall(body), f"{stem}Params"]),
    )


def render_endpoint_batch(
    endpoints: list[EndpointSource], *, formatted: bool = True
) -> dict[str, str]:
    """Render a batch: ``{module: source}`` for the endpoints dcg could render, and for each
    endpoint dcg rejected, ``{module: "!error: <reason>"}``. Output is formatted unless
    ``formatted`` is false (the caller then runs :func:`format_sources` itself, e.g. into the
    folder it writes the output from)."""
    try:
        bodies = _run_dcg(endpoints)
        failed: dict[str, str] = {}
    except Exception:
        if len(endpoints) == 1:
            raise
        bodies, failed = {}, {}
        for endpoint in endpoints:
            try:
                bodies.update(_run_dcg([endpoint]))
            except Exception as exc:  # dcg raises many types; the reason is reported, not lost
                failed[endpoint.module] = f"!error: {type(exc).__name__}: {exc}".splitlines()[0]
    missing = [e.module for e in endpoints if e.module not in bodies and e.module not in failed]
    if missing:
        raise RuntimeError(f"datamodel-code-generator produced no module for {missing}")
    wrapped: dict[str, str] = {}
    for endpoint in endpoints:
        if endpoint.module in bodies:
            try:
                wrapped[endpoint.module] = _wrap(endpoint, bodies[endpoint.module])
            except UnusableModule as exc:
                failed[endpoint.module] = f"!unusable: {exc}".splitlines()[0]
            except (RuntimeError, ValueError, SyntaxError) as exc:
                failed[endpoint.module] = f"!error: {exc}".splitlines()[0]
    return {**(format_sources(wrapped) if formatted else wrapped), **failed}


def format_sources(sources: dict[str, str], folder: Path | None = None) -> dict[str, str]:
    """Run one ``ruff format`` over ``{name: source}`` with fixed settings (not the user's).

    A name is a path without ``.py``, relative to ``folder`` (``endpoints/__init__``). Without
    ``folder`` the files go to a scratch folder that is removed; with it they are written into
    ``folder`` and left there formatted, each file's bytes exactly the returned text encoded (a
    caller staging its output folder then writes every file once: creating files costs more than
    formatting them on some file systems)."""
    if not sources:
        return {}
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="falbind-fmt-") as tmp:
            return format_sources(sources, Path(tmp))
    paths = {name: folder / f"{name}.py" for name in sources}
    for parent in {path.parent for path in paths.values()}:
        parent.mkdir(parents=True, exist_ok=True)
    for name, code in sources.items():
        paths[name].write_bytes(code.encode("utf-8"))
    from ruff import find_ruff_bin  # type: ignore[import-untyped]  # this environment's ruff

    command = [
        # The binary itself: `python -m ruff` would start an interpreter only to exec it.
        find_ruff_bin(),
        "format",
        "--isolated",
        "--no-cache",  # scratch files: a cache would only be written, never read
        "--quiet",
        "--line-length=100",
        "--target-version=py311",
        # The files, not the folder: a folder named like one ruff skips (``build``) still counts.
        *map(str, paths.values()),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"ruff format failed: {completed.stderr.strip()[:2000]}")
    formatted: dict[str, str] = {}
    for name, path in paths.items():
        text = path.read_bytes().decode("utf-8")
        # Line endings as reading in text mode gives them, and the file's bytes the same.
        universal = text.replace("\r\n", "\n").replace("\r", "\n")
        if universal != text:
            path.write_bytes(universal.encode("utf-8"))
        formatted[name] = universal
    return formatted
