"""Schema normalisation: pure functions, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from falbind_codegen.normalise import (
    UnbindableEndpoint,
    closure,
    find_roots,
    merge_nullable,
    normalise_document,
    order_properties,
    safe_class_name,
)

REF = "#/components/schemas/"


def document(
    schemas: dict[str, Any], endpoint: str = "acme/model", inp: str = "In", out: str = "Out"
) -> dict[str, Any]:
    def body(name: str) -> dict[str, Any]:
        return {"content": {"application/json": {"schema": {"$ref": REF + name}}}}

    return {
        "paths": {
            f"/{endpoint}": {
                "post": {"requestBody": body(inp), "responses": {"200": body("QueueStatus")}}
            },
            f"/{endpoint}/requests/{{request_id}}": {"get": {"responses": {"200": body(out)}}},
        },
        "components": {"schemas": {"QueueStatus": {"type": "object"}, **schemas}},
    }


def obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


def test_roots_are_request_body_and_result_not_queue_status() -> None:
    assert find_roots(document({"In": obj(), "Out": obj()}), "acme/model") == ("In", "Out")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d["paths"].pop("/acme/model"), "no POST /acme/model"),
        (lambda d: d["paths"].pop("/acme/model/requests/{request_id}"), "result (200) body"),
        (lambda d: d.pop("paths"), "no paths"),
        (lambda d: d["components"]["schemas"].pop("Out"), "'Out'"),
        (
            lambda d: d["components"]["schemas"].update(In=obj(x={"$ref": REF + "Gone"})),
            "'Gone' (from 'In')",
        ),
        (
            lambda d: d["components"]["schemas"].update(In=obj(x={"$ref": "http://evil/x.json"})),
            "non-local $ref",
        ),
    ],
)
def test_unbindable_documents_say_why(mutate: Any, reason: str) -> None:
    doc = document({"In": obj(), "Out": obj()})
    mutate(doc)
    with pytest.raises(UnbindableEndpoint, match=None) as info:
        normalise_document(doc, "acme/model", "Model")
    assert reason in str(info.value)


def test_closure_is_sorted_and_cycle_safe() -> None:
    schemas = {
        "A": obj(b={"$ref": REF + "B"}),
        "B": obj(a={"$ref": REF + "A"}, c={"$ref": REF + "C"}),
        "C": obj(),
        "D": obj(),
    }
    assert closure("A", schemas) == ["A", "B", "C"]


@pytest.mark.parametrize(
    ("order", "properties", "expected"),
    [
        (["b", "a"], ["a", "b", "c"], ["b", "a", "c"]),
        (["zz", "a"], ["a", "b"], ["a", "b"]),
        (None, ["c", "a"], ["c", "a"]),
    ],
)
def test_order_properties(
    order: list[str] | None, properties: list[str], expected: list[str]
) -> None:
    schema: dict[str, Any] = obj(**{p: {"type": "string"} for p in properties})
    if order is not None:
        schema["x-fal-order-properties"] = order
    assert list(order_properties(schema)["properties"]) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Image", "Image"),
        ("registry__image__fast_sdxl__models__Image", "RegistryImageFastSdxlModelsImage"),
        ('Evil"Name', "EvilName"),
        ("3dModel", "M3dModel"),
        ("FiboGenerateStructured_promptInput", "FiboGenerateStructuredPromptInput"),
        ("", "Model"),
    ],
)
def test_safe_class_name(name: str, expected: str) -> None:
    assert safe_class_name(name) == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (
            {"anyOf": [{"type": "number", "maximum": 1}, {"type": "null"}], "title": "W"},
            {"title": "W", "type": "number", "maximum": 1, "nullable": True},
        ),
        (
            {"anyOf": [{"$ref": REF + "X"}, {"type": "null"}]},
            {"anyOf": [{"$ref": REF + "X"}, {"type": "null"}]},
        ),
        (
            {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        ),
        ({"type": "string"}, {"type": "string"}),
    ],
)
def test_merge_nullable(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert merge_nullable(schema) == expected


@pytest.mark.parametrize(
    ("prop", "expected_default", "note"),
    [
        ({"type": "number", "default": "0.8"}, 0.8, "coerced"),
        ({"anyOf": [{"type": "number"}, {"type": "null"}], "default": "0.8"}, 0.8, "coerced"),
        ({"type": "integer", "default": "2"}, 2, "coerced"),
        ({"type": "integer", "default": "two"}, None, "dropped"),
        ({"type": "string", "enum": ["a", "b"], "default": "c"}, None, "dropped"),
        ({"type": "integer", "minimum": 1, "default": 0}, None, "dropped"),
        ({"type": "integer", "default": True}, None, "dropped"),
        ({"type": "number", "default": 0.5}, 0.5, None),
        ({"type": "string", "enum": ["1", "2", "4"], "default": 4}, "4", "coerced to '4'"),
        ({"type": "string", "enum": ["1.0", "2"], "default": 1}, None, "dropped"),
    ],
)
def test_defaults_that_fail_their_schema(
    prop: dict[str, Any], expected_default: Any, note: str | None
) -> None:
    result = normalise_document(document({"In": obj(p=prop), "Out": obj()}), "acme/model", "Model")
    assert result.schemas["ModelInput"]["properties"]["p"].get("default") == expected_default
    notes = [n for n in result.notes if n.startswith("ModelInput.p:")]
    if note is None:
        assert notes == []
    else:
        assert len(notes) == 1 and note in notes[0]


def test_examples_that_fail_their_schema_are_dropped() -> None:
    prop = {"type": "string", "examples": [{"url": "x"}, "ok"]}
    result = normalise_document(document({"In": obj(p=prop), "Out": obj()}), "acme/model", "Model")
    assert result.schemas["ModelInput"]["properties"]["p"]["examples"] == ["ok"]
    assert any("1 example(s) dropped" in n for n in result.notes)


@pytest.mark.parametrize(
    ("prop", "example"),
    [
        # An enum beside a nullable anyOf narrows it (heygen avatar4 `voice`).
        ({"enum": ["Ivy"], "anyOf": [{"type": "string"}, {"type": "null"}]}, "Melissa"),
        # A request object refuses keys it does not declare (ltx `/extend` `video`).
        ({"$ref": REF + "Video"}, {"video_url": "u", "preprocess": False}),
        ({"$ref": REF + "Video"}, {}),  # a required key missing
        ({"$ref": REF + "Video"}, "https://example.com/v.mp4"),  # a string for an object
        ({"type": "array", "items": {"type": "integer", "maximum": 3}}, [1, 4]),
        ({"type": "string", "maxLength": 2}, "abc"),
    ],
)
def test_examples_are_checked_deeply(prop: dict[str, Any], example: Any) -> None:
    video = {"properties": {"video_url": {"type": "string"}}, "required": ["video_url"]}
    schemas = {"In": obj(p={**prop, "examples": [example]}), "Out": obj(), "Video": video}
    result = normalise_document(document(schemas), "acme/model", "Model")
    assert "examples" not in result.schemas["ModelInput"]["properties"]["p"]
    assert any(n.startswith("ModelInput.p: 1 example(s) dropped") for n in result.notes)


def test_fitting_examples_are_kept() -> None:
    video = {"properties": {"video_url": {"type": "string"}}, "required": ["video_url"]}
    prop = {"$ref": REF + "Video", "examples": [{"video_url": "u"}]}
    schemas = {"In": obj(p=prop), "Out": obj(), "Video": video}
    result = normalise_document(document(schemas), "acme/model", "Model")
    assert result.schemas["ModelInput"]["properties"]["p"]["examples"] == [{"video_url": "u"}]
    assert not [n for n in result.notes if n.startswith("ModelInput")]


def test_roots_renamed_and_shared_schemas_split_by_role() -> None:
    schemas = {
        "In": obj(shared={"$ref": REF + "Shared"}),
        "Out": obj(shared={"$ref": REF + "Shared"}, only={"$ref": REF + "OnlyOut"}),
        "Shared": obj(x={"type": "string"}),
        "OnlyOut": obj(),
    }
    result = normalise_document(document(schemas), "acme/model", "Model")
    assert result.input_name == "ModelInput" and result.output_name == "ModelOutput"
    assert result.request_models == {"ModelInput", "Shared"}
    assert result.response_models == {"ModelOutput", "SharedOutput", "OnlyOut"}
    assert result.schemas["ModelOutput"]["properties"]["shared"] == {"$ref": REF + "SharedOutput"}
    assert result.schemas["ModelInput"]["properties"]["shared"] == {"$ref": REF + "Shared"}


def test_empty_output_becomes_open_object_with_a_note() -> None:
    result = normalise_document(document({"In": obj(), "Out": {}}), "acme/model", "Model")
    assert result.schemas["ModelOutput"]["additionalProperties"] is True
    assert any("no fields" in n for n in result.notes)


def test_order_extension_never_reaches_the_output() -> None:
    schemas = {"In": {**obj(a={"type": "string"}), "x-fal-order-properties": ["a"]}, "Out": obj()}
    result = normalise_document(document(schemas), "acme/model", "Model")
    assert "x-fal-order-properties" not in str(result.schemas)


def test_open_input_root_is_closed_with_a_note() -> None:
    schemas = {"In": {**obj(a={"type": "string"}), "additionalProperties": True}, "Out": obj()}
    result = normalise_document(document(schemas), "acme/model", "Model")
    assert "additionalProperties" not in result.schemas["ModelInput"]
    assert any("extra_body" in n for n in result.notes)
