"""What the generated types promise, checked over every bound endpoint: ``None`` is accepted
exactly where fal's document allows null, every kept example validates against its own field,
and the keyword-argument types require exactly the required fields."""

from __future__ import annotations

import json
import sys
from functools import cache
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from falbind import ENDPOINTS

from support import GENERATED, ROOT

REF = "#/components/schemas/"
# Keyword arguments of the typed client methods: a field of that name is settable only through
# the Input model (codegen's render.CLIENT_KEYWORDS).
CLIENT_KEYWORDS = frozenset(
    {
        "input", "extra_body", "extra_headers", "timeout", "start_timeout", "hint",
        "webhook_url", "priority", "client_timeout", "with_logs", "on_queue_update",
        "object_lifecycle_seconds",
    }
)  # fmt: skip


@cache
def _manifest() -> dict[str, Any]:
    endpoints: dict[str, Any] = json.loads((GENERATED / "_manifest.json").read_text())["endpoints"]
    return endpoints


def _document_allows_null(schema: Any, schemas: dict[str, Any], seen: frozenset[str]) -> bool:
    """Read straight from fal's document (OpenAPI 3.0 ``nullable``, 3.1 null types/members)."""
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    if (
        schema.get("nullable") is True
        or kind == "null"
        or (isinstance(kind, list) and "null" in kind)
    ):
        return True
    ref = schema.get("$ref")
    target = schemas.get(ref.removeprefix(REF)) if isinstance(ref, str) else None
    if ref not in seen and _document_allows_null(target, schemas, seen | {str(ref)}):
        return True
    return any(
        _document_allows_null(member, schemas, seen)
        for key in ("anyOf", "oneOf")
        for member in schema.get(key) or []
    )


def _input_root(document: dict[str, Any], endpoint_id: str) -> dict[str, Any]:
    post = document["paths"][f"/{endpoint_id}"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    root: dict[str, Any] = document["components"]["schemas"][ref.removeprefix(REF)]
    return root


def _accepts(model: type[BaseModel], name: str, value: Any) -> bool:
    """Whether the field ``name`` of ``model`` validates ``value`` (the field alone)."""
    try:
        model.__pydantic_validator__.validate_assignment(model.model_construct(), name, value)
    except ValidationError:
        return False
    return True


def _wire_fields(model: type[BaseModel]) -> dict[str, tuple[str, FieldInfo]]:
    return {info.alias or name: (name, info) for name, info in model.model_fields.items()}


def test_none_is_accepted_exactly_where_the_document_allows_null() -> None:
    checked = refused = 0
    mismatches = []
    for endpoint_id, spec in sorted(ENDPOINTS.items()):
        document = json.loads((ROOT / _manifest()[endpoint_id]["schema"]).read_text())
        schemas = document["components"]["schemas"]
        root = _input_root(document, endpoint_id)
        model = spec.input_model
        fields = _wire_fields(model)
        for wire, prop in (root.get("properties") or {}).items():
            name, _ = fields[wire]
            allowed = _document_allows_null(prop, schemas, frozenset())
            checked += 1
            refused += not allowed
            if _accepts(model, name, None) != allowed:
                mismatches.append(f"{endpoint_id} {wire}: document allows null: {allowed}")
    assert mismatches == []
    assert checked > 5000 and refused > 1000, (checked, refused)


def test_an_unset_non_nullable_parameter_is_not_sent_and_none_is_refused() -> None:
    model = ENDPOINTS["fal-ai/bagel"].input_model
    assert model.model_validate({"prompt": "a fox"}).model_dump(exclude_unset=True) == {
        "prompt": "a fox"
    }
    with pytest.raises(ValidationError) as info:
        model.model_validate({"prompt": "a fox", "seed": None})
    assert info.value.errors()[0]["loc"] == ("seed",)


def _models(module: Any) -> list[type[BaseModel]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == module.__name__
    ]


def test_every_kept_example_validates_against_its_own_field() -> None:
    checked = 0
    failures = []
    for spec in ENDPOINTS.values():
        for model in dict.fromkeys(_models(spec.module)):
            for name, info in model.model_fields.items():
                for example in info.examples or []:
                    checked += 1
                    if not _accepts(model, name, example):
                        failures.append(f"{spec.id} {model.__name__}.{name}: {example!r:.80}")
    assert failures == []
    assert checked > 7000


def test_number_defaults_of_string_enums_are_mapped_when_exact() -> None:
    model = ENDPOINTS["fal-ai/fast-lightning-sdxl"].input_model
    assert model.model_fields["num_inference_steps"].default == "4"
    assert model.model_validate({"prompt": "a fox"}).num_inference_steps == "4"
    notes = _manifest()["fal-ai/fast-lightning-sdxl"]["notes"]
    assert "FastLightningSdxlInput.num_inference_steps: default 4 coerced to '4'" in notes


def test_keyword_types_require_exactly_the_required_fields() -> None:
    required_somewhere = 0
    for spec in ENDPOINTS.values():
        params = getattr(spec.module, f"{spec.class_stem}Params")
        # The module defers annotations, so TypedDict's own __required_keys__ cannot see
        # Required[...]; the annotation text is what type checkers read.
        marked = {
            k
            for k, v in params.__annotations__.items()
            if v.__forward_arg__.startswith("Required[")
        }
        required = {
            name
            for name, info in spec.input_model.model_fields.items()
            if info.is_required() and name not in CLIENT_KEYWORDS
        }
        assert marked == required, spec.id
        assert params.__total__ is False, spec.id
        required_somewhere += bool(required)
    assert required_somewhere > 800


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
