"""The registry: which fal endpoints we bind, their vendored documents, size data, patches.

Layout (paths relative to the registry folder)::

    models.yaml              endpoints: [{id, category, name?, aliases?, patches?}]
    sizes.yaml               optional: fal's image size presets and the OpenAI sizes we map
                             (default: falbind's own, see ``default_sizes_path``)
    schemas/<id with / as __>.json   the endpoint's OpenAPI document exactly as fal serves it

Loading validates everything up front and raises :class:`RegistryError` naming the file, the
entry (index, id and line) and what is wrong; nothing is written before the registry is valid.
"""

from __future__ import annotations

import copy
import hashlib
import json
import keyword
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from falbind.tooling.limits import (
    MAX_DOCUMENT_BYTES,
    InputLimitError,
    check_nesting,
    loads_json,
    read_bounded,
)

from .naming import EndpointNames, endpoint_names, is_valid_endpoint_id, schema_filename

__all__ = [
    "EndpointEntry",
    "ImageFields",
    "Patch",
    "Registry",
    "RegistryError",
    "SizeLimitsEntry",
    "SizePreset",
    "SizesFile",
    "load_registry",
]

MODELS_FILE = "models.yaml"
SIZES_FILE = "sizes.yaml"
SCHEMAS_DIR = "schemas"

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RegistryError(ValueError):
    """The registry is invalid; the message names the file, the entry and the problem."""


class Patch(BaseModel):
    """One JSON Patch (RFC 6902) operation on the vendored document, with the reason for it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    reason: str = Field(min_length=1)
    op: Literal["add", "remove", "replace", "move", "copy", "test"]
    path: str
    value: Any = None
    from_: str | None = Field(default=None, alias="from")

    def as_operation(self) -> dict[str, Any]:
        operation: dict[str, Any] = {"op": self.op, "path": self.path}
        if self.op in ("add", "replace", "test"):
            operation["value"] = self.value
        if self.op in ("move", "copy"):
            operation["from"] = self.from_
        return operation


class SizeLimitsEntry(BaseModel):
    """Limits on a custom ``{width, height}`` that the model documents in prose only (e.g.
    "Width and height must be between 512 and 2048"), with where they come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    reason: str = Field(min_length=1)
    min_side: int = Field(default=1, gt=0)
    max_side: int | None = Field(default=None, gt=0)
    multiple_of: int = Field(default=1, gt=0)


class EndpointEntry(BaseModel):
    """One bound endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    category: str = Field(min_length=1)
    name: str | None = None
    """Overrides the Python name (client method; class stem is its PascalCase)."""
    aliases: tuple[str, ...] = ()
    """Short names users may pass as ``model=`` (e.g. ``flux-ultra``)."""
    patches: tuple[Patch, ...] = ()
    size_limits: SizeLimitsEntry | None = None

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not is_valid_endpoint_id(value):
            raise ValueError(
                f"{value!r} is not a fal endpoint id (owner/path, e.g. fal-ai/flux/dev)"
            )
        return value

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        if value is not None and (
            not value.isidentifier() or keyword.iskeyword(value) or value != value.lower()
        ):
            raise ValueError(f"name {value!r} must be a lower-case Python identifier")
        return value

    @property
    def names(self) -> EndpointNames:
        return endpoint_names(self.id, self.name)

    def fingerprint(self) -> str:
        """sha256 of what shapes the entry's endpoint module: id, name and patches. Category,
        aliases and size limits only reach the package-level files, which are always rebuilt,
        so editing them re-renders no endpoint."""
        data = self.model_dump(mode="json", by_alias=True, include={"id", "name", "patches"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


class SizePreset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class ImageFields(BaseModel):
    """Names of the request fields that OpenAI-style image generation maps onto, in order of
    preference; a model uses the first one its schema has."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    size: tuple[str, ...] = Field(min_length=1)
    """Takes a preset name or ``{width, height}`` (``image_size``)."""
    aspect_ratio: tuple[str, ...] = Field(min_length=1)
    """Takes a ``"W:H"`` string (``aspect_ratio``)."""
    count: tuple[str, ...] = Field(min_length=1)
    """How many images one request makes (``num_images``)."""
    sync_mode: tuple[str, ...] = Field(min_length=1)
    """Returns images as data URIs (``sync_mode``)."""


