"""Compare two versions of a fal endpoint's OpenAPI document and classify every change.

The request root is the ``application/json`` body of ``POST /{endpoint_id}``; the
response root is the ``200`` ``application/json`` schema of
``GET /{endpoint_id}/requests/{request_id}``. Both are walked recursively (properties,
array items, ``prefixItems``, ``anyOf``/``oneOf`` members, ``allOf`` merges and
``additionalProperties``), resolving local ``$ref``s with a guard against cycles.

Compatibility depends on the side. The caller *sends* the input, so anything that
rejects a request that used to be valid is breaking there; the caller *reads* the
output, so anything that can hand it a value it did not expect is breaking there.

Change kinds (``Change.kind``) and when they are breaking:

====================== ================================== =================================
kind                   input (caller sends)               output (caller reads)
====================== ================================== =================================
field_removed          breaking                           breaking
field_added            compatible (optional field)        compatible
field_required_added   breaking (new required field)      —
field_became_required  breaking                           compatible
field_became_optional  compatible                         breaking
type_widened           compatible                         breaking (new runtime type), but
                                                          compatible when only an enum
                                                          restriction is lifted
type_narrowed          breaking                           compatible
type_changed           breaking                           breaking
nullable_added         compatible                         breaking
nullable_removed       breaking                           compatible
enum_value_added       compatible                         compatible (reported)
enum_value_removed     breaking                           compatible
bound_tightened        breaking                           compatible (reported)
bound_loosened         compatible                         compatible (reported)
default_changed        compatible (reported)              — (defaults describe requests)
extra_fields_allowed   compatible                         compatible
extra_fields_forbidden breaking                           compatible
unresolvable           breaking when the new document     same
                       stops resolving; reported when
                       both fail or the new one is fixed
====================== ================================== =================================

Bounds are ``minimum``/``maximum`` (with their exclusive forms), ``minLength``,
``maxLength``, ``minItems``, ``maxItems``, ``multipleOf``, ``pattern`` and ``uniqueItems``;
a newly added bound is a tightening, a removed one a loosening.

``anyOf [T, {"type": "null"}]`` (and ``nullable: true``) is read as "nullable T".
``exclusiveMinimum``/``exclusiveMaximum`` may be numbers (OpenAPI 3.1) or booleans
qualifying ``minimum``/``maximum`` (OpenAPI 3.0). Descriptions, titles, examples and
property order are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeGuard

from falbind.tooling.limits import MAX_DOCUMENT_BYTES, InputLimitError, loads_json, read_bounded

__all__ = ["Change", "DiffError", "SchemaDiff", "diff_documents", "diff_files"]

Side = Literal["input", "output"]

_REF_PREFIX = "#/components/schemas/"
_UNION_KEYWORDS = ("anyOf", "oneOf")
_STRUCTURAL_KEYWORDS = ("$ref", "anyOf", "oneOf", "allOf", "nullable")
_MISSING: Any = object()


class DiffError(ValueError):
    """A document could not be compared; the message is a one-line reason."""


@dataclass(frozen=True)
class Change:
    """One classified difference between two versions of an endpoint schema."""

    side: Side
    path: str
    kind: str
    breaking: bool
    message: str
    old: Any = None
    new: Any = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping with a stable key order."""
        return {
            "side": self.side,
            "path": self.path,
            "kind": self.kind,
            "breaking": self.breaking,
            "message": self.message,
            "old": self.old,
            "new": self.new,
        }


def _sort_key(change: Change) -> tuple[str, str, str, str]:
    return (change.side, change.path, change.kind, change.message)


