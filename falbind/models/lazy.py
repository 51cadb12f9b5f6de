"""Module-level ``__getattr__`` of ``falbind``: public runtime names and endpoint models, each
imported on first use."""

from __future__ import annotations

import importlib
from typing import Any

from .index import EndpointIndex

# The public runtime names of `falbind`, by defining module. The generator writes the matching
# TYPE_CHECKING imports into falbind/__init__.py from this table.
EXPORTS_BY_MODULE: dict[str, tuple[str, ...]] = {
    "falbind._runtime.models": ("RequestModel", "ResponseModel"),
    "falbind._runtime.client": ("AsyncFalClient", "FalClient"),
    "falbind._runtime.retry": ("RetryPolicy",),
    "falbind._runtime.errors": (
        "AuthenticationError",
        "BadRequestError",
        "FalConnectionError",
        "FalDecodeError",
        "FalError",
        "FalRequestFailedError",
        "FalStatusError",
        "FalTimeoutError",
        "FieldError",
        "NotFoundError",
        "PaymentRequiredError",
        "PermissionDeniedError",
        "RateLimitError",
        "RequestTimeoutError",
        "ServerError",
        "UnexpectedContentTypeError",
        "UnprocessableEntityError",
    ),
    "falbind._runtime.queue": (
        "AsyncQueueHandle",
        "Completed",
        "InProgress",
        "LogEntry",
        "QueueHandle",
        "QueueStatus",
        "Queued",
    ),
    "falbind._runtime.files": ("decode_data_uri", "to_data_uri"),
    "falbind._runtime.webhooks": ("WebhookPayload", "WebhookResult", "parse_webhook"),
    "falbind._runtime.sizing": ("SizeError", "SizePlan"),
    "falbind._runtime.images": ("ImageData", "ImagesResponse", "SizeInfo"),
}

# Submodules reachable as attributes without an explicit import (``falbind.testing``).
SUBMODULES = frozenset({"testing"})

# Public name -> the runtime module that defines it.
RUNTIME_EXPORTS: dict[str, str] = {
    name: module for module, names in EXPORTS_BY_MODULE.items() for name in names
}


def lazy_attribute(index: EndpointIndex, name: str, module: str) -> Any:
    """A runtime export, or the ``<Stem>Input``/``<Stem>Output`` class called ``name``."""
    if name in SUBMODULES:
        return importlib.import_module(f"{module}.{name}")
    if name in RUNTIME_EXPORTS:
        return getattr(importlib.import_module(RUNTIME_EXPORTS[name]), name)
    for suffix in ("Input", "Output"):
        if name.endswith(suffix):
            spec = index.by_class_stem(name.removesuffix(suffix))
            if spec is not None:
                return spec.input_model if suffix == "Input" else spec.output_model
    raise AttributeError(f"module {module!r} has no attribute {name!r}")