class SizesFile(BaseModel):
    """fal's named image sizes, the OpenAI-style sizes users pass, and the fields they map to."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    presets: dict[str, SizePreset]
    openai_sizes: tuple[str, ...]
    fields: ImageFields

    @field_validator("openai_sizes")
    @classmethod
    def _sizes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for size in value:
            width, sep, height = size.partition("x")
            if size != "auto" and not (sep and width.isdigit() and height.isdigit()):
                raise ValueError(f"{size!r} is not WIDTHxHEIGHT or 'auto'")
        return value


class _ModelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    endpoints: list[dict[str, Any]]


@dataclass(frozen=True)
class Registry:
    """A loaded, validated registry."""

    root: Path
    entries: tuple[EndpointEntry, ...]
    sizes: SizesFile

    def __iter__(self) -> Iterator[EndpointEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, endpoint_id: str) -> EndpointEntry | None:
        return next((e for e in self.entries if e.id == endpoint_id), None)

    def schema_path(self, entry: EndpointEntry) -> Path:
        return self.root / SCHEMAS_DIR / schema_filename(entry.id)

    def schema_bytes(self, entry: EndpointEntry) -> bytes:
        path = self.schema_path(entry)
        try:
            return read_bounded(path, MAX_DOCUMENT_BYTES, f"the schema of {entry.id}")
        except InputLimitError as exc:
            raise RegistryError(str(exc)) from None

    def document(self, entry: EndpointEntry, raw: bytes | None = None) -> dict[str, Any]:
        """The entry's document with its declared patches applied."""
        path = self.schema_path(entry)
        try:
            document = loads_json(raw if raw is not None else self.schema_bytes(entry), str(path))
        except (OSError, ValueError) as exc:
            if isinstance(exc, InputLimitError):
                raise RegistryError(str(exc)) from None
            raise RegistryError(f"{path}: cannot read the schema of {entry.id}: {exc}") from exc
        if not isinstance(document, dict):
            raise RegistryError(f"{path}: the schema of {entry.id} is not a JSON object")
        return apply_patches(document, entry, path)


def apply_patches(document: dict[str, Any], entry: EndpointEntry, where: Path) -> dict[str, Any]:
    if not entry.patches:
        return document
    import jsonpatch  # only the generator needs it

    try:
        patched = jsonpatch.apply_patch(
            copy.deepcopy(document), [p.as_operation() for p in entry.patches]
        )
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise RegistryError(f"{where}: a patch of {entry.id} does not apply: {exc}") from exc
    if not isinstance(patched, dict):
        raise RegistryError(f"{where}: the patches of {entry.id} did not leave an object")
    return patched


