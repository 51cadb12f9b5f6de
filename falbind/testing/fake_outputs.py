"""Plausible outputs for the fake fal server, built from an endpoint's Output model.

The model's JSON schema is walked: required fields get plausible values (enums their first
value, numbers within their bounds), file objects (anything with a ``url``) point back at the
fake server, where images are real PNG bytes of the requested size. With ``sync_mode: true``
files are ``data:`` URIs instead, as fal does.
"""

from __future__ import annotations

import base64
import functools
import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel

__all__ = ["FakeFiles", "OutputContext", "png_bytes", "synthesize_output"]

_SIZE_PRESETS: Final = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
_MAX_SIDE: Final = 2048
_MAX_DEPTH: Final = 12
_MAX_IMAGES: Final = 8


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.lru_cache(maxsize=32)
def png_bytes(width: int, height: int) -> bytes:
    """A real RGB PNG of ``width`` × ``height`` pixels: two-colour horizontal bands."""
    band_a = b"\x00" + bytes((40, 90, 160)) * width
    band_b = b"\x00" + bytes((230, 160, 60)) * width
    raw = b"".join(band_a if (y // 32) % 2 == 0 else band_b for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


class FakeFiles:
    """The files the fake server serves under ``/files/``: name → (content type, bytes)."""

    VIDEO: Final = ("video.mp4", "video/mp4")
    AUDIO: Final = ("audio.wav", "audio/wav")
    OTHER: Final = ("file.bin", "application/octet-stream")

    @staticmethod
    def image_name(width: int, height: int) -> str:
        return f"image-{width}x{height}.png"

    @staticmethod
    def get(name: str) -> tuple[str, bytes] | None:
        """The content type and bytes of ``name``, or ``None`` if the server has no such file."""
        if name.startswith("image-") and name.endswith(".png"):
            size = name[len("image-") : -len(".png")]
            width, _, height = size.partition("x")
            if width.isdigit() and height.isdigit():
                w, h = int(width), int(height)
                if 0 < w <= _MAX_SIDE and 0 < h <= _MAX_SIDE:
                    return "image/png", png_bytes(w, h)
            return None
        if name == FakeFiles.VIDEO[0]:
            return FakeFiles.VIDEO[1], b"\x00\x00\x00\x18ftypmp42" + bytes(16)
        if name == FakeFiles.AUDIO[0]:
            return FakeFiles.AUDIO[1], b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(16)
        if name == FakeFiles.OTHER[0]:
            return FakeFiles.OTHER[1], b"falbind fake file\n"
        return None


@dataclass(frozen=True, slots=True)
class OutputContext:
    """What an output depends on: where files are served, the request's size, count and mode."""

    file_base: str
    width: int = 512
    height: int = 512
    count: int = 1
    sync_mode: bool = False

    @classmethod
    def from_input(cls, file_base: str, body: Mapping[str, Any]) -> OutputContext:
        """The context for a request ``body``: image size, ``num_images`` and ``sync_mode``."""
        width, height = 512, 512
        size = body.get("image_size")
        if isinstance(size, str) and size in _SIZE_PRESETS:
            width, height = _SIZE_PRESETS[size]
        elif isinstance(size, Mapping):
            width, height = _side(size.get("width"), width), _side(size.get("height"), height)
        else:
            width, height = _side(body.get("width"), width), _side(body.get("height"), height)
        count = body.get("num_images")
        return cls(
            file_base=file_base,
            width=width,
            height=height,
            count=min(count, _MAX_IMAGES) if isinstance(count, int) and count > 0 else 1,
            sync_mode=body.get("sync_mode") is True,
        )


def _side(value: object, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return min(value, _MAX_SIDE)
    return default


def synthesize_output(
    model: type[BaseModel], context: OutputContext, *, every_field: bool = False
) -> dict[str, Any]:
    """A JSON output for ``model``: every required field (every field with ``every_field``),
    plus the usual file fields. Works for any model built from fal's schemas (an Input model
    too)."""
    schema = _schema(model)
    value = _Synth(schema.get("$defs", {}), context, every_field).value(schema, "", 0)
    assert isinstance(value, dict)
    return value


@functools.cache
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(mode="validation")


_FORMATTED: Final = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "12:00:00",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "email": "fake@example.com",
}
_FILE_FIELDS: Final = ("url", "content_type", "file_name", "file_size", "width", "height")


class _Synth:
    def __init__(
        self, defs: Mapping[str, Any], context: OutputContext, every_field: bool = False
    ) -> None:
        self._defs = defs
        self._context = context
        self._every_field = every_field

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in schema:
            ref: str = schema["$ref"]
            schema = {
                **self._defs[ref.rsplit("/", 1)[-1]],
                **{k: v for k, v in schema.items() if k != "$ref"},
            }
        return schema

    def value(self, schema: Mapping[str, Any], name: str, depth: int) -> Any:
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self._resolve(option) for option in schema[key]]
                chosen = next((o for o in options if o.get("type") != "null"), options[0])
                return self.value(chosen, name, depth)
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self._resolve(part))
            return self.value(merged, name, depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object" or "properties" in schema:
            return self._object(schema, name, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        if kind == "string":
            return self._string(schema, name)
        if kind == "integer":
            return int(self._number(schema, 1))
        if kind == "number":
            return float(self._number(schema, 1.0))
        if kind == "boolean":
            return False
        if "default" in schema:
            return schema["default"]
        return None

    def _object(self, schema: Mapping[str, Any], name: str, depth: int) -> dict[str, Any]:
        properties: Mapping[str, Any] = schema.get("properties", {})
        if depth > _MAX_DEPTH:
            return {}
        if "url" in properties:
            return self._file(schema, name)
        keys = properties if self._every_field else schema.get("required", [])
        return {key: self.value(properties[key], key, depth + 1) for key in keys}

    def _array(self, schema: Mapping[str, Any], name: str, depth: int) -> list[Any]:
        low = schema.get("minItems", 0)
        high = schema.get("maxItems")
        count = self._context.count if name == "images" else 1
        count = max(count, low)
        if high is not None:
            count = min(count, high)
        if "prefixItems" in schema:
            return [self.value(item, name, depth + 1) for item in schema["prefixItems"]]
        items = schema.get("items", {})
        return [self.value(items, name, depth + 1) for _ in range(count)]

    def _string(self, schema: Mapping[str, Any], name: str) -> str:
        lowered = name.lower()
        formatted = _FORMATTED.get(schema.get("format", "").rstrip("0123456789"))
        if formatted is not None:
            return formatted
        if "url" in lowered:
            return self._file_url(FakeFiles.OTHER[0], FakeFiles.OTHER[1])
        text = "a fake prompt" if "prompt" in lowered else f"fake {name or 'text'}"
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        text = text.ljust(low, "x")
        return text[:high] if high is not None else text

    @staticmethod
    def _number(schema: Mapping[str, Any], preferred: float) -> float:
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        value = preferred
        if low is not None and value <= low:
            value = low + (1 if "exclusiveMinimum" in schema else 0)
        if high is not None and value >= high:
            value = high - (1 if "exclusiveMaximum" in schema else 0)
            if low is not None and value <= low:
                value = (low + high) / 2
        step = schema.get("multipleOf")
        if step:  # the smallest multiple at or above the value (1 for 8: 8)
            value = math.ceil(value / step) * step
        return value

    def _file(self, schema: Mapping[str, Any], name: str) -> dict[str, Any]:
        properties: Mapping[str, Any] = schema.get("properties", {})
        hint = f"{name} {schema.get('title', '')}".lower()
        context = self._context
        is_image = "width" in properties or "height" in properties or "image" in hint
        if is_image:
            file_name, content_type = (
                FakeFiles.image_name(context.width, context.height),
                "image/png",
            )
        elif "video" in hint:
            file_name, content_type = FakeFiles.VIDEO
        elif "audio" in hint:
            file_name, content_type = FakeFiles.AUDIO
        else:
            file_name, content_type = FakeFiles.OTHER
        content = FakeFiles.get(file_name)
        assert content is not None
        usual = {
            "url": self._file_url(file_name, content_type),
            "content_type": content_type,
            "file_name": file_name,
            "file_size": len(content[1]),
            "width": context.width,
            "height": context.height,
        }
        result: dict[str, Any] = {}
        for key in (*_FILE_FIELDS, *schema.get("required", [])):
            if key in result or key not in properties:
                continue
            fits = key in usual and self._fits(properties[key], usual[key])
            result[key] = usual[key] if fits else self.value(properties[key], key, _MAX_DEPTH)
        return result

    def _fits(self, schema: Mapping[str, Any], value: Any) -> bool:
        schema = self._resolve(schema)
        options = [self._resolve(o) for o in schema.get("anyOf", [schema])]
        wanted = "integer" if isinstance(value, int) else "string"
        return any(
            o.get("type") == wanted and "enum" not in o and "const" not in o for o in options
        )

    def _file_url(self, file_name: str, content_type: str) -> str:
        if self._context.sync_mode:
            content = FakeFiles.get(file_name)
            assert content is not None
            return f"data:{content_type};base64,{base64.b64encode(content[1]).decode('ascii')}"
        return f"{self._context.file_base}/files/{file_name}"
