"""Schema normalisation: one fal OpenAPI document in, the component schemas to generate out.

Pure functions over plain JSON data. The steps, in order:

1. find the roots: the request body of ``POST /{id}`` and the 200 body of
   ``GET /{id}/requests/{request_id}`` (the POST itself only answers with a queue status);
2. take each root's closure over local ``$ref``s; a dangling ``$ref`` makes the endpoint unbindable
   (the registry can declare a patch that defines the missing schema);
3. rename: roots become ``<Stem>Input``/``<Stem>Output``; every other name is made a safe
   identifier; a schema reachable from both roots is split into a request copy and a response copy,
   because request models forbid unknown fields and response models keep them;
4. clean each schema: properties in ``x-fal-order-properties`` order, defaults that fail their own
   schema coerced (numeric strings) or dropped, an empty output schema made an open object;
5. refuse what would generate an unusable module: a ``pattern`` no regex engine compiles, a
   property that would shadow a method of falbind's model bases (``to_body``), a schema no value
   can satisfy (a ``$ref`` cycle through required fields, or an alias cycle), a name or value
   that is not valid Unicode (a lone surrogate, which pydantic cannot hold; descriptions may keep
   them). The endpoint is reported unbound with the reason; a registry patch can fix it.

Every coercion or dropped value is recorded as a note, which the manifest keeps.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

__all__ = [
    "NormalisedEndpoint",
    "UnbindableEndpoint",
    "allows_null",
    "closure",
    "find_roots",
    "local_refs",
    "merge_nullable",
    "normalise_document",
    "order_properties",
    "reserved_field_names",
    "safe_class_name",
]

REF_PREFIX = "#/components/schemas/"
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")


class UnbindableEndpoint(Exception):
    """The document cannot be bound as it is; the message says why."""


@dataclass(frozen=True)
class NormalisedEndpoint:
    """What the generator needs from one endpoint's document."""

    input_name: str
    output_name: str
    schemas: dict[str, dict[str, Any]]
    """Component schemas by class name, refs rewritten to those names, in generation order."""
    request_models: frozenset[str]
    response_models: frozenset[str]
    notes: tuple[str, ...] = field(default=())


def _json_body(operation: Any) -> Any:
    if not isinstance(operation, dict):
        return None
    content = operation.get("content")
    if not isinstance(content, dict):
        return None
    media = content.get("application/json")
    return media.get("schema") if isinstance(media, dict) else None


def _root_name(schema: Any, what: str) -> str:
    if not isinstance(schema, dict):
        raise UnbindableEndpoint(f"no JSON schema for the {what}")
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith(REF_PREFIX):
        raise UnbindableEndpoint(f"the {what} is not a $ref to a component schema")
    return ref[len(REF_PREFIX) :]


def find_roots(document: dict[str, Any], endpoint_id: str) -> tuple[str, str]:
    """Names of the request and response root schemas of ``endpoint_id``."""
    paths = document.get("paths")
    if not isinstance(paths, dict):
        raise UnbindableEndpoint("the document has no paths")
    post = (paths.get(f"/{endpoint_id}") or {}).get("post")
    if not isinstance(post, dict):
        raise UnbindableEndpoint(f"no POST /{endpoint_id} operation")
    request = _json_body(post.get("requestBody"))
    result_get = (paths.get(f"/{endpoint_id}/requests/{{request_id}}") or {}).get("get")
    responses = result_get.get("responses") if isinstance(result_get, dict) else None
    response = _json_body(responses.get("200")) if isinstance(responses, dict) else None
    return _root_name(request, "request body"), _root_name(response, "result (200) body")