@dataclass
class SchemaDiff:
    """All changes between two versions of one endpoint, sorted by side, path and kind."""

    endpoint_id: str
    changes: list[Change] = field(default_factory=list)

    def __post_init__(self) -> None:
        unique = {_canonical(change.to_dict()): change for change in self.changes}
        self.changes = sorted(unique.values(), key=_sort_key)

    @property
    def breaking(self) -> list[Change]:
        """Changes that can break existing callers."""
        return [change for change in self.changes if change.breaking]

    @property
    def compatible(self) -> list[Change]:
        """Changes existing callers can absorb (some are reported for their behaviour)."""
        return [change for change in self.changes if not change.breaking]

    @property
    def is_breaking(self) -> bool:
        """Whether any change is breaking."""
        return any(change.breaking for change in self.changes)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary with a stable key order."""
        return {
            "endpoint_id": self.endpoint_id,
            "is_breaking": self.is_breaking,
            "counts": {"breaking": len(self.breaking), "compatible": len(self.compatible)},
            "changes": [change.to_dict() for change in self.changes],
        }

    def to_text(self) -> str:
        """Return a readable report: a header line, then breaking and compatible changes."""
        header = (
            f"{self.endpoint_id}: {len(self.changes)} change(s), "
            f"{len(self.breaking)} breaking, {len(self.compatible)} compatible"
        )
        lines = [header]
        for title, changes in (("BREAKING", self.breaking), ("compatible", self.compatible)):
            if changes:
                lines.append(title)
                lines.extend(f"  {c.path}: {c.message} [{c.kind}]" for c in changes)
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- documents


def diff_documents(old: Mapping[str, Any], new: Mapping[str, Any]) -> SchemaDiff:
    """Compare two OpenAPI documents of the same fal endpoint.

    Raises ``DiffError`` if either document lacks the endpoint's request or response root.
    """
    old_doc, new_doc = _EndpointDocument(old), _EndpointDocument(new)
    changes: list[Change] = []
    for side in ("input", "output"):
        walker = _Walker(side, old_doc.schemas, new_doc.schemas)
        walker.compare(old_doc.root(side), new_doc.root(side), side)
        changes.extend(walker.changes)
    return SchemaDiff(new_doc.endpoint_id, changes)


def diff_files(
    old_path: str | Path, new_path: str | Path, *, allow_different_ids: bool = False
) -> SchemaDiff:
    """Load two OpenAPI documents from disk and compare them.

    Raises ``DiffError`` for a missing file, invalid JSON, a document that is not an
    endpoint's OpenAPI document, or documents of different endpoints (unless
    ``allow_different_ids`` is true).
    """
    old, new = _load_document(Path(old_path)), _load_document(Path(new_path))
    old_id, new_id = _EndpointDocument(old).endpoint_id, _EndpointDocument(new).endpoint_id
    if old_id != new_id and not allow_different_ids:
        raise DiffError(
            f"documents describe different endpoints: {old_id!r} vs {new_id!r} "
            "(pass allow_different_ids=True to compare anyway)"
        )
    return diff_documents(old, new)


def _load_document(path: Path) -> dict[str, Any]:
    try:
        text = read_bounded(path, MAX_DOCUMENT_BYTES, "an OpenAPI document").decode("utf-8")
    except FileNotFoundError:
        raise DiffError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DiffError(f"{path}: cannot read file: {exc}") from None
    except InputLimitError as exc:
        raise DiffError(str(exc)) from None
    try:
        document = loads_json(text, str(path))
    except json.JSONDecodeError as exc:
        raise DiffError(f"{path}: invalid JSON: {exc}") from None
    except InputLimitError as exc:
        raise DiffError(str(exc)) from None
    if not isinstance(document, dict):
        raise DiffError(f"{path}: not an OpenAPI document (top level is not an object)")
    try:
        _EndpointDocument(document)
    except DiffError as exc:
        raise DiffError(f"{path}: {exc}") from None
    return document


class _EndpointDocument:
    """The parts of a fal queue OpenAPI document that the diff needs."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        paths = document.get("paths")
        if "openapi" not in document or not isinstance(paths, dict):
            raise DiffError("not an OpenAPI document (no 'openapi' version or 'paths' object)")
        self.paths: dict[str, Any] = paths
        components = document.get("components")
        schemas = components.get("schemas") if isinstance(components, dict) else None
        self.schemas: dict[str, Any] = schemas if isinstance(schemas, dict) else {}
        self.endpoint_id = self._endpoint_id(document)

    def _endpoint_id(self, document: Mapping[str, Any]) -> str:
        info = document.get("info")
        metadata = info.get("x-fal-metadata") if isinstance(info, dict) else None
        endpoint_id = metadata.get("endpointId") if isinstance(metadata, dict) else None
        if isinstance(endpoint_id, str) and endpoint_id:
            return endpoint_id
        submit_paths = [
            path
            for path, item in self.paths.items()
            if isinstance(item, dict) and "post" in item and "/requests/" not in path
        ]
        if len(submit_paths) != 1:
            raise DiffError(
                "cannot tell the endpoint id: no x-fal-metadata and no single POST path"
            )
        return str(submit_paths[0]).strip("/")

    def root(self, side: Side) -> dict[str, Any]:
        """Return the raw request (input) or result (output) schema."""
        if side == "input":
            where = f"POST /{self.endpoint_id} requestBody"
            content = _dig(self.paths, f"/{self.endpoint_id}", "post", "requestBody", "content")
        else:
            where = f"GET /{self.endpoint_id}/requests/{{request_id}} 200"
            result = f"/{self.endpoint_id}/requests/{{request_id}}"
            content = _dig(self.paths, result, "get", "responses", "200", "content")
        schema = _dig(content, "application/json", "schema")
        if not isinstance(schema, dict):
            raise DiffError(f"{self.endpoint_id}: no application/json {side} schema at {where}")
        return schema


