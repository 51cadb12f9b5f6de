"""The parameters of a request model's JSON schema, one row each: name, type, default, bounds.

``falbind show`` prints them from the model pydantic builds; the generator's endpoint reference
(``falbind reference``) prints them from the normalised registry documents. One reading of the
schema keeps the two in agreement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Parameter", "parameters"]

_BOUND_KEYWORDS = (
    ("minimum", ">= {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "<= {}"),
    ("exclusiveMaximum", "< {}"),
    ("multipleOf", "multiple of {}"),
    ("minLength", "length >= {}"),
    ("maxLength", "length <= {}"),
    ("minItems", "items >= {}"),
    ("maxItems", "items <= {}"),
    ("pattern", "matches {!r}"),
)


@dataclass(frozen=True)
class Parameter:
    """One field of a request model, as ``falbind show`` and the endpoint reference print it."""

    name: str
    type: str
    required: bool
    has_default: bool
    default: Any
    """The default as JSON data (``None`` with ``has_default`` true is a ``null`` default)."""
    allowed: tuple[str, ...]
    """Allowed values and bounds, e.g. ``one of "png", "jpeg"`` or ``>= 1``."""
    description: str


def _type_of(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            names = dict.fromkeys(_type_of(member) for member in schema[key])
            return " | ".join(names)
    if "const" in schema:
        return json.dumps(schema["const"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    if kind == "array":
        if "prefixItems" in schema:
            return f"tuple[{', '.join(_type_of(item) for item in schema['prefixItems'])}]"
        return f"list[{_type_of(schema.get('items') or {})}]"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"dict[str, {_type_of(schema['additionalProperties'])}]"
    return str(kind) if kind else "any"


def _constraints(schema: dict[str, Any]) -> list[str]:
    found: list[str] = []
    if isinstance(schema.get("enum"), list):
        found.append("one of " + ", ".join(json.dumps(v) for v in schema["enum"]))
    for keyword, template in _BOUND_KEYWORDS:
        if keyword in schema:
            found.append(template.format(schema[keyword]))
    for key in ("anyOf", "oneOf", "allOf"):
        for member in schema.get(key) or []:
            found.extend(_constraints(member))
    if "items" in schema and isinstance(schema["items"], dict) and "$ref" not in schema["items"]:
        found.extend(f"each {c}" for c in _constraints(schema["items"]))
    return found


def _first_line(text: Any) -> str:
    lines = [line.strip() for line in str(text or "").strip().splitlines()]
    return lines[0] if lines else ""


def parameters(schema: dict[str, Any]) -> list[Parameter]:
    """The properties of one object schema (from ``model_json_schema``), in declared order."""
    required = set(schema.get("required") or [])
    return [
        Parameter(
            name=name,
            type=_type_of(prop),
            required=name in required,
            has_default="default" in prop,
            default=prop.get("default"),
            allowed=tuple(dict.fromkeys(_constraints(prop))),
            description=_first_line(prop.get("description")),
        )
        for name, prop in (schema.get("properties") or {}).items()
    ]
