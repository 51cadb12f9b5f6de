"""OpenAI's own ``images.generate`` arguments, mapped onto a fal model's fields.

``quality``, ``style``, ``background``, ``output_format`` and ``output_compression`` are
OpenAI's names. Each goes to the model's field of the same name when the model has one and
the value fits it exactly (compared case-insensitively, ``jpg`` = ``jpeg``; DALL·E 3's
``quality="hd"``/``"standard"`` become ``"high"``/``"medium"`` where the field takes those,
with a note). Otherwise the policy decides:

- ``openai_params="strict"`` (default): :class:`~falbind.InvalidArgumentsError` saying why
  (the model has no such field, or the values it takes), before anything is sent;
- ``openai_params="drop"``: the argument is not sent, and ``result.notes`` says so.

``user`` (OpenAI's end-user id) is accepted and never sent to fal; ``timeout`` is a call
option handled by the caller, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel

from falbind.client.errors import InvalidArgumentsError
from falbind.models.base import field_schemas

__all__ = ["OPENAI_IMAGE_PARAMS", "OpenAIParamsPolicy", "map_openai_params"]

OpenAIParamsPolicy = Literal["strict", "drop"]
OPENAI_IMAGE_PARAMS: Final = (
    "quality",
    "style",
    "background",
    "output_format",
    "output_compression",
)
"""OpenAI's image arguments that have a model field of the same meaning on some fal models."""
_SYNONYMS: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "output_format": {"jpeg": ("jpg",), "jpg": ("jpeg",)},
    "quality": {"hd": ("high",), "standard": ("medium",)},
}
"""OpenAI values and the model values that mean the same (tried in order)."""


def _allowed(schema: Mapping[str, Any]) -> list[Any] | None:
    """The values a property's schema lists (looking into ``anyOf``), or ``None`` when it
    lists none (a free value)."""
    values: list[Any] = []
    for member in (schema, *schema.get("anyOf", ()), *schema.get("oneOf", ())):
        values.extend(member.get("enum", ()))
        if "const" in member:
            values.append(member["const"])
    return values or None


def _fit(name: str, value: Any, allowed: list[Any]) -> Any | None:
    """The model value meaning ``value``, or ``None`` when none fits exactly."""
    if value in allowed:
        return value
    if not isinstance(value, str):
        return None
    by_lower = {item.lower(): item for item in allowed if isinstance(item, str)}
    for candidate in (value, *_SYNONYMS.get(name, {}).get(value.lower(), ())):
        if candidate.lower() in by_lower:
            return by_lower[candidate.lower()]
    return None


def map_openai_params(
    endpoint_id: str,
    input_model: type[BaseModel],
    given: Mapping[str, Any],
    policy: OpenAIParamsPolicy,
) -> tuple[dict[str, Any], list[str]]:
    """The model fields to send for OpenAI's arguments ``given`` (those not ``None``), and the
    notes to report. Raises :class:`~falbind.InvalidArgumentsError` under ``"strict"`` for an
    argument the model cannot take."""
    if policy not in ("strict", "drop"):
        raise InvalidArgumentsError.because(
            "openai_params", f"openai_params must be 'strict' or 'drop', not {policy!r}", policy
        )
    send: dict[str, Any] = {}
    notes: list[str] = []
    for name, value in given.items():
        if value is None:
            continue
        schema = field_schemas(input_model).get(name)
        if schema is None:
            reason = f"{endpoint_id} has no {name!r} parameter"
        else:
            allowed = _allowed(schema)
            mapped = value if allowed is None else _fit(name, value, allowed)
            if mapped is not None:
                send[name] = mapped
                if mapped != value:
                    notes.append(f"OpenAI's {name}={value!r} was sent as {name}={mapped!r}")
                continue
            shown = ", ".join(repr(item) for item in allowed or ())
            reason = f"{endpoint_id}'s {name} takes {shown}, and none of them means {value!r}"
        if policy == "strict":
            raise InvalidArgumentsError.because(
                name,
                f"OpenAI's {name}={value!r} cannot be honoured: {reason}; "
                "pass openai_params='drop' to drop such arguments (reported in result.notes)",
                value,
            )
        notes.append(f"OpenAI's {name}={value!r} was dropped: {reason}")
    return send, notes
