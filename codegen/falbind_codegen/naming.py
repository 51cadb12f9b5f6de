"""Python names derived from fal endpoint ids (pure functions).

``fal-ai/flux-pro/v1.1-ultra`` becomes module ``fal_ai__flux_pro_v1_1_ultra``, class stem
``FluxProV11Ultra`` (owner dropped only for ``fal-ai``) and method ``flux_pro_v1_1_ultra``.
A module name always carries the owner, so it is unique whenever ids are; stems and methods are
checked for clashes by the registry loader, and a registry ``name:`` overrides both.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "ENDPOINT_ID_PATTERN",
    "EndpointNames",
    "class_stem",
    "endpoint_names",
    "is_valid_endpoint_id",
    "method_name",
    "module_name",
    "schema_filename",
    "stem_from_method",
]

# fal's id grammar: an owner and one or more path segments of letters, digits, `.`, `_`, `-`.
ENDPOINT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)+$")
DEFAULT_OWNER = "fal-ai"
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True, slots=True)
class EndpointNames:
    module: str
    stem: str
    method: str


def is_valid_endpoint_id(endpoint_id: str) -> bool:
    return bool(ENDPOINT_ID_PATTERN.fullmatch(endpoint_id)) and ".." not in endpoint_id


def _words(text: str) -> list[str]:
    spaced = _CAMEL_BOUNDARY.sub(" ", text)
    return [w.lower() for w in _WORD_SPLIT.split(spaced) if w]


def _snake(text: str) -> str:
    return "_".join(_words(text))


def _safe_identifier(name: str, prefix: str) -> str:
    if not name:
        name = prefix
    if name[0].isdigit():
        name = f"{prefix}{name}" if prefix.endswith("_") else f"{prefix}_{name}"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        name += "_"
    return name


def _split(endpoint_id: str) -> tuple[str, list[str]]:
    owner, _, rest = endpoint_id.partition("/")
    return owner, rest.split("/")


def module_name(endpoint_id: str) -> str:
    """``<owner>__<rest>`` in snake case; unique per id, never a keyword."""
    owner, segments = _split(endpoint_id)
    return _safe_identifier(f"{_snake(owner)}__{_snake('_'.join(segments))}", "m_")


def method_name(endpoint_id: str) -> str:
    """Snake-case client method name; the owner is dropped only for ``fal-ai``."""
    owner, segments = _split(endpoint_id)
    parts = segments if owner == DEFAULT_OWNER else [owner, *segments]
    return _safe_identifier(_snake("_".join(parts)), "m_")


def stem_from_method(method: str) -> str:
    """PascalCase class stem for a snake-case method name."""
    stem = "".join(word.capitalize() for word in method.split("_") if word)
    return stem if not stem[:1].isdigit() else f"M{stem}"


def class_stem(endpoint_id: str) -> str:
    return stem_from_method(method_name(endpoint_id))


@lru_cache(maxsize=8192)
def endpoint_names(endpoint_id: str, override: str | None = None) -> EndpointNames:
    """All names for an endpoint; ``override`` (a registry ``name:``) replaces method and stem.

    Cached: a generator run asks for an entry's names about nine times (uniqueness check, module
    path, index rows, ...), and the result depends only on the arguments (a frozen value)."""
    method = override or method_name(endpoint_id)
    return EndpointNames(
        module=module_name(endpoint_id), stem=stem_from_method(method), method=method
    )


def schema_filename(endpoint_id: str) -> str:
    """The vendored schema's file name: the id with ``/`` as ``__`` (as fal-openapi names it)."""
    return endpoint_id.replace("/", "__") + ".json"