def local_refs(node: Any) -> Iterator[str]:
    """Names referenced by ``$ref`` anywhere under ``node``."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            ref = current.get("$ref")
            if isinstance(ref, str):
                if not ref.startswith(REF_PREFIX):
                    raise UnbindableEndpoint(f"non-local $ref {ref!r} is not supported")
                yield ref[len(REF_PREFIX) :]
            stack.extend(v for k, v in current.items() if k != "$ref")
        elif isinstance(current, list):
            stack.extend(current)


def closure(root: str, schemas: dict[str, Any]) -> list[str]:
    """``root`` and every schema it reaches, sorted; a dangling ``$ref`` is unbindable."""
    seen: set[str] = set()
    pending = [(root, "the endpoint")]
    while pending:
        name, referrer = pending.pop()
        if name in seen:
            continue
        if name not in schemas:
            raise UnbindableEndpoint(
                f"$ref to schema {name!r} (from {referrer}) that the document does not define"
            )
        seen.add(name)
        pending.extend((ref, repr(name)) for ref in local_refs(schemas[name]))
    return sorted(seen)


def safe_class_name(name: str) -> str:
    """A PascalCase identifier for a schema name, in the form dcg itself would give it
    (``registry__image__fast_sdxl__models__Image`` -> ``RegistryImageFastSdxlModelsImage``), so the
    name we map to a base class is the name dcg writes."""
    parts = [part for part in _NOT_ALNUM.split(name) if part]
    cleaned = "".join(part[0].upper() + part[1:] for part in parts) or "Model"
    return f"M{cleaned}" if cleaned[0].isdigit() else cleaned


def _unique(name: str, taken: set[str]) -> str:
    candidate, counter = name, 2
    while candidate in taken:
        candidate, counter = f"{name}{counter}", counter + 1
    taken.add(candidate)
    return candidate


def _rename_refs(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(REF_PREFIX):
                out[key] = REF_PREFIX + mapping[value[len(REF_PREFIX) :]]
            else:
                out[key] = _rename_refs(value, mapping)
        return out
    if isinstance(node, list):
        return [_rename_refs(v, mapping) for v in node]
    return node


def order_properties(schema: dict[str, Any]) -> dict[str, Any]:
    """Properties in ``x-fal-order-properties`` order (unlisted ones after, in document order)."""
    order = schema.get("x-fal-order-properties")
    properties = schema.get("properties")
    if not isinstance(order, list) or not isinstance(properties, dict):
        return schema
    listed = [name for name in order if isinstance(name, str) and name in properties]
    rest = [name for name in properties if name not in listed]
    return {**schema, "properties": {name: properties[name] for name in [*listed, *rest]}}


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def _fits(schema: Any, value: Any, schemas: dict[str, Any], *, closed: bool = False) -> bool:
    """Whether ``value`` satisfies the parts of ``schema`` that generated models check.

    Every keyword applies (an ``enum`` beside an ``anyOf`` narrows it), objects and arrays are
    checked item by item, and ``closed`` objects (request models forbid unknown fields) refuse
    keys they do not declare.
    """
    if not isinstance(schema, dict):
        return True
    if value is None and (schema.get("nullable") is True or _is_null(schema)):
        return True
    ref = schema.get("$ref")
    if isinstance(ref, str) and not _fits(
        schemas.get(ref[len(REF_PREFIX) :], {}), value, schemas, closed=closed
    ):
        return False
    for combinator in ("anyOf", "oneOf"):
        members = schema.get(combinator)
        if (
            isinstance(members, list)
            and members
            and not any(_fits(member, value, schemas, closed=closed) for member in members)
        ):
            return False
    members = schema.get("allOf")
    if isinstance(members, list) and not all(
        _fits(member, value, schemas, closed=closed) for member in members
    ):
        return False
    if value is None and allows_null(schema, schemas):
        return True  # generated models take None beside the enum or type of a nullable field
    if "enum" in schema and isinstance(schema["enum"], list) and value not in schema["enum"]:
        return False
    if "const" in schema and value != schema["const"]:
        return False
    json_type = schema.get("type")
    if json_type is None and isinstance(schema.get("properties"), dict):
        json_type = "object"
    if isinstance(json_type, str) and json_type in _JSON_TYPES:
        if isinstance(value, bool) and json_type in ("integer", "number"):
            return False
        if not isinstance(value, _JSON_TYPES[json_type]):
            return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _within_bounds(schema, value)
    if isinstance(value, str):
        return _string_fits(schema, value)
    if isinstance(value, list):
        return _array_fits(schema, value, schemas, closed=closed)
    if isinstance(value, dict):
        return _object_fits(schema, value, schemas, closed=closed)
    return True


def _string_fits(schema: dict[str, Any], value: str) -> bool:
    low, high = schema.get("minLength"), schema.get("maxLength")
    if isinstance(low, int) and len(value) < low:
        return False
    if isinstance(high, int) and len(value) > high:
        return False
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            return re.search(pattern, value) is not None
        except re.error:  # a pattern Python cannot read: pydantic's engine decides, not us
            return True
    return True


def _array_fits(
    schema: dict[str, Any], value: list[Any], schemas: dict[str, Any], *, closed: bool
) -> bool:
    low, high = schema.get("minItems"), schema.get("maxItems")
    if isinstance(low, int) and len(value) < low:
        return False
    if isinstance(high, int) and len(value) > high:
        return False
    items = schema.get("items")
    return not isinstance(items, dict) or all(
        _fits(items, item, schemas, closed=closed) for item in value
    )


def _object_fits(
    schema: dict[str, Any], value: dict[str, Any], schemas: dict[str, Any], *, closed: bool
) -> bool:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return True
    required = schema.get("required")
    if isinstance(required, list) and any(name not in value for name in required):
        return False
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if key in properties:
            if not _fits(properties[key], item, schemas, closed=closed):
                return False
        elif isinstance(extra, dict):
            if not _fits(extra, item, schemas, closed=closed):
                return False
        elif extra is False or (closed and extra is not True):
            return False
    return True


def allows_null(schema: Any, schemas: dict[str, Any], _seen: frozenset[str] = frozenset()) -> bool:
    """Whether the document lets ``schema`` be ``null`` (``nullable``, a null type or member)."""
    if not isinstance(schema, dict):
        return False
    json_type = schema.get("type")
    if schema.get("nullable") is True or json_type == "null":
        return True
    if isinstance(json_type, list) and "null" in json_type:
        return True
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref not in _seen:
        target = schemas.get(ref[len(REF_PREFIX) :])
        if allows_null(target, schemas, _seen | {ref}):
            return True
    return any(
        isinstance(members, list) and any(allows_null(m, schemas, _seen) for m in members)
        for members in (schema.get("anyOf"), schema.get("oneOf"))
    )


_BOUND_CHECKS: tuple[tuple[str, Callable[[float, float], bool]], ...] = (
    ("minimum", operator.ge),
    ("maximum", operator.le),
    ("exclusiveMinimum", operator.gt),
    ("exclusiveMaximum", operator.lt),
)


def _within_bounds(schema: dict[str, Any], value: float) -> bool:
    for key, holds in _BOUND_CHECKS:
        bound = schema.get(key)
        if (
            isinstance(bound, int | float)
            and not isinstance(bound, bool)
            and not holds(value, bound)
        ):
            return False
    return True


def _coerce_numeric(schema: dict[str, Any], value: Any) -> int | float | None:
    """A numeric-string default (``"0.8"`` for a number) as the number it spells, if lossless;
    the number type is the schema's own or that of one of its ``anyOf`` members."""
    if not isinstance(value, str):
        return None
    members = schema.get("anyOf")
    types = (
        [m.get("type") for m in members if isinstance(m, dict)] if isinstance(members, list) else []
    )
    types.append(schema.get("type"))
    for json_type, convert in (("integer", int), ("number", float)):
        if json_type in types:
            try:
                return convert(value)
            except ValueError:
                return None
    return None


