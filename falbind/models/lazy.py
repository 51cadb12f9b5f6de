"""Module-level ``__getattr__`` helpers: names imported on first use, so ``import falbind`` (and
``import falbind_generated``) loads neither pydantic nor httpx nor any endpoint module."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from .index import EndpointIndex

__all__ = ["model_attribute", "runtime_attribute"]


def runtime_attribute(exports: Mapping[str, str], name: str, module: str) -> Any:
    """``name`` from the module ``exports`` maps it to (a dotted path), or, when ``exports`` maps
    it to ``module`` itself, the submodule ``module.name``."""
    try:
        target = exports[name]
    except KeyError:
        raise AttributeError(f"module {module!r} has no attribute {name!r}") from None
    if target == module:
        return importlib.import_module(f"{module}.{name}")
    return getattr(importlib.import_module(target), name)


def model_attribute(index: EndpointIndex, name: str, module: str) -> Any:
    """The ``<Stem>Input``/``<Stem>Output`` class called ``name`` among ``index``'s endpoints."""
    for suffix in ("Input", "Output"):
        if name.endswith(suffix):
            spec = index.by_class_stem(name.removesuffix(suffix))
            if spec is not None:
                return spec.input_model if suffix == "Input" else spec.output_model
    raise AttributeError(f"module {module!r} has no attribute {name!r}")
