"""``falbind add ENDPOINT_ID``: vendor one endpoint's OpenAPI document and bind it.

Everything that can be checked is checked before anything is written: the id grammar, that the
id is new and its Python names do not clash, that the document is JSON, describes this id and
normalises (no dangling ``$ref``, roots present). Only then are the registry and the generated
tree updated, through :func:`falbind_codegen.update.apply_update`, which renders just the new
endpoint, checks the whole tree, and restores the registry if generation fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from .catalogue import DEFAULT_OPENAPI_URL, CatalogueClient, CatalogueError, safe_url
from .naming import is_valid_endpoint_id
from .normalise import NormalisedEndpoint, UnbindableEndpoint, normalise_document
from .registry import (
    MODELS_FILE,
    EndpointEntry,
    Registry,
    RegistryError,
    _check_unique as check_unique,  # the loader's clash rules, reused as is
    load_registry,
)
from .update import RegistryUpdate, UpdateResult, apply_update
from .vendor import VendoredDocument, document_bytes, parse_document, read_document

__all__ = [
    "AddError",
    "AddReport",
    "add_command",
    "add_endpoint",
    "load_document",
    "new_entry",
    "normalise_entry",
    "prepare_entry",
]

Echo = Callable[[str], None]


class AddError(RegistryError):
    """``falbind add`` refused; nothing was written. The message is one line."""


@dataclass(frozen=True)
class AddReport:
    """What ``falbind add`` bound."""

    entry: EndpointEntry
    package: str
    """The import name of the generated package (its folder's name)."""
    input_class: str
    output_class: str
    parameters: int
    required: int
    update: UpdateResult

    def lines(self) -> list[str]:
        names = self.entry.names
        return [
            f"added {self.entry.id} ({self.entry.category})",
            f"  module:     {self.package}.endpoints.{names.module}",
            f"  classes:    {self.input_class}, {self.output_class}",
            f"  method:     {names.method}",
            f"  parameters: {self.parameters} ({self.required} required)",
            f"  {self.update.summary()}",
        ]


def load_document(
    endpoint_id: str, *, schema: Path | None, fetch: bool, openapi_url: str = DEFAULT_OPENAPI_URL
) -> VendoredDocument:
    """The endpoint's document from ``schema`` or, with ``fetch``, from fal's per-endpoint URL."""
    if schema is not None:
        return read_document(schema, endpoint_id)
    if not fetch:
        raise AddError("give the endpoint's OpenAPI document with --schema FILE, or use --fetch")
    try:
        with CatalogueClient(openapi_url=openapi_url) as client:
            document = client.fetch_openapi(endpoint_id)
    except CatalogueError as exc:
        raise AddError(f"cannot fetch the OpenAPI document of {endpoint_id}: {exc}") from None
    source = f"{safe_url(openapi_url)} ({endpoint_id})"
    return parse_document(document_bytes(document), source, endpoint_id)


def new_entry(registry: Registry, endpoint_id: str, category: str) -> EndpointEntry:
    """A registry entry for a new endpoint; raises :class:`AddError` if the id is known already
    or its Python names clash with a registered endpoint's."""
    models = registry.root / MODELS_FILE
    if registry.get(endpoint_id) is not None:
        raise AddError(
            f"{endpoint_id} is already in {models}; `falbind refresh` updates its document"
        )
    try:
        entry = EndpointEntry(id=endpoint_id, category=category)
    except ValidationError as exc:
        reason = "; ".join(str(e["msg"]) for e in exc.errors())
        raise AddError(f"{endpoint_id}: {reason}") from None
    try:
        check_unique((*registry.entries, entry), models)
    except RegistryError as exc:
        raise AddError(str(exc)) from None
    return entry


def normalise_entry(registry: Registry, entry: EndpointEntry, raw: bytes) -> NormalisedEndpoint:
    """``raw`` as the generator will see it (entry's patches applied, normalised); raises
    :class:`UnbindableEndpoint` or :class:`RegistryError` (a patch that does not apply)."""
    return normalise_document(registry.document(entry, raw), entry.id, entry.names.stem)


def prepare_entry(
    registry: Registry, document: VendoredDocument, category: str | None
) -> tuple[EndpointEntry, NormalisedEndpoint]:
    """The new registry entry and its normalised document; raises :class:`AddError` if the
    endpoint is known already, clashes with one, or cannot be bound."""
    entry = new_entry(registry, document.endpoint_id, category or document.category)
    try:
        normalised = normalise_entry(registry, entry, document.raw)
    except UnbindableEndpoint as exc:
        raise AddError(f"{entry.id} cannot be bound: {exc}; nothing was changed") from None
    return entry, normalised


def add_endpoint(
    registry: Registry, out_dir: Path, document: VendoredDocument, *, category: str | None = None
) -> AddReport:
    """Add ``document``'s endpoint to ``registry`` and regenerate; see the module docstring."""
    entry, normalised = prepare_entry(registry, document, category)
    update = apply_update(
        registry.root,
        out_dir,
        RegistryUpdate(entries=(*registry.entries, entry), documents=(document,)),
        must_bind=(entry.id,),
    )
    root = normalised.schemas[normalised.input_name]
    return AddReport(
        entry=entry,
        package=out_dir.resolve().name,
        input_class=normalised.input_name,
        output_class=normalised.output_name,
        parameters=len(root.get("properties") or {}),
        required=len(root.get("required") or []),
        update=update,
    )


def add_command(
    registry_dir: Path,
    out_dir: Path,
    endpoint_id: str,
    *,
    schema: Path | None,
    fetch: bool,
    category: str | None,
    openapi_url: str | None,
    echo: Echo,
) -> int:
    """Run ``falbind add``; refusals raise :class:`AddError` (the CLI prints it, exit 2)."""
    if not is_valid_endpoint_id(endpoint_id):
        raise AddError(
            f"{endpoint_id!r} is not a fal endpoint id (owner/path, e.g. fal-ai/flux/dev)"
        )
    registry = load_registry(registry_dir)  # a broken registry is reported before any download
    document = load_document(
        endpoint_id, schema=schema, fetch=fetch, openapi_url=openapi_url or DEFAULT_OPENAPI_URL
    )
    report = add_endpoint(registry, out_dir, document, category=category)
    for line in report.lines():
        echo(line)
    return 0