def _dig(node: Any, *keys: str) -> Any:
    """Follow ``keys`` through nested objects; ``None`` as soon as one is missing."""
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


# --------------------------------------------------------------------------- schema shapes


@dataclass(frozen=True)
class _Shape:
    """A schema with refs resolved, ``allOf`` merged and null members folded into ``nullable``.

    ``members`` is non-empty for a union of two or more non-null alternatives; then
    ``keywords`` holds only the union's own annotations (such as ``default``).
    Nested ``properties``/``items`` stay raw and are resolved lazily while walking.
    """

    keywords: Mapping[str, Any]
    nullable: bool = False
    members: tuple[_Shape, ...] = ()
    refs: tuple[str, ...] = ()

    def alternatives(self) -> tuple[_Shape, ...]:
        """The non-null alternatives: the union members, or the shape itself."""
        return self.members or (self,)

    def label(self) -> str:
        """A short name for messages: the referenced schema name, or the type."""
        if self.refs:
            return self.refs[0]
        kind = _type_of(self)
        return f"{kind} enum" if _enum_values(self) is not None else kind


@dataclass(frozen=True)
class _Dangling:
    """A schema that cannot be resolved: ``source`` names it (e.g. ``$ref #/...``)."""

    source: str
    reason: str


class _Resolver:
    """Turns raw schemas of one document into ``_Shape``s."""

    def __init__(self, schemas: Mapping[str, Any]) -> None:
        self.schemas = schemas

    def shape(self, raw: Any, seen: frozenset[str] = frozenset()) -> _Shape | _Dangling:
        """Normalise ``raw``; ``seen`` holds refs being expanded eagerly (cycle guard)."""
        if not isinstance(raw, Mapping):
            return _Shape({})
        refs: tuple[str, ...] = ()
        schema: Mapping[str, Any] = raw
        while "$ref" in schema:
            ref = str(schema["$ref"])
            name = ref.removeprefix(_REF_PREFIX)
            if name in seen or name in refs:
                return _Dangling(f"$ref {ref}", "refers to itself with no structure in between")
            target = self.schemas.get(name) if ref.startswith(_REF_PREFIX) else None
            if not isinstance(target, Mapping):
                return _Dangling(f"$ref {ref}", "is not defined in components.schemas")
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **siblings}
            refs = (*refs, name)
        resolved = self._structure(schema, seen | set(refs))
        if isinstance(resolved, _Dangling):
            return resolved
        return replace(resolved, refs=refs + resolved.refs)

    def _structure(self, schema: Mapping[str, Any], seen: frozenset[str]) -> _Shape | _Dangling:
        """Fold ``type`` lists, ``allOf``, ``anyOf``/``oneOf`` and ``nullable`` (refs resolved)."""
        own = {k: v for k, v in schema.items() if k not in _STRUCTURAL_KEYWORDS}
        nullable = schema.get("nullable") is True
        type_ = own.get("type")
        if isinstance(type_, list):
            nullable = nullable or "null" in type_
            kinds = [t for t in type_ if t != "null"]
            own.pop("type")
            if len(kinds) == 1:
                own["type"] = kinds[0]
            elif kinds:
                return self._union([{**own, "type": t} for t in kinds], {}, nullable, seen)
        inherited: tuple[str, ...] = ()
        if isinstance(schema.get("allOf"), list):
            merged = self._merge_all_of(schema["allOf"], seen)
            if isinstance(merged, _Dangling) or merged.members:
                return merged if isinstance(merged, _Dangling) else _overlay(merged, own, nullable)
            own = {**merged.keywords, **own}
            nullable = nullable or merged.nullable
            inherited = merged.refs
        for keyword in _UNION_KEYWORDS:
            if isinstance(schema.get(keyword), list):
                union = self._union(schema[keyword], own, nullable, seen)
                if isinstance(union, _Dangling):
                    return union
                return replace(union, refs=inherited + union.refs)
        return _Shape(own, nullable or own.get("type") == "null", (), inherited)

    def _merge_all_of(self, parts: list[Any], seen: frozenset[str]) -> _Shape | _Dangling:
        """Merge ``allOf`` parts: one part is used as is; several have their properties joined."""
        if len(parts) == 1:
            return self.shape(parts[0], seen)
        keywords: dict[str, Any] = {}
        properties: dict[str, Any] = {}
        required: list[Any] = []
        refs: tuple[str, ...] = ()
        nullable = bool(parts)
        for part in parts:
            shape = self.shape(part, seen)
            if isinstance(shape, _Dangling):
                return shape
            if shape.members:
                return _Dangling("allOf", "combines a union with other parts; cannot merge")
            nullable = nullable and shape.nullable
            refs += shape.refs
            properties.update(shape.keywords.get("properties") or {})
            required.extend(r for r in shape.keywords.get("required") or [] if r not in required)
            for key, value in shape.keywords.items():
                keywords.setdefault(key, value)
        if properties:
            keywords["properties"] = properties
        if required:
            keywords["required"] = required
        return _Shape(keywords, nullable, (), refs)

    def _union(
        self, raw_members: list[Any], own: dict[str, Any], nullable: bool, seen: frozenset[str]
    ) -> _Shape | _Dangling:
        members: list[_Shape] = []
        for raw in raw_members:
            shape = self.shape(raw, seen)
            if isinstance(shape, _Dangling):
                return shape
            nullable = nullable or shape.nullable
            if shape.members:
                members.extend(shape.members)
            elif shape.keywords.get("type") != "null":
                members.append(_Shape(shape.keywords, False, (), shape.refs))
        if len(members) == 1:
            return _overlay(members[0], own, nullable)
        if not members:
            return _Shape({**own, "type": "null"}, nullable=True)
        return _Shape(own, nullable, tuple(members))


