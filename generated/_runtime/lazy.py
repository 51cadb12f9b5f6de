"""Module-level ``__getattr__`` of ``falbind``: public runtime names and endpoint models, each
imported on first use."""

from __future__ import annotations

import importlib
from typing import Any

from .index import EndpointIndex

# Public name -> the runtime module that defines it.
RUNTIME_EXPORTS: dict[str, str] = {
    "RequestModel": "falbind._runtime.models",
    "ResponseModel": "falbind._runtime.models",
}


def lazy_attribute(index: EndpointIndex, name: str, module: str) -> Any:
    """A runtime export, or the ``<Stem>Input``/``<Stem>Output`` class called ``name``."""
    if name in RUNTIME_EXPORTS:
        return getattr(importlib.import_module(RUNTIME_EXPORTS[name]), name)
    for suffix in ("Input", "Output"):
        if name.endswith(suffix):
            spec = index.by_class_stem(name.removesuffix(suffix))
            if spec is not None:
                return spec.input_model if suffix == "Input" else spec.output_model
    raise AttributeError(f"module {module!r} has no attribute {name!r}")