def _coerce_to_string(value: Any) -> str | None:
    """A number default for a string field (``4`` for ``enum: ["1", "2", "4"]``) as the string
    that spells it; only the plain spelling counts, so the mapping is exact or not made."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _fix_default(
    prop: dict[str, Any], where: str, schemas: dict[str, Any], notes: list[str], *, closed: bool
) -> None:
    if "default" not in prop or _fits(prop, prop["default"], schemas, closed=closed):
        return
    default = prop.pop("default")
    for coerced in (_coerce_numeric(prop, default), _coerce_to_string(default)):
        if coerced is not None and _fits(prop, coerced, schemas, closed=closed):
            break
    else:
        coerced = None
    if coerced is not None:
        prop["default"] = coerced
        notes.append(f"{where}: default {default!r} coerced to {coerced!r}")
    else:
        notes.append(f"{where}: default {default!r} dropped (fails its own schema)")


def _fix_examples(
    prop: dict[str, Any], where: str, schemas: dict[str, Any], notes: list[str], *, closed: bool
) -> None:
    examples = prop.get("examples")
    if not isinstance(examples, list):
        return
    kept = [example for example in examples if _fits(prop, example, schemas, closed=closed)]
    if len(kept) != len(examples):
        notes.append(
            f"{where}: {len(examples) - len(kept)} example(s) dropped (fail their own schema)"
        )
        if kept:
            prop["examples"] = kept
        else:
            del prop["examples"]


def _fix_values(
    schema: dict[str, Any], where: str, schemas: dict[str, Any], notes: list[str], *, closed: bool
) -> dict[str, Any]:
    """Defaults and examples that fail their own property schema: coerced when a numeric string
    spells the number (or a number spells a string enum's value), else dropped; each change is
    noted. ``closed``: the schema is on the request side, whose models refuse unknown keys."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return schema
    fixed: dict[str, Any] = {}
    for name, prop in properties.items():
        if isinstance(prop, dict) and ("default" in prop or "examples" in prop):
            prop = dict(prop)
            _fix_default(prop, f"{where}.{name}", schemas, notes, closed=closed)
            _fix_examples(prop, f"{where}.{name}", schemas, notes, closed=closed)
        fixed[name] = prop
    return {**schema, "properties": fixed}


def _open_object_if_empty(schema: dict[str, Any], where: str, notes: list[str]) -> dict[str, Any]:
    if schema.get("properties") or schema.get("$ref") or schema.get("anyOf") or schema.get("allOf"):
        return schema
    notes.append(f"{where}: fal publishes no fields; the model keeps whatever fal returns")
    kept = {k: v for k, v in schema.items() if k in ("title", "description")}
    return {**kept, "type": "object", "properties": {}, "additionalProperties": True}


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null" and len(schema) == 1


def merge_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf [{type: number, maximum: 1}, {type: null}]`` -> ``{type: number, maximum: 1,
    nullable: true}``: dcg would otherwise make the constrained member a RootModel class, and
    ``color_weight=0.5`` would no longer type-check."""
    members = schema.get("anyOf")
    if not isinstance(members, list) or len(members) != 2:
        return schema
    values = [m for m in members if not _is_null(m)]
    if len(values) != 1 or not isinstance(values[0], dict):
        return schema
    value = values[0]
    if "$ref" in value or not isinstance(value.get("type"), str) or "anyOf" in value:
        return schema
    merged = {k: v for k, v in schema.items() if k != "anyOf"}
    for key, item in value.items():
        merged.setdefault(key, item)
    merged["nullable"] = True
    return merged


def _clean_tree(node: Any) -> Any:
    """Per-node cleaning: nullable unions merged; ``x-fal-order-properties`` (applied already)
    dropped so it never reaches generated code."""
    if isinstance(node, dict):
        cleaned = {k: _clean_tree(v) for k, v in node.items() if k != "x-fal-order-properties"}
        return merge_nullable(cleaned)
    if isinstance(node, list):
        return [_clean_tree(v) for v in node]
    return node


def _close_input_root(schema: dict[str, Any], where: str, notes: list[str]) -> dict[str, Any]:
    """Top-level parameters are always checked: a root that declares ``additionalProperties:
    true`` would let every typo through. Undeclared parameters still go through ``extra_body``."""
    if schema.get("additionalProperties") is True and schema.get("properties"):
        notes.append(f"{where}: undeclared parameters are rejected (send them with extra_body)")
        return {k: v for k, v in schema.items() if k != "additionalProperties"}
    return schema


def _assign_names(
    stem: str, input_root: str, output_root: str, inputs: Iterable[str], outputs: Iterable[str]
) -> tuple[dict[str, str], dict[str, str]]:
    taken = {f"{stem}Input", f"{stem}Output"}
    in_map = {input_root: f"{stem}Input"}
    out_map = {output_root: f"{stem}Output"}
    input_names = set(inputs)
    for name in sorted(input_names):
        if name not in in_map:
            in_map[name] = _unique(safe_class_name(name), taken)
    for name in sorted(outputs):
        if name in out_map:
            continue
        base = safe_class_name(name)
        # Shared with the request side: the response copy gets its own class.
        out_map[name] = _unique(f"{base}Output" if name in input_names else base, taken)
    return in_map, out_map


def normalise_document(document: dict[str, Any], endpoint_id: str, stem: str) -> NormalisedEndpoint:
    """Normalise one endpoint's OpenAPI document (already patched) for generation."""
    components = document.get("components")
    schemas = components.get("schemas") if isinstance(components, dict) else None
    if not isinstance(schemas, dict):
        raise UnbindableEndpoint("the document has no components.schemas")
    input_root, output_root = find_roots(document, endpoint_id)
    inputs = closure(input_root, schemas)
    outputs = closure(output_root, schemas)
    in_map, out_map = _assign_names(stem, input_root, output_root, inputs, outputs)

    notes: list[str] = []
    result: dict[str, dict[str, Any]] = {}
    for names, mapping in ((inputs, in_map), (outputs, out_map)):
        for original in names:
            schema = schemas[original]
            if not isinstance(schema, dict):
                raise UnbindableEndpoint(f"schema {original!r} is not an object")
            new_name = mapping[original]
            # No copy needed: every step below builds new dicts and lists rather than change
            # the document's (``_fix_values`` edits a copy of each property it fixes), and
            # ``_rename_refs`` rebuilds the whole tree (a deep copy was a quarter of the time).
            cleaned = schema
            if new_name == f"{stem}Output":
                cleaned = _open_object_if_empty(cleaned, new_name, notes)
            if new_name == f"{stem}Input":
                cleaned = _close_input_root(cleaned, new_name, notes)
            cleaned = _fix_values(
                order_properties(cleaned), new_name, schemas, notes, closed=mapping is in_map
            )
            result[new_name] = _clean_tree(_rename_refs(cleaned, mapping))

    ordered = dict(sorted(result.items()))
    _check_usable(ordered, frozenset(in_map.values()))
    return NormalisedEndpoint(
        input_name=in_map[input_root],
        output_name=out_map[output_root],
        schemas=ordered,
        request_models=frozenset(in_map.values()),
        response_models=frozenset(out_map.values()),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- usability checks

_SUBSCHEMA_KEYS = ("items", "additionalProperties", "not", "contains", "propertyNames")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_NOT_IDENTIFIER = re.compile(r"\W")


def _subschemas(schema: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """``(where, subschema)`` for every schema nested in ``schema`` (keyword positions only, so
    a property *named* ``pattern`` is not mistaken for the keyword)."""
    for key in ("properties", "patternProperties"):
        mapping = schema.get(key)
        if isinstance(mapping, dict):
            yield from ((f".{name}", sub) for name, sub in mapping.items())
    for key in _SUBSCHEMA_KEYS:
        if isinstance(schema.get(key), dict):
            yield f".{key}", schema[key]
        elif key == "items" and isinstance(schema.get(key), list):
            yield from ((f".items[{i}]", sub) for i, sub in enumerate(schema[key]))
    for key in _SUBSCHEMA_LISTS:
        members = schema.get(key)
        if isinstance(members, list):
            yield from ((f".{key}[{i}]", sub) for i, sub in enumerate(members))


def _walk(name: str, schema: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    stack: list[tuple[str, Any]] = [(name, schema)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, dict):
            yield where, node
            stack.extend((where + step, sub) for step, sub in _subschemas(node))


@cache
def reserved_field_names(role: str) -> frozenset[str]:
    """Attribute names falbind's model base for ``role`` (``request``/``response``) defines
    that dcg would keep as field names (it renames ``model_*``, keywords and pydantic's own)."""
    from falbind.models import base

    cls = base.RequestModel if role == "request" else base.ResponseModel
    names = {
        name
        for klass in cls.__mro__
        if klass.__module__ == base.__name__
        for name in (*vars(klass), *getattr(klass, "__annotations__", {}))
    }
    return frozenset(n for n in names if not n.startswith(("_", "model_")))


def _check_patterns(where: str, node: dict[str, Any]) -> None:
    patterns = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
    properties = node.get("patternProperties")
    if isinstance(properties, dict):
        patterns.extend(properties)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as exc:
            raise UnbindableEndpoint(
                f"{where}: pattern {pattern[:80]!r} is not a valid regular expression ({exc})"
            ) from None


def _check_usable(schemas: dict[str, dict[str, Any]], request_models: frozenset[str]) -> None:
    """Raise :class:`UnbindableEndpoint` for what would generate an unusable module."""
    reserved = {role: reserved_field_names(role) for role in ("request", "response")}
    for name, schema in schemas.items():
        role = "request" if name in request_models else "response"
        for where, node in _walk(name, schema):
            _check_patterns(where, node)
            properties = node.get("properties")
            for prop in properties if isinstance(properties, dict) else ():
                field_name = _NOT_IDENTIFIER.sub("_", str(prop))
                if field_name in reserved[role]:
                    base = "RequestModel" if role == "request" else "ResponseModel"
                    raise UnbindableEndpoint(
                        f"{where}: property {prop!r} would shadow {base}.{field_name} of "
                        "falbind's model base; a registry patch can rename or drop it"
                    )
    _check_text(schemas)
    empty = _unsatisfiable(schemas)
    if empty:
        raise UnbindableEndpoint(
            f"no value can satisfy {', '.join(empty[:5])}: a $ref cycle through required fields "
            "(or of bare $refs) leaves no finite value; a registry patch can make a link optional"
        )


def _unsatisfiable(schemas: dict[str, dict[str, Any]]) -> list[str]:
    """Named schemas no finite JSON value satisfies, by a least fixpoint: every schema starts
    unsatisfiable and becomes satisfiable once a value is known for it. Conservative: only
    ``$ref`` links through required properties, non-empty arrays and combinators count."""
    satisfiable = dict.fromkeys(schemas, False)

    def holds(node: Any) -> bool:
        if not isinstance(node, dict) or node.get("nullable") is True:
            return True
        ref = node.get("$ref")
        if isinstance(ref, str):
            return satisfiable.get(ref.removeprefix(REF_PREFIX), True)
        checks: list[bool] = []
        for key in ("anyOf", "oneOf"):
            members = node.get(key)
            if isinstance(members, list) and members:
                checks.append(any(holds(member) for member in members))
        members = node.get("allOf")
        if isinstance(members, list):
            checks.append(all(holds(member) for member in members))
        properties = node.get("properties")
        required = node.get("required")
        if isinstance(properties, dict) and isinstance(required, list):
            checks.extend(holds(properties[r]) for r in required if r in properties)
        items, min_items = node.get("items"), node.get("minItems")
        if isinstance(items, dict) and isinstance(min_items, int) and min_items > 0:
            checks.append(holds(items))
        return all(checks)

    changed = True
    while changed:
        changed = False
        for name, schema in schemas.items():
            if not satisfiable[name] and holds(schema):
                satisfiable[name] = changed = True
    return sorted(name for name, ok in satisfiable.items() if not ok)


_SURROGATE = re.compile("[\ud800-\udfff]")
_DESCRIPTIVE = frozenset({"description", "title", "examples", "example"})


def _check_text(schemas: dict[str, dict[str, Any]]) -> None:
    """Refuse lone surrogates anywhere but in descriptive text: in a name, an enum value or a
    default, pydantic-core cannot build a validator ("error extracting str")."""
    stack: list[tuple[str, Any]] = list(schemas.items())
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                raise UnbindableEndpoint(
                    f"{where}: {ascii(node)[:80]} is not valid Unicode (a lone surrogate)"
                )
        elif isinstance(node, dict):
            for key, value in node.items():
                if _SURROGATE.search(str(key)):
                    raise UnbindableEndpoint(
                        f"{where}: the name {ascii(key)[:80]} is not valid Unicode "
                        "(a lone surrogate)"
                    )
                if key not in _DESCRIPTIVE and not str(key).startswith("x-"):
                    stack.append((f"{where}.{key}", value))
        elif isinstance(node, list):
            stack.extend((f"{where}[{i}]", value) for i, value in enumerate(node))