def _overlay(shape: _Shape, own: Mapping[str, Any], nullable: bool) -> _Shape:
    """``shape`` with sibling keywords (such as ``default``) and nullability laid over it."""
    return replace(shape, keywords={**shape.keywords, **own}, nullable=nullable or shape.nullable)


def _type_of(shape: _Shape) -> str:
    """The JSON type of a non-union shape, inferred when ``type`` is absent."""
    keywords = shape.keywords
    declared = keywords.get("type")
    if isinstance(declared, str):
        return declared
    if "properties" in keywords or "additionalProperties" in keywords:
        return "object"
    if "items" in keywords or "prefixItems" in keywords:
        return "array"
    values = _enum_values(shape)
    if values:
        return _type_of_values(values)
    return "any"


def _type_of_values(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, str) for v in values):
        return "string"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "number"
    return "any"


def _enum_values(shape: _Shape) -> list[Any] | None:
    """The allowed values (``enum``, or ``const`` as a one-value enum), if restricted."""
    if isinstance(shape.keywords.get("enum"), list):
        return list(shape.keywords["enum"])
    if "const" in shape.keywords:
        return [shape.keywords["const"]]
    return None


def _is_subtype(narrow: str, wide: str) -> bool:
    return narrow == wide or wide == "any" or (narrow, wide) == ("integer", "number")


