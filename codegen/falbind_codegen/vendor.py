"""Vendoring: copy fal OpenAPI documents into the registry and list them in ``models.yaml``.

The documents are copied byte for byte (never edited: quirks are fixed by declared patches).
``models.yaml`` is rewritten in one canonical form (entries sorted by id), so an addition is a
small, reviewable diff.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from falbind.tooling.limits import MAX_DOCUMENT_BYTES, InputLimitError, loads_json, read_bounded

from .naming import is_valid_endpoint_id, schema_filename
from .registry import MODELS_FILE, SCHEMAS_DIR, EndpointEntry, RegistryError

__all__ = [
    "VendoredDocument",
    "document_bytes",
    "parse_document",
    "read_document",
    "store_schema",
    "write_models_file",
]

MODELS_HEADER = """\
# falbind registry: one entry per fal endpoint we bind.
#   id          fal's endpoint id; its OpenAPI document is schemas/<id with / as __>.json
#   category    fal's category (text-to-image, image-to-video, ...)
#   name        optional Python name (client method; the class stem is its PascalCase)
#   aliases     optional short names accepted wherever an endpoint id is
#   patches     optional JSON Patch operations on the document, each with a `reason`
#   size_limits optional {min_side, max_side, multiple_of, reason} for custom sizes, when the
#               model states limits in prose that its schema does not carry
# Edit by hand or with `falbind add`; then run `falbind generate`.
"""


@dataclass(frozen=True)
class VendoredDocument:
    endpoint_id: str
    category: str
    raw: bytes


def document_bytes(document: dict[str, Any]) -> bytes:
    """A document fetched as JSON, serialised as fal-openapi stores fal's responses (2-space
    indent, UTF-8, trailing newline), so fetched and downloaded copies are byte-identical."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def read_document(path: Path, endpoint_id: str | None = None) -> VendoredDocument:
    """Read a fal OpenAPI document; its id and category come from ``info.x-fal-metadata``."""
    try:
        raw = read_bounded(path, MAX_DOCUMENT_BYTES, "an OpenAPI document")
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except InputLimitError as exc:
        raise RegistryError(str(exc)) from None
    return parse_document(raw, str(path), endpoint_id)


def parse_document(raw: bytes, source: str, endpoint_id: str | None = None) -> VendoredDocument:
    """Check ``raw`` is a fal OpenAPI document (of ``endpoint_id``, when given); ``source`` names
    it in errors. A document that names a different endpoint than ``endpoint_id`` is refused,
    and so is one over the size or nesting limits of :mod:`falbind.tooling.limits`."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise RegistryError(f"{source}: over the {MAX_DOCUMENT_BYTES} byte limit for a document")
    try:
        document = loads_json(raw, source)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{source}: not valid JSON: {exc}") from exc
    except InputLimitError as exc:
        raise RegistryError(str(exc)) from None
    info = document.get("info") if isinstance(document, dict) else None
    meta = info.get("x-fal-metadata") if isinstance(info, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    found = meta.get("endpointId")
    if endpoint_id and isinstance(found, str) and found != endpoint_id:
        raise RegistryError(f"{source}: the document describes {found!r}, not {endpoint_id!r}")
    endpoint_id = endpoint_id or (found if isinstance(found, str) else None)
    if not endpoint_id:
        raise RegistryError(f"{source}: no endpoint id (info.x-fal-metadata.endpointId); pass one")
    if not is_valid_endpoint_id(endpoint_id):
        raise RegistryError(f"{source}: {endpoint_id!r} is not a fal endpoint id")
    if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
        raise RegistryError(f"{source}: not an OpenAPI document (no paths)")
    category = meta.get("category")
    return VendoredDocument(
        endpoint_id, category if isinstance(category, str) and category else "unknown", raw
    )


def _entry_data(entry: EndpointEntry) -> dict[str, Any]:
    data = entry.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data["id"], data["category"] = entry.id, entry.category
    ordered: dict[str, Any] = {
        key: data[key] for key in ("id", "category", "name", "aliases") if key in data
    }
    if entry.size_limits is not None:
        ordered["size_limits"] = entry.size_limits.model_dump(mode="json", exclude_defaults=True)
    if entry.patches:
        ordered["patches"] = [
            p.model_dump(mode="json", by_alias=True, exclude_none=True) for p in entry.patches
        ]
    return ordered


def write_models_file(root: Path, entries: Iterable[EndpointEntry]) -> None:
    """Write ``models.yaml`` canonically (sorted by id) via a temporary file and a rename."""
    data = {"endpoints": [_entry_data(e) for e in sorted(entries, key=lambda e: e.id)]}
    text = MODELS_HEADER + yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False
    )
    target = root / MODELS_FILE
    temporary = target.with_suffix(".yaml.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(target)


def store_schema(root: Path, document: VendoredDocument) -> Path:
    folder = root / SCHEMAS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / schema_filename(document.endpoint_id)
    target.write_bytes(document.raw)
    return target
