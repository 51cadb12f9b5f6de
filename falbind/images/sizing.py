"""OpenAI-style ``size="1792x1024"`` mapped onto one model's own size parameter, never by guess.

What a model accepts comes from its request schema (``SizeCapability.of``) plus registry data
(``falbind.models.bindings.sizes``: fal's preset dimensions, field names, per-model limits):

- ``image_size`` taking ``{width, height}``: the exact size, checked against the schema's bounds
  and the registry's limits (``min``/``max`` side, ``multiple_of``); a size outside them is scaled
  (aspect ratio kept) and snapped, and the plan says so;
- ``image_size`` presets only: the preset with the nearest aspect ratio, then the nearest area;
- ``aspect_ratio``: the nearest ratio of the model's own enum. Ratios are compared in log space,
  so 3:4 is as far from 1:1 as 4:3 is, and portrait never turns landscape while a portrait choice
  exists;
- ``auto``: the model's default (nothing sent), unless the field's enum has ``auto``.

``plan_size`` returns a ``SizePlan`` with the parameters to send and, when the delivered size
differs from the request, ``adjusted=True`` and a note; ``strict=True`` raises ``SizeError``
instead.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from falbind._error_base import FalError

__all__ = ["SizeCapability", "SizeError", "SizeLimits", "SizePlan", "parse_size", "plan_size"]

SizeKind = Literal["image_size", "aspect_ratio", "none"]


class SizeError(FalError, ValueError):
    """The requested size cannot be delivered (``strict_size``) or cannot be read."""


@dataclass(frozen=True)
class SizeLimits:
    """Bounds on each side of a custom size; ``None`` means unbounded."""

    min_side: int = 1
    max_side: int | None = None
    multiple_of: int = 1


@dataclass(frozen=True)
class SizeCapability:
    """How one model takes a size, read from its request schema."""

    kind: SizeKind
    parameter: str | None = None
    """The request field that takes the size."""
    presets: tuple[str, ...] = ()
    """Enum values of the size field (presets, or ``"W:H"`` ratios for ``aspect_ratio``)."""
    custom: bool = False
    """The size field also takes ``{width, height}``."""
    open_values: bool = False
    """The field takes any string besides its enum (e.g. flux-pro ultra's ``aspect_ratio``)."""
    limits: SizeLimits = field(default_factory=SizeLimits)

    @classmethod
    def of(
        cls,
        model: type[BaseModel],
        size_fields: tuple[str, ...],
        ratio_fields: tuple[str, ...],
        limits: SizeLimits | None = None,
    ) -> SizeCapability:
        schema = model.model_json_schema(by_alias=True)
        properties: dict[str, Any] = schema.get("properties", {})
        definitions: dict[str, Any] = schema.get("$defs", {})
        for kind, names in (("image_size", size_fields), ("aspect_ratio", ratio_fields)):
            for name in names:
                if name in properties:
                    return _capability(kind, name, properties[name], definitions, limits)  # type: ignore[arg-type]
        return cls(kind="none")


def _members(schema: dict[str, Any], definitions: dict[str, Any]) -> list[dict[str, Any]]:
    members = schema.get("anyOf") or schema.get("oneOf") or [schema]
    resolved = []
    for member in members:
        ref = member.get("$ref")
        resolved.append(definitions[ref.rsplit("/", 1)[-1]] if isinstance(ref, str) else member)
    return resolved


def _side_limits(obj: dict[str, Any], extra: SizeLimits | None) -> SizeLimits:
    lows, highs, multiples = [1], [], [1]
    for side in ("width", "height"):
        prop = obj.get("properties", {}).get(side, {})
        if "minimum" in prop:
            lows.append(math.ceil(prop["minimum"]))
        if "exclusiveMinimum" in prop:
            lows.append(math.floor(prop["exclusiveMinimum"]) + 1)
        if "maximum" in prop:
            highs.append(math.floor(prop["maximum"]))
        if "exclusiveMaximum" in prop:
            highs.append(math.ceil(prop["exclusiveMaximum"]) - 1)
        if "multipleOf" in prop:
            multiples.append(int(prop["multipleOf"]))
        multiple = (prop.get("x-fal") or {}).get("multiple_of")
        if isinstance(multiple, int):
            multiples.append(multiple)
    if extra is not None:
        lows.append(extra.min_side)
        if extra.max_side is not None:
            highs.append(extra.max_side)
        multiples.append(extra.multiple_of)
    return SizeLimits(
        min_side=max(lows), max_side=min(highs) if highs else None, multiple_of=max(multiples)
    )


def _capability(
    kind: SizeKind,
    name: str,
    schema: dict[str, Any],
    definitions: dict[str, Any],
    limits: SizeLimits | None,
) -> SizeCapability:
    presets: list[str] = []
    custom, open_values, side_limits = False, False, SizeLimits()
    for member in _members(schema, definitions):
        if "enum" in member:
            presets.extend(v for v in member["enum"] if isinstance(v, str))
        elif member.get("type") == "object" and "width" in member.get("properties", {}):
            custom, side_limits = True, _side_limits(member, limits)
        elif member.get("type") == "string":
            open_values = True
    return SizeCapability(
        kind=kind,
        parameter=name,
        presets=tuple(presets),
        custom=custom,
        open_values=open_values,
        limits=side_limits,
    )


@dataclass(frozen=True)
class SizePlan:
    """What to send for a requested size, and what the caller will get."""

    requested: str
    params: dict[str, Any]
    delivered: str
    """``"1792x1024"``, ``"landscape_16_9 (1024x576)"``, ``"aspect ratio 16:9"`` or
    ``"model default"``."""
    adjusted: bool = False
    note: str | None = None


def parse_size(size: str) -> tuple[int, int] | None:
    """``"1792x1024"`` -> ``(1792, 1024)``; ``"auto"`` -> ``None``; anything else: SizeError."""
    if size == "auto":
        return None
    width, sep, height = size.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise SizeError(f"size {size!r} is not WIDTHxHEIGHT (e.g. '1024x1024') or 'auto'")
    return int(width), int(height)


def _parse_ratio(value: str) -> float | None:
    left, sep, right = value.partition(":")
    try:
        ratio = float(left) / float(right) if sep else None
    except (ValueError, ZeroDivisionError):
        return None
    return ratio if ratio and ratio > 0 else None


def _distance(ratio: float, area: float, candidate: tuple[int, int]) -> tuple[float, float]:
    width, height = candidate
    return (abs(math.log(width / height) - math.log(ratio)), abs(math.log(width * height / area)))


def _snap(value: float, limits: SizeLimits) -> int:
    step = limits.multiple_of
    snapped = max(step, round(value / step) * step)
    while snapped < limits.min_side:
        snapped += step
    while limits.max_side is not None and snapped > limits.max_side:
        snapped -= step
    return int(snapped)


def _fit_custom(width: int, height: int, limits: SizeLimits) -> tuple[int, int]:
    """The size within ``limits`` nearest to ``width``x``height`` with the same aspect ratio."""
    scale = 1.0
    if limits.max_side is not None and max(width, height) > limits.max_side:
        scale = limits.max_side / max(width, height)
    if min(width, height) * scale < limits.min_side:
        scale = limits.min_side / min(width, height)
    return _snap(width * scale, limits), _snap(height * scale, limits)


def _adjusted(plan: SizePlan, model: str, strict: bool) -> SizePlan:
    if strict and plan.adjusted:
        raise SizeError(f"{model} cannot deliver size {plan.requested}: {plan.note}")
    return plan


def plan_size(
    capability: SizeCapability,
    size: str,
    presets: Mapping[str, tuple[int, int]],
    *,
    model: str,
    strict: bool = False,
) -> SizePlan:
    """Map an OpenAI-style ``size`` onto ``capability`` (see the module docstring)."""
    dimensions = parse_size(size)
    name = capability.parameter
    if dimensions is None:
        if name is not None and "auto" in capability.presets:
            return SizePlan(size, {name: "auto"}, "auto")
        return SizePlan(size, {}, "model default")
    width, height = dimensions
    if capability.kind == "none" or name is None:
        note = f"{model} takes no size parameter; the model's default size is used"
        return _adjusted(SizePlan(size, {}, "model default", True, note), model, strict)
    if capability.kind == "aspect_ratio":
        return _adjusted(_plan_ratio(capability, name, size, width, height), model, strict)
    if capability.custom:
        fitted = _fit_custom(width, height, capability.limits)
        plan = SizePlan(
            size, {name: {"width": fitted[0], "height": fitted[1]}}, f"{fitted[0]}x{fitted[1]}"
        )
        if fitted != (width, height):
            note = f"{size} is outside {model}'s limits ({_describe(capability.limits)}); sending {fitted[0]}x{fitted[1]}"
            plan = SizePlan(size, plan.params, plan.delivered, True, note)
        return _adjusted(plan, model, strict)
    return _adjusted(
        _plan_preset(capability, name, size, width, height, presets, model), model, strict
    )


def _describe(limits: SizeLimits) -> str:
    parts = [f"sides >= {limits.min_side}"]
    if limits.max_side is not None:
        parts.append(f"sides <= {limits.max_side}")
    if limits.multiple_of > 1:
        parts.append(f"multiples of {limits.multiple_of}")
    return ", ".join(parts)


def _plan_preset(
    capability: SizeCapability,
    name: str,
    size: str,
    width: int,
    height: int,
    presets: Mapping[str, tuple[int, int]],
    model: str,
) -> SizePlan:
    known = [(p, presets[p]) for p in capability.presets if p in presets]
    if not known:
        note = f"{model}'s {name} values {list(capability.presets)} have no known dimensions"
        return SizePlan(size, {}, "model default", True, note)
    ratio, area = width / height, float(width * height)
    preset, (pw, ph) = min(known, key=lambda item: _distance(ratio, area, item[1]))
    delivered = f"{preset} ({pw}x{ph})"
    if (pw, ph) == (width, height):
        return SizePlan(size, {name: preset}, delivered)
    note = (
        f"{model} takes presets only; {size} maps to {delivered}, the nearest aspect ratio and area"
    )
    return SizePlan(size, {name: preset}, delivered, True, note)


def _plan_ratio(
    capability: SizeCapability, name: str, size: str, width: int, height: int
) -> SizePlan:
    ratios = [(value, r) for value in capability.presets if (r := _parse_ratio(value)) is not None]
    requested = width / height
    if not ratios:
        return SizePlan(size, {}, "model default", True, f"no aspect ratios listed for {name}")
    value, ratio = min(ratios, key=lambda item: abs(math.log(item[1]) - math.log(requested)))
    exact = math.isclose(ratio, requested, rel_tol=1e-9)
    note = f"sent {name}={value!r}; the model chooses the pixel size"
    if not exact:
        note = (
            f"{size} has aspect ratio {requested:.3f}; nearest offered is {value} ({ratio:.3f}); "
            + note
        )
    return SizePlan(size, {name: value}, f"aspect ratio {value}", not exact, note)


@functools.lru_cache(maxsize=512)
def capability_for(endpoint_id: str) -> SizeCapability:
    """The size capability of a bound endpoint, from its schema and the registry's size data
    (cached: building the JSON schema costs milliseconds, on every ``images.generate``)."""
    from falbind.models.bindings import ENDPOINTS, sizes as _sizes

    spec = ENDPOINTS[endpoint_id]
    limits = _sizes.SIZE_LIMITS.get(spec.id)
    extra = SizeLimits(*limits) if limits is not None else None
    return SizeCapability.of(
        spec.input_model, _sizes.SIZE_FIELDS, _sizes.ASPECT_RATIO_FIELDS, extra
    )


def plan_for(endpoint_id: str, size: str, *, strict: bool = False) -> SizePlan:
    """``plan_size`` for a bound endpoint."""
    from falbind.models.bindings import sizes as _sizes

    return plan_size(
        capability_for(endpoint_id), size, _sizes.PRESETS, model=endpoint_id, strict=strict
    )


def size_table(endpoint_ids: list[str], sizes: tuple[str, ...] | None = None) -> str:
    """A Markdown table: what each OpenAI size becomes on each endpoint (``*`` = adjusted)."""
    from falbind.models.bindings import sizes as _sizes

    columns = sizes or _sizes.OPENAI_SIZES
    lines = ["| endpoint | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for endpoint_id in endpoint_ids:
        cells = []
        for size in columns:
            plan = plan_for(endpoint_id, size)
            cells.append(plan.delivered + (" *" if plan.adjusted else ""))
        lines.append(f"| `{endpoint_id}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