def _canonical(value: Any) -> str:
    """A JSON rendering that tells ``1`` from ``1.0`` and ``True`` from ``1``."""
    return json.dumps(value, sort_keys=True)


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if name.isidentifier() else f"{path}[{json.dumps(name)}]"


# --------------------------------------------------------------------------- bounds


@dataclass(frozen=True)
class _Bound:
    """A numeric bound: its value and whether the value itself is excluded."""

    value: float
    exclusive: bool

    def render(self, operator: str) -> str:
        strict = operator.rstrip("=") if self.exclusive else operator
        number = int(self.value) if float(self.value).is_integer() else self.value
        return f"{strict} {number}"


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numeric_bound(keywords: Mapping[str, Any], inclusive: str, exclusive: str) -> _Bound | None:
    """The effective bound from ``minimum``/``exclusiveMinimum`` (or the maximum pair).

    Handles the 3.0 form (boolean ``exclusiveMinimum`` qualifying ``minimum``) and the
    3.1 form (numeric ``exclusiveMinimum``); when both apply, the stricter one wins.
    """
    candidates: list[_Bound] = []
    value, flag = keywords.get(inclusive), keywords.get(exclusive)
    if _is_number(value):
        candidates.append(_Bound(float(value), flag is True))
    if _is_number(flag):
        candidates.append(_Bound(float(flag), True))
    if not candidates:
        return None
    if inclusive == "minimum":
        return max(candidates, key=lambda b: (b.value, b.exclusive))
    return min(candidates, key=lambda b: (b.value, not b.exclusive))


def _number_or_none(keywords: Mapping[str, Any], keyword: str) -> float | None:
    value = keywords.get(keyword)
    return value if _is_number(value) else None


def _divides(divisor: Any, multiple: Any) -> bool:
    """Whether every multiple of ``multiple`` is also a multiple of ``divisor``."""
    if not (_is_number(divisor) and _is_number(multiple)) or divisor <= 0:
        return False
    quotient = multiple / divisor
    return bool(quotient > 0 and abs(quotient - round(quotient)) < 1e-9)


def _numeric_is_tighter(old: _Bound, new: _Bound, lower: bool) -> bool:
    if new.value == old.value:
        return new.exclusive and not old.exclusive
    return new.value > old.value if lower else new.value < old.value


# --------------------------------------------------------------------------- walking


