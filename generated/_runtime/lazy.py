"""Module-level ``__getattr__`` support: ``falbind.FluxSchnellInput`` imports one module on demand."""

from __future__ import annotations

from .index import EndpointIndex


def model_by_class_name(index: EndpointIndex, name: str, module: str) -> type:
    """The ``<Stem>Input``/``<Stem>Output`` class called ``name``, else ``AttributeError``."""
    for suffix in ("Input", "Output"):
        if name.endswith(suffix):
            spec = index.by_class_stem(name.removesuffix(suffix))
            if spec is not None:
                return spec.input_model if suffix == "Input" else spec.output_model
    raise AttributeError(f"module {module!r} has no attribute {name!r}")