def _read_yaml(path: Path) -> tuple[Any, Any]:
    """The YAML data and its node tree (for line numbers)."""
    try:
        text = read_bounded(path, MAX_DOCUMENT_BYTES, "a registry file").decode("utf-8")
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except InputLimitError as exc:
        raise RegistryError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{path}: not UTF-8: {exc}") from None
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
        check_nesting(data, str(path))
    except RecursionError:
        raise RegistryError(f"{path}: nested too deeply; refused") from None
    except InputLimitError as exc:
        raise RegistryError(str(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RegistryError(f"{path}: invalid YAML{where}: {problem}") from exc
    return data, node


def _entry_lines(node: Any) -> list[int]:
    """1-based line of each item of the top-level ``endpoints`` sequence."""
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if getattr(key, "value", None) == "endpoints" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown key {location!r}"
    if error["type"] == "missing":
        return f"missing key {location!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{location}: {message}" if location else message


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(_describe(error) for error in exc.errors())


def default_sizes_path() -> Path:
    """The size data a registry without its own ``sizes.yaml`` uses: falbind's, shipped in the
    wheel as ``falbind_codegen/default_sizes.yaml``, or ``registry/sizes.yaml`` in a checkout."""
    packaged = Path(__file__).with_name("default_sizes.yaml")
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "registry" / SIZES_FILE


def _load_sizes(root: Path) -> SizesFile:
    path = root / SIZES_FILE
    if not path.exists():
        path = default_sizes_path()
    data, _ = _read_yaml(path)
    try:
        return SizesFile.model_validate(data)
    except ValidationError as exc:
        raise RegistryError(f"{path}: {_validation_message(exc)}") from None


def _load_entries(root: Path) -> tuple[EndpointEntry, ...]:
    path = root / MODELS_FILE
    data, node = _read_yaml(path)
    try:
        raw_entries = _ModelsFile.model_validate(data).endpoints
    except ValidationError as exc:
        raise RegistryError(f"{path}: {_validation_message(exc)}") from None
    lines = _entry_lines(node)
    entries: list[EndpointEntry] = []
    for index, raw in enumerate(raw_entries):
        where = f"{path}: entry {index}"
        if index < len(lines):
            where += f" (line {lines[index]})"
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            where += f" {raw['id']}"
        try:
            entries.append(EndpointEntry.model_validate(raw))
        except ValidationError as exc:
            raise RegistryError(f"{where}: {_validation_message(exc)}") from None
    return tuple(entries)


def _check_unique(entries: tuple[EndpointEntry, ...], path: Path) -> None:
    """Ids, modules, class stems and Python names are unique; an alias names one endpoint only."""
    seen: dict[str, dict[str, str]] = {"id": {}, "module": {}, "class stem": {}, "python name": {}}
    for entry in entries:
        if entry.id in seen["id"]:
            raise RegistryError(f"{path}: entry {entry.id}: duplicate id {entry.id!r}")
        seen["id"][entry.id] = entry.id
        names = entry.names
        for kind, value in (
            ("module", names.module),
            ("class stem", names.stem),
            ("python name", names.method),
        ):
            owner = seen[kind].setdefault(value, entry.id)
            if owner != entry.id:
                raise RegistryError(
                    f"{path}: entry {entry.id}: {kind} {value!r} clashes with {owner}; "
                    "set a distinct `name:` in the registry"
                )
    aliases: dict[str, str] = {}
    for entry in entries:
        for alias in entry.aliases:
            owner = aliases.setdefault(alias, entry.id)
            if owner != entry.id or (alias in seen["id"] and alias != entry.id):
                raise RegistryError(
                    f"{path}: entry {entry.id}: alias {alias!r} already names {owner if owner != entry.id else alias}"
                )


def _schema_files(root: Path) -> frozenset[str]:
    """Names of the regular files in the schemas folder (one directory scan, not a stat per
    entry: `falbind check` loads the registry every time)."""
    try:
        with os.scandir(root / SCHEMAS_DIR) as scan:
            return frozenset(item.name for item in scan if item.is_file())
    except OSError:
        return frozenset()


def load_registry(root: Path | str) -> Registry:
    """Load and validate the registry at ``root``."""
    root = Path(root)
    if not (root / MODELS_FILE).is_file():
        raise RegistryError(f"{root / MODELS_FILE}: no such file (is {root} a falbind registry?)")
    entries = _load_entries(root)
    _check_unique(entries, root / MODELS_FILE)
    present = _schema_files(root)
    missing = [e.id for e in entries if schema_filename(e.id) not in present]
    if missing:
        raise RegistryError(
            f"{root / MODELS_FILE}: entry {missing[0]}: missing schema file "
            f"{root / SCHEMAS_DIR / schema_filename(missing[0])}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    return Registry(root=root, entries=entries, sizes=_load_sizes(root))