class _Walker:
    """Walks one side (input or output) of two documents in parallel, collecting changes."""

    def __init__(
        self, side: Side, old_schemas: Mapping[str, Any], new_schemas: Mapping[str, Any]
    ) -> None:
        self.side: Side = side
        self.old = _Resolver(old_schemas)
        self.new = _Resolver(new_schemas)
        self.changes: list[Change] = []
        self._active: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()

    @property
    def is_input(self) -> bool:
        return self.side == "input"

    def report(
        self, path: str, kind: str, breaking: bool, message: str, old: Any = None, new: Any = None
    ) -> None:
        self.changes.append(Change(self.side, path, kind, breaking, message, old, new))

    def compare(self, old_raw: Any, new_raw: Any, path: str) -> None:
        """Compare two raw schemas found at ``path``."""
        old, new = self.old.shape(old_raw), self.new.shape(new_raw)
        if isinstance(old, _Dangling) or isinstance(new, _Dangling):
            self._report_dangling(path, old, new)
            return
        self._compare_nullability(old, new, path)
        if self.is_input:
            self._compare_default(old, new, path)
        old_members, new_members = old.alternatives(), new.alternatives()
        if len(old_members) == 1 and len(new_members) == 1:
            self._compare_single(old_members[0], new_members[0], path)
        else:
            self._compare_union(old_members, new_members, path)

    def _report_dangling(self, path: str, old: _Shape | _Dangling, new: _Shape | _Dangling) -> None:
        if isinstance(new, _Dangling):
            before = (
                "as in the old version" if isinstance(old, _Dangling) else "the old one resolved"
            )
            message = f"cannot compare: the new {new.source} {new.reason} ({before})"
            breaking = not isinstance(old, _Dangling)
            self.report(path, "unresolvable", breaking, message, new=new.source)
        elif isinstance(old, _Dangling):
            message = f"cannot compare: the old {old.source} {old.reason}; the new one resolves"
            self.report(path, "unresolvable", False, message, old=old.source)

    def _compare_nullability(self, old: _Shape, new: _Shape, path: str) -> None:
        if old.nullable == new.nullable:
            return
        if new.nullable:
            effect = "callers may now send null" if self.is_input else "callers may now read null"
            self.report(path, "nullable_added", not self.is_input, f"became nullable; {effect}")
        else:
            effect = "null is now rejected" if self.is_input else "null is no longer returned"
            self.report(path, "nullable_removed", self.is_input, f"no longer nullable; {effect}")

    def _compare_default(self, old: _Shape, new: _Shape, path: str) -> None:
        before = old.keywords.get("default", _MISSING)
        after = new.keywords.get("default", _MISSING)
        if before is _MISSING and after is _MISSING:
            return
        if before is not _MISSING and after is not _MISSING:
            if _canonical(before) == _canonical(after):
                return
            what = f"default changed from {_canonical(before)} to {_canonical(after)}"
        elif after is _MISSING:
            what = f"default {_canonical(before)} removed"
        else:
            what = f"default {_canonical(after)} added"
        message = f"{what}; callers relying on the default see different behaviour"
        old_value = None if before is _MISSING else before
        new_value = None if after is _MISSING else after
        self.report(path, "default_changed", False, message, old_value, new_value)

    # -- unions ----------------------------------------------------------------------

    def _compare_union(
        self, old_members: tuple[_Shape, ...], new_members: tuple[_Shape, ...], path: str
    ) -> None:
        pairs, removed, added = _match_members(old_members, new_members)
        for old, new in pairs:
            self._compare_single(old, new, path)
        for member in removed:
            message = f"union member {member.label()} removed"
            self.report(path, "type_narrowed", self.is_input, message, old=member.label())
        for member in added:
            message = f"union member {member.label()} added"
            self.report(path, "type_widened", not self.is_input, message, new=member.label())

    # -- one alternative against another ---------------------------------------------

    def _compare_single(self, old: _Shape, new: _Shape, path: str) -> None:
        key = (old.refs, new.refs)
        if old.refs and new.refs:
            if key in self._active:
                return
            self._active.add(key)
        try:
            if self._compare_types(old, new, path):
                self._compare_enum(old, new, path)
                self._compare_bounds(old.keywords, new.keywords, path)
                self._compare_object(old.keywords, new.keywords, path)
                self._compare_array(old.keywords, new.keywords, path)
        finally:
            self._active.discard(key)

    def _compare_types(self, old: _Shape, new: _Shape, path: str) -> bool:
        """Report a type change; return whether the structures are still comparable."""
        before, after = _type_of(old), _type_of(new)
        if before == after:
            return True
        message = f"type changed from {before} to {after}"
        if _is_subtype(before, after):
            self.report(path, "type_widened", not self.is_input, message, before, after)
        elif _is_subtype(after, before):
            self.report(path, "type_narrowed", self.is_input, message, before, after)
        else:
            self.report(path, "type_changed", True, message, before, after)
        return {before, after} == {"integer", "number"}

    def _compare_enum(self, old: _Shape, new: _Shape, path: str) -> None:
        before, after = _enum_values(old), _enum_values(new)
        if before is None and after is None:
            return
        if before is None:
            message = f"now restricted to the values {_render_values(after or [])}"
            self.report(path, "type_narrowed", self.is_input, message, new=after)
        elif after is None:
            message = "no longer restricted to a fixed set of values"
            self.report(path, "type_widened", False, message, old=before)
        else:
            self._compare_enum_values(before, after, path)

    def _compare_enum_values(self, before: list[Any], after: list[Any], path: str) -> None:
        old_keys = {_canonical(v) for v in before}
        new_keys = {_canonical(v) for v in after}
        for value in before:
            if _canonical(value) not in new_keys:
                effect = "requests using it are rejected" if self.is_input else "no longer returned"
                message = f"enum value {_canonical(value)} removed; {effect}"
                self.report(path, "enum_value_removed", self.is_input, message, old=value)
        for value in after:
            if _canonical(value) not in old_keys:
                effect = "" if self.is_input else "; callers may read a value they do not expect"
                message = f"enum value {_canonical(value)} added{effect}"
                self.report(path, "enum_value_added", False, message, new=value)

    # -- bounds ----------------------------------------------------------------------

    def _compare_bounds(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        self._compare_numeric_bounds(old, new, path)
        self._compare_size_bounds(old, new, path)
        self._compare_other_constraints(old, new, path)

    def _compare_numeric_bounds(
        self, old: Mapping[str, Any], new: Mapping[str, Any], path: str
    ) -> None:
        for inclusive, exclusive, operator in (
            ("minimum", "exclusiveMinimum", ">="),
            ("maximum", "exclusiveMaximum", "<="),
        ):
            lower = inclusive == "minimum"
            before = _numeric_bound(old, inclusive, exclusive)
            after = _numeric_bound(new, inclusive, exclusive)
            if before == after:
                continue
            tightened = before is None or (
                after is not None and _numeric_is_tighter(before, after, lower)
            )
            self._report_bound(
                path,
                "lower bound" if lower else "upper bound",
                before.render(operator) if before else None,
                after.render(operator) if after else None,
                tightened,
            )

    def _compare_size_bounds(
        self, old: Mapping[str, Any], new: Mapping[str, Any], path: str
    ) -> None:
        for keyword, larger_is_tighter in (
            ("minLength", True),
            ("minItems", True),
            ("maxLength", False),
            ("maxItems", False),
        ):
            before, after = _number_or_none(old, keyword), _number_or_none(new, keyword)
            if before == after:
                continue
            tightened = before is None or (
                after is not None and (after > before) == larger_is_tighter
            )
            self._report_bound(path, keyword, before, after, tightened)

    def _compare_other_constraints(
        self, old: Mapping[str, Any], new: Mapping[str, Any], path: str
    ) -> None:
        """``multipleOf``, ``pattern`` and ``uniqueItems`` (absent and false mean "off")."""
        for keyword in ("multipleOf", "pattern", "uniqueItems"):
            before, after = old.get(keyword, False), new.get(keyword, False)
            if before == after:
                continue
            tightened = after is not False and not _divides(after, before)
            self._report_bound(
                path,
                keyword,
                None if before is False else before,
                None if after is False else after,
                tightened,
            )

    def _report_bound(self, path: str, what: str, before: Any, after: Any, tightened: bool) -> None:
        if before is None:
            message = f"{what} {after} added"
        elif after is None:
            message = f"{what} {before} removed"
        else:
            message = f"{what} changed from {before} to {after}"
        kind = "bound_tightened" if tightened else "bound_loosened"
        breaking = tightened and self.is_input
        self.report(path, kind, breaking, message, before, after)

    # -- objects and arrays ------------------------------------------------------------

    def _compare_object(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        old_props: Mapping[str, Any] = old.get("properties") or {}
        new_props: Mapping[str, Any] = new.get("properties") or {}
        old_required = set(old.get("required") or [])
        new_required = set(new.get("required") or [])
        for name in sorted(old_props.keys() | new_props.keys()):
            child = _child(path, name)
            if name not in new_props:
                self._report_removed(child)
            elif name not in old_props:
                self._report_added(child, name in new_required)
            else:
                self._compare_required(child, name in old_required, name in new_required)
                self.compare(old_props[name], new_props[name], child)
        self._compare_additional(
            old.get("additionalProperties"), new.get("additionalProperties"), path
        )

    def _report_removed(self, path: str) -> None:
        effect = (
            "requests that still set it are invalid" if self.is_input else "callers reading it fail"
        )
        self.report(path, "field_removed", True, f"field removed; {effect}")

    def _report_added(self, path: str, required: bool) -> None:
        if self.is_input and required:
            message = "new required field; existing requests lack it"
            self.report(path, "field_required_added", True, message)
        else:
            self.report(
                path, "field_added", False, "new field" if required else "new optional field"
            )

    def _compare_required(self, path: str, before: bool, after: bool) -> None:
        if before == after:
            return
        if after:
            message = "became required" + (
                "; requests without it are rejected" if self.is_input else ""
            )
            self.report(path, "field_became_required", self.is_input, message)
        else:
            message = "became optional" + ("" if self.is_input else "; callers may find it missing")
            self.report(path, "field_became_optional", not self.is_input, message)

    def _compare_additional(self, old: Any, new: Any, path: str) -> None:
        """``additionalProperties``: absent or true allows anything, false forbids extras."""
        if (old is False) != (new is False):
            if new is False:
                self.report(
                    path, "extra_fields_forbidden", self.is_input, "no longer accepts extra keys"
                )
            else:
                self.report(path, "extra_fields_allowed", False, "now accepts extra keys")
        elif isinstance(old, Mapping) or isinstance(new, Mapping):
            self.compare(old, new, f"{path}.*")

    def _compare_array(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        if "items" in old or "items" in new:
            self.compare(old.get("items"), new.get("items"), f"{path}[]")
        old_prefix: list[Any] = old.get("prefixItems") or []
        new_prefix: list[Any] = new.get("prefixItems") or []
        for index, (before, after) in enumerate(zip(old_prefix, new_prefix, strict=False)):
            self.compare(before, after, f"{path}[{index}]")
        self._compare_tuple_length(len(old_prefix), len(new_prefix), path)

    def _compare_tuple_length(self, before: int, after: int, path: str) -> None:
        """``prefixItems`` added constrains positions (narrower); removed frees them (wider)."""
        if before == after:
            return
        message = f"positional item schemas (prefixItems) changed from {before} to {after}"
        if before == 0:
            self.report(path, "type_narrowed", self.is_input, message, before, after)
        elif after == 0:
            self.report(path, "type_widened", not self.is_input, message, before, after)
        else:
            self.report(path, "type_changed", True, message, before, after)


def _match_members(
    old_members: tuple[_Shape, ...], new_members: tuple[_Shape, ...]
) -> tuple[list[tuple[_Shape, _Shape]], list[_Shape], list[_Shape]]:
    """Pair union members: same label first, then same type family; return leftovers."""
    pairs: list[tuple[_Shape, _Shape]] = []
    old_left, new_left = list(old_members), list(new_members)
    for key in (_Shape.label, _family):
        for old in list(old_left):
            match = next((new for new in new_left if key(new) == key(old)), None)
            if match is not None:
                pairs.append((old, match))
                old_left.remove(old)
                new_left.remove(match)
    return pairs, old_left, new_left


def _family(shape: _Shape) -> str:
    kind = _type_of(shape)
    return "number" if kind == "integer" else kind


def _render_values(values: list[Any]) -> str:
    return ", ".join(_canonical(v) for v in values)
