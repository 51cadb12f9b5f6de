"""The endpoint index: ``falbind.ENDPOINTS``, a read-only mapping from fal endpoint id to spec.

Built from a plain tuple table written by the generator (``<package>/_index.py``), so
``import falbind`` costs one tuple literal and imports neither pydantic nor any endpoint module;
an endpoint's module (its pydantic models) is imported the first time a spec's models are asked
for. The index is the only way the runtime reaches generated modules: each index knows the
package it was generated into (``falbind_generated`` for falbind's own bindings, any name for a
private registry's).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING

from falbind._error_base import FalError

from .suggest import suggest_names

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["EndpointIndex", "EndpointSpec", "UnknownEndpointError"]


class UnknownEndpointError(FalError, KeyError):
    """An endpoint id that the registry does not bind (a ``FalError`` and a ``KeyError``)."""

    def __init__(self, endpoint_id: str, suggestions: list[str]) -> None:
        self.endpoint_id = endpoint_id
        self.suggestions = suggestions
        message = f"{endpoint_id!r} is not a bound fal endpoint"
        if suggestions:
            message += "; did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """What falbind knows about one fal endpoint."""

    id: str
    """fal's endpoint id, e.g. ``fal-ai/flux/schnell``."""
    name: str
    """The Python name: the client method and the module stem, e.g. ``flux_schnell``."""
    category: str
    """fal's category, e.g. ``text-to-image``."""
    module_name: str
    """The module under ``<package>.endpoints`` that holds the models."""
    class_stem: str
    """The models are ``<class_stem>Input`` and ``<class_stem>Output``."""
    package: str
    """The generated package the endpoint module lives in."""
    _module: list[ModuleType] = field(default_factory=list, repr=False, compare=False)
    _models: dict[str, type[BaseModel]] = field(default_factory=dict, repr=False, compare=False)
    """The Input and Output models once looked up (every call reads them)."""

    @property
    def module_path(self) -> str:
        """The dotted path of the endpoint's module, e.g. ``falbind_generated.endpoints.x``."""
        return f"{self.package}.endpoints.{self.module_name}"

    @property
    def module(self) -> ModuleType:
        if not self._module:
            self._module.append(importlib.import_module(self.module_path))
        return self._module[0]

    @property
    def input_model(self) -> type[BaseModel]:
        return self._model("Input")

    @property
    def output_model(self) -> type[BaseModel]:
        return self._model("Output")

    def _model(self, role: str) -> type[BaseModel]:
        model = self._models.get(role)
        if model is None:
            model = self._models[role] = getattr(self.module, f"{self.class_stem}{role}")
        return model


class EndpointIndex(Mapping[str, EndpointSpec]):
    """Read-only mapping ``endpoint id -> EndpointSpec``; also looks up by Python name."""

    __slots__ = ("_by_id", "_by_name", "_by_stem", "_rows", "aliases", "package")

    def __init__(
        self,
        rows: tuple[tuple[str, str, str, str, str], ...],
        aliases: Mapping[str, str] | None = None,
        *,
        package: str,
    ) -> None:
        self._rows = rows
        self.package = package
        """The generated package whose ``endpoints`` sub-package holds the models."""
        self.aliases: Mapping[str, str] = MappingProxyType(dict(aliases or {}))
        """Short names from the registry (``flux-ultra``) -> endpoint id."""
        self._by_id: dict[str, EndpointSpec] | None = None
        self._by_name: dict[str, EndpointSpec] | None = None
        self._by_stem: dict[str, EndpointSpec] | None = None

    def _specs(self) -> dict[str, EndpointSpec]:
        if self._by_id is None:
            specs = (EndpointSpec(*row, self.package) for row in self._rows)
            self._by_id = {spec.id: spec for spec in specs}
        return self._by_id

    def __getitem__(self, endpoint_id: str) -> EndpointSpec:
        try:
            return self._specs()[endpoint_id]
        except KeyError:
            raise UnknownEndpointError(endpoint_id, self.suggest(endpoint_id)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs())

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, endpoint_id: object) -> bool:
        return endpoint_id in self._specs()

    def __repr__(self) -> str:
        return f"<EndpointIndex of {len(self)} fal endpoints>"

    def by_name(self, name: str) -> EndpointSpec:
        """The spec whose Python name is ``name`` (e.g. ``flux_schnell``)."""
        if self._by_name is None:
            self._by_name = {spec.name: spec for spec in self._specs().values()}
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownEndpointError(name, suggest_names(name, list(self._by_name))) from None

    def canonical_id(self, name: str) -> str:
        """``name`` with a registry alias replaced by its endpoint id (other names unchanged)."""
        return self.aliases.get(name, name)

    def resolve(self, name: str) -> EndpointSpec:
        """The spec for an endpoint id, a registry alias or a Python name (``flux_schnell``);
        anything else raises :class:`UnknownEndpointError` with a did-you-mean."""
        endpoint_id = self.canonical_id(name)
        specs = self._specs()
        if endpoint_id in specs:
            return specs[endpoint_id]
        try:
            return self.by_name(name)
        except UnknownEndpointError:
            raise UnknownEndpointError(name, self.suggest(endpoint_id)) from None

    def by_class_stem(self, stem: str) -> EndpointSpec | None:
        """The spec whose models are ``<stem>Input``/``<stem>Output``, if any."""
        if self._by_stem is None:
            self._by_stem = {spec.class_stem: spec for spec in self._specs().values()}
        return self._by_stem.get(stem)

    def suggest(self, name: str) -> list[str]:
        """The closest endpoint ids and aliases to ``name``."""
        return suggest_names(name, [*self._specs(), *self.aliases])
