"""Tests for the schema diff: hand-made schema pairs per rule, then real fal history pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from falbind_codegen.diff import Change, DiffError, SchemaDiff, diff_documents, diff_files

DATA = Path(__file__).resolve().parents[2] / "shared" / "fal-openapi"
ENDPOINT_ID = "owner/app"

# --------------------------------------------------------------------------- helpers


def document(
    input_schema: dict[str, Any],
    output_schema: dict[str, Any],
    schemas: dict[str, Any] | None = None,
    endpoint_id: str | None = ENDPOINT_ID,
) -> dict[str, Any]:
    """A minimal fal queue document whose roots are ``input_schema``/``output_schema``."""
    app = endpoint_id or "owner/app"
    info: dict[str, Any] = {"title": "t", "version": "1"}
    if endpoint_id is not None:
        info["x-fal-metadata"] = {"endpointId": endpoint_id}
    return {
        "openapi": "3.0.4",
        "info": info,
        "paths": {
            f"/{app}": {
                "post": {
                    "requestBody": {"content": {"application/json": {"schema": input_schema}}},
                    "responses": {"200": {"description": "queued"}},
                }
            },
            f"/{app}/requests/{{request_id}}": {
                "get": {
                    "responses": {
                        "200": {"content": {"application/json": {"schema": output_schema}}}
                    }
                }
            },
        },
        "components": {"schemas": schemas or {}},
    }


def obj(required: tuple[str, ...] = (), **properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
EMPTY = obj()


def triples(diff: SchemaDiff) -> set[tuple[str, str, bool]]:
    return {(c.path, c.kind, c.breaking) for c in diff.changes}


def diff_side(side: str, old: dict[str, Any], new: dict[str, Any]) -> SchemaDiff:
    if side == "input":
        return diff_documents(document(old, EMPTY), document(new, EMPTY))
    return diff_documents(document(EMPTY, old), document(EMPTY, new))


# --------------------------------------------------------------------------- rules

RULES: list[tuple[str, str, dict[str, Any], dict[str, Any], set[tuple[str, str, bool]]]] = [
    # (id, side, old root, new root, exact expected {(path, kind, breaking)})
    ("in-removed", "input", obj(a=STR, b=STR), obj(a=STR), {("input.b", "field_removed", True)}),
    (
        "in-required-added",
        "input",
        obj(a=STR),
        obj(("b",), a=STR, b=STR),
        {("input.b", "field_required_added", True)},
    ),
    (
        "in-became-required",
        "input",
        obj(a=STR),
        obj(("a",), a=STR),
        {("input.a", "field_became_required", True)},
    ),
    ("in-optional-added", "input", obj(), obj(a=STR), {("input.a", "field_added", False)}),
    (
        "in-became-optional",
        "input",
        obj(("a",), a=STR),
        obj(a=STR),
        {("input.a", "field_became_optional", False)},
    ),
    ("in-num-to-int", "input", obj(a=NUM), obj(a=INT), {("input.a", "type_narrowed", True)}),
    ("in-int-to-num", "input", obj(a=INT), obj(a=NUM), {("input.a", "type_widened", False)}),
    ("in-str-to-int", "input", obj(a=STR), obj(a=INT), {("input.a", "type_changed", True)}),
    (
        "in-member-removed",
        "input",
        obj(a={"anyOf": [STR, INT]}),
        obj(a=STR),
        {("input.a", "type_narrowed", True)},
    ),
    (
        "in-member-added",
        "input",
        obj(a=STR),
        obj(a={"oneOf": [STR, INT]}),
        {("input.a", "type_widened", False)},
    ),
    (
        "in-str-to-enum",
        "input",
        obj(a=STR),
        obj(a={"type": "string", "enum": ["x"]}),
        {("input.a", "type_narrowed", True)},
    ),
    (
        "in-enum-to-str",
        "input",
        obj(a={"type": "string", "enum": ["x"]}),
        obj(a=STR),
        {("input.a", "type_widened", False)},
    ),
    (
        "in-enum-removed",
        "input",
        obj(a={"enum": ["x", "y"]}),
        obj(a={"enum": ["x"]}),
        {("input.a", "enum_value_removed", True)},
    ),
    (
        "in-enum-added",
        "input",
        obj(a={"enum": ["x"]}),
        obj(a={"enum": ["x", "21:9"]}),
        {("input.a", "enum_value_added", False)},
    ),
    (
        "in-const-changed",
        "input",
        obj(a={"const": "720p"}),
        obj(a={"const": "1080p"}),
        {("input.a", "enum_value_removed", True), ("input.a", "enum_value_added", False)},
    ),
    (
        "in-minimum-raised",
        "input",
        obj(a={**INT, "minimum": 1}),
        obj(a={**INT, "minimum": 4}),
        {("input.a", "bound_tightened", True)},
    ),
    (
        "in-maximum-lowered",
        "input",
        obj(a={**INT, "maximum": 50}),
        obj(a={**INT, "maximum": 8}),
        {("input.a", "bound_tightened", True)},
    ),
    (
        "in-bound-added",
        "input",
        obj(a=INT),
        obj(a={**INT, "maximum": 8}),
        {("input.a", "bound_tightened", True)},
    ),
    (
        "in-bound-removed",
        "input",
        obj(a={**INT, "minimum": 0}),
        obj(a=INT),
        {("input.a", "bound_loosened", False)},
    ),
    (
        "in-bounds-loosened",
        "input",
        obj(a={**NUM, "minimum": 0.1, "maximum": 1}),
        obj(a={**NUM, "minimum": 0, "maximum": 2}),
        {("input.a", "bound_loosened", False)},
    ),
    (
        "in-lengths-tightened",
        "input",
        obj(a={**STR, "minLength": 1, "maxLength": 100}, b={"type": "array", "minItems": 1}),
        obj(a={**STR, "minLength": 2, "maxLength": 50}, b={"type": "array", "minItems": 2}),
        {("input.a", "bound_tightened", True), ("input.b", "bound_tightened", True)},
    ),
    (
        "in-max-items-loosened",
        "input",
        obj(a={"type": "array", "maxItems": 4}),
        obj(a={"type": "array", "maxItems": 8}),
        {("input.a", "bound_loosened", False)},
    ),
    (
        "in-exclusive-3.1-tightens",
        "input",
        obj(a={**NUM, "minimum": 0}),
        obj(a={**NUM, "exclusiveMinimum": 0}),
        {("input.a", "bound_tightened", True)},
    ),
    (
        "in-exclusive-3.0-loosens",
        "input",
        obj(a={**NUM, "maximum": 10, "exclusiveMaximum": True}),
        obj(a={**NUM, "maximum": 10}),
        {("input.a", "bound_loosened", False)},
    ),
    (
        "in-exclusive-3.0-equals-3.1",
        "input",
        obj(a={**NUM, "minimum": 0, "exclusiveMinimum": True}),
        obj(a={**NUM, "exclusiveMinimum": 0}),
        set(),
    ),
    (
        "in-multiple-of-finer",
        "input",
        obj(a={**INT, "multipleOf": 16}),
        obj(a={**INT, "multipleOf": 8}),
        {("input.a", "bound_loosened", False)},
    ),
    (
        "in-pattern-added",
        "input",
        obj(a=STR),
        obj(a={**STR, "pattern": "^\\w+$"}),
        {("input.a", "bound_tightened", True)},
    ),
    (
        "in-default-changed",
        "input",
        obj(a={**STR, "default": "regular"}),
        obj(a={**STR, "default": "none"}),
        {("input.a", "default_changed", False)},
    ),
    (
        "in-default-type-changed",
        "input",
        obj(a={**NUM, "default": "0.8"}),
        obj(a={**NUM, "default": 0.8}),
        {("input.a", "default_changed", False)},
    ),
    (
        "in-default-bool-to-int",
        "input",
        obj(a={"default": True}),
        obj(a={"default": 1}),
        {("input.a", "default_changed", False)},
    ),
    (
        "in-nullable-added",
        "input",
        obj(a=INT),
        obj(a=nullable(INT)),
        {("input.a", "nullable_added", False)},
    ),
    (
        "in-nullable-removed",
        "input",
        obj(a=nullable(INT)),
        obj(a=INT),
        {("input.a", "nullable_removed", True)},
    ),
    (
        "in-nullable-3.0-keyword",
        "input",
        obj(a={**INT, "nullable": True}),
        obj(a=nullable(INT)),
        set(),
    ),
    (
        "in-nullable-3.1-type-list",
        "input",
        obj(a={"type": ["integer", "null"]}),
        obj(a=nullable(INT)),
        set(),
    ),
    (
        "in-extra-forbidden",
        "input",
        obj(a=STR),
        {**obj(a=STR), "additionalProperties": False},
        {("input", "extra_fields_forbidden", True)},
    ),
    (
        "in-map-values-narrowed",
        "input",
        {"type": "object", "additionalProperties": NUM},
        {"type": "object", "additionalProperties": INT},
        {("input.*", "type_narrowed", True)},
    ),
    (
        "in-tuple-positions-added",
        "input",
        obj(a={"type": "array", "items": {}}),
        obj(a={"type": "array", "prefixItems": [INT, INT]}),
        {("input.a", "type_narrowed", True)},
    ),
    (
        "in-odd-name",
        "input",
        {"type": "object", "properties": {"x-y": STR}},
        obj(),
        {('input["x-y"]', "field_removed", True)},
    ),
    ("out-removed", "output", obj(a=STR, b=STR), obj(a=STR), {("output.b", "field_removed", True)}),
    (
        "out-became-optional",
        "output",
        obj(("a",), a=STR),
        obj(a=STR),
        {("output.a", "field_became_optional", True)},
    ),
    (
        "out-became-required",
        "output",
        obj(a=STR),
        obj(("a",), a=STR),
        {("output.a", "field_became_required", False)},
    ),
    ("out-added", "output", obj(), obj(("a",), a=STR), {("output.a", "field_added", False)}),
    (
        "out-enum-added",
        "output",
        obj(a={"enum": ["x"]}),
        obj(a={"enum": ["x", "y"]}),
        {("output.a", "enum_value_added", False)},
    ),
    (
        "out-enum-removed",
        "output",
        obj(a={"enum": ["x", "y"]}),
        obj(a={"enum": ["x"]}),
        {("output.a", "enum_value_removed", False)},
    ),
    ("out-type-changed", "output", obj(a=STR), obj(a=INT), {("output.a", "type_changed", True)}),
    ("out-int-to-num", "output", obj(a=INT), obj(a=NUM), {("output.a", "type_widened", True)}),
    ("out-num-to-int", "output", obj(a=NUM), obj(a=INT), {("output.a", "type_narrowed", False)}),
    (
        "out-nullable-added",
        "output",
        obj(a=INT),
        obj(a=nullable(INT)),
        {("output.a", "nullable_added", True)},
    ),
    (
        "out-nullable-removed",
        "output",
        obj(a=nullable(INT)),
        obj(a=INT),
        {("output.a", "nullable_removed", False)},
    ),
    (
        "out-bound-tightened-is-compatible",
        "output",
        obj(a={**INT, "maximum": 10}),
        obj(a={**INT, "maximum": 5}),
        {("output.a", "bound_tightened", False)},
    ),
    (
        "out-default-ignored",
        "output",
        obj(a={**INT, "default": 1}),
        obj(a={**INT, "default": 2}),
        set(),
    ),
    (
        "out-became-empty-schema",
        "output",
        obj(a=STR),
        {},
        {("output", "type_widened", True)},
    ),
    (
        "ignores-annotations",
        "input",
        obj(a={**STR, "description": "old", "title": "A", "examples": ["x"]}),
        obj(a={**STR, "description": "new", "title": "B", "examples": ["y"]}),
        set(),
    ),
]


@pytest.mark.parametrize(
    ("side", "old", "new", "expected"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_classification_rules(
    side: str, old: dict[str, Any], new: dict[str, Any], expected: set[tuple[str, str, bool]]
) -> None:
    assert triples(diff_side(side, old, new)) == expected


def test_enum_changes_carry_the_values() -> None:
    diff = diff_side("input", obj(a={"enum": ["x", "y"]}), obj(a={"enum": ["x", "z"]}))
    assert [(c.kind, c.old, c.new) for c in diff.changes] == [
        ("enum_value_added", None, "z"),
        ("enum_value_removed", "y", None),
    ]


def test_bound_changes_render_both_exclusive_styles() -> None:
    diff = diff_side("input", obj(a={**NUM, "minimum": 0}), obj(a={**NUM, "exclusiveMinimum": 0}))
    (change,) = diff.changes
    assert (change.old, change.new) == (">= 0", "> 0")
    assert "lower bound" in change.message


def test_default_change_says_callers_see_different_behaviour() -> None:
    diff = diff_side("input", obj(a={**INT, "default": 1}), obj(a={**INT, "default": 2}))
    (change,) = diff.changes
    assert (change.old, change.new) == (1, 2)
    assert "relying on the default" in change.message


# --------------------------------------------------------------------------- refs, cycles


IMAGE_SIZE = {"type": "object", "properties": {"width": {**INT, "maximum": 14142}}}


def test_refs_inside_unions_are_walked_with_readable_paths() -> None:
    size_field = {"anyOf": [{"$ref": "#/components/schemas/ImageSize"}, {"enum": ["square_hd"]}]}
    narrower = {"type": "object", "properties": {"width": {**INT, "maximum": 4096}}}
    old = document(obj(image_size=size_field), EMPTY, {"ImageSize": IMAGE_SIZE})
    new = document(obj(image_size=size_field), EMPTY, {"ImageSize": narrower})
    assert triples(diff_documents(old, new)) == {
        ("input.image_size.width", "bound_tightened", True)
    }


def test_array_items_and_all_of_wrappers() -> None:
    image = {"type": "object", "properties": {"url": STR}, "required": ["url"]}
    moved = {"type": "object", "properties": {"uri": STR}}
    field = {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/Image"}]}}
    old = document(EMPTY, obj(images=field), {"Image": image})
    new = document(EMPTY, obj(images=field), {"Image": moved})
    assert triples(diff_documents(old, new)) == {
        ("output.images[].url", "field_removed", True),
        ("output.images[].uri", "field_added", False),
    }


def test_recursive_schemas_terminate() -> None:
    def tree(name_type: dict[str, Any]) -> dict[str, Any]:
        children = {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}
        return {"type": "object", "properties": {"name": name_type, "children": children}}

    old = document(obj(tree={"$ref": "#/components/schemas/Node"}), EMPTY, {"Node": tree(STR)})
    new = document(obj(tree={"$ref": "#/components/schemas/Node"}), EMPTY, {"Node": tree(INT)})
    assert triples(diff_documents(old, new)) == {("input.tree.name", "type_changed", True)}


def test_recursion_through_all_of_wrappers_terminates() -> None:
    def node(extra: dict[str, Any]) -> dict[str, Any]:
        child = {"allOf": [{"$ref": "#/components/schemas/Node"}], "description": "child"}
        return {"type": "object", "properties": {"child": child, **extra}}

    root = obj(node={"allOf": [{"$ref": "#/components/schemas/Node"}]})
    old = document(root, EMPTY, {"Node": node({})})
    new = document(root, EMPTY, {"Node": node({"label": STR})})
    assert triples(diff_documents(old, new)) == {("input.node.label", "field_added", False)}


def test_all_of_parts_are_merged_and_a_single_union_part_kept() -> None:
    base = {"type": "object", "properties": {"a": STR}, "required": ["a"]}
    extra = {"type": "object", "properties": {"b": INT}}
    both = {"allOf": [{"$ref": "#/components/schemas/Base"}, extra]}
    union = {"allOf": [{"anyOf": [STR, INT]}], "default": "x"}
    old = document(obj(m=both, u=union), EMPTY, {"Base": base})
    new = document(
        obj(
            m={**both, "allOf": [{"$ref": "#/components/schemas/Base"}, {"type": "object"}]}, u=STR
        ),
        EMPTY,
        {"Base": {**base, "required": []}},
    )
    assert triples(diff_documents(old, new)) == {
        ("input.m.a", "field_became_optional", False),
        ("input.m.b", "field_removed", True),
        ("input.u", "type_narrowed", True),
        ("input.u", "default_changed", False),
    }


def test_ref_loop_without_structure_is_unresolvable() -> None:
    loop = {"A": {"$ref": "#/components/schemas/B"}, "B": {"$ref": "#/components/schemas/A"}}
    field = obj(a={"$ref": "#/components/schemas/A"})
    diff = diff_documents(document(field, EMPTY, loop), document(field, EMPTY, loop))
    assert [(c.path, c.kind) for c in diff.changes] == [("input.a", "unresolvable")]


@pytest.mark.parametrize(
    ("old_defines", "new_defines", "expected"),
    [
        (True, False, {("input.a", "unresolvable", True)}),
        (False, True, {("input.a", "unresolvable", False)}),
        (False, False, {("input.a", "unresolvable", False)}),
        (True, True, set()),
    ],
    ids=["broken-by-new", "fixed-by-new", "broken-in-both", "fine-in-both"],
)
def test_dangling_refs_are_reported_not_raised(
    old_defines: bool, new_defines: bool, expected: set[tuple[str, str, bool]]
) -> None:
    field = obj(a={"$ref": "#/components/schemas/Point"})
    point = {"Point": {"type": "object"}}
    old = document(field, EMPTY, point if old_defines else {})
    new = document(field, EMPTY, point if new_defines else {})
    assert triples(diff_documents(old, new)) == expected


# --------------------------------------------------------------------------- report


def sample_diff() -> SchemaDiff:
    old = document(obj(("p",), p=STR, z=INT), obj(("url",), url=STR))
    new = document(obj(("p",), p=STR, z=NUM, a=STR), obj(url=STR))
    return diff_documents(old, new)


def test_changes_are_sorted_by_side_path_kind() -> None:
    diff = sample_diff()
    keys = [(c.side, c.path, c.kind) for c in diff.changes]
    assert keys == sorted(keys)
    assert keys == [
        ("input", "input.a", "field_added"),
        ("input", "input.z", "type_widened"),
        ("output", "output.url", "field_became_optional"),
    ]


def test_breaking_and_compatible_partition_the_changes() -> None:
    diff = sample_diff()
    assert diff.is_breaking
    assert [c.path for c in diff.breaking] == ["output.url"]
    assert [c.path for c in diff.compatible] == ["input.a", "input.z"]


def test_to_dict_is_json_ready_with_stable_keys() -> None:
    data = sample_diff().to_dict()
    assert list(data) == ["endpoint_id", "is_breaking", "counts", "changes"]
    assert data["counts"] == {"breaking": 1, "compatible": 2}
    assert list(data["changes"][0]) == ["side", "path", "kind", "breaking", "message", "old", "new"]
    assert json.loads(json.dumps(data)) == data


def test_to_text_has_header_then_sections() -> None:
    lines = sample_diff().to_text().splitlines()
    assert lines[0] == "owner/app: 3 change(s), 1 breaking, 2 compatible"
    assert lines[1] == "BREAKING"
    assert lines[2].startswith("  output.url: became optional")
    assert lines[3] == "compatible"
    assert [line.split(":")[0].strip() for line in lines[4:]] == ["input.a", "input.z"]


def test_no_changes_means_not_breaking() -> None:
    doc = document(obj(a=STR), obj(b=STR))
    diff = diff_documents(doc, doc)
    assert diff.changes == [] and not diff.is_breaking
    assert diff.to_text() == "owner/app: 0 change(s), 0 breaking, 0 compatible\n"


def test_order_does_not_depend_on_property_order() -> None:
    old = document(obj(a=STR, b=STR, c=STR), EMPTY)
    new_forward = document(obj(d=INT), EMPTY)
    new_backward = document({"type": "object", "properties": {"d": INT}}, EMPTY)
    reordered_old = document(obj(c=STR, b=STR, a=STR), EMPTY)
    assert (
        diff_documents(old, new_forward).to_dict()
        == diff_documents(reordered_old, new_backward).to_dict()
    )


def test_duplicate_changes_are_reported_once() -> None:
    change = Change("input", "input.a", "field_removed", True, "gone")
    assert SchemaDiff("x", [change, change]).changes == [change]


# --------------------------------------------------------------------------- documents


def test_endpoint_id_falls_back_to_the_submit_path() -> None:
    doc = document(obj(a=STR), EMPTY, endpoint_id=None)
    assert diff_documents(doc, doc).endpoint_id == "owner/app"


def test_missing_request_schema_is_a_diff_error() -> None:
    doc = document(obj(), EMPTY)
    del doc["paths"]["/owner/app"]["post"]["requestBody"]
    with pytest.raises(DiffError, match="no application/json input schema"):
        diff_documents(doc, doc)


def write(tmp_path: Path, name: str, content: Any) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_diff_files_compares_documents(tmp_path: Path) -> None:
    old = write(tmp_path, "old.json", document(obj(a=STR), EMPTY))
    new = write(tmp_path, "new.json", document(obj(), EMPTY))
    assert triples(diff_files(old, new)) == {("input.a", "field_removed", True)}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "file not found"),
        ("{not json", "invalid JSON"),
        ([1, 2], "not an OpenAPI document"),
        ({"swagger": "2.0"}, "not an OpenAPI document"),
    ],
    ids=["missing", "invalid-json", "not-an-object", "not-openapi"],
)
def test_diff_files_explains_bad_input(tmp_path: Path, content: Any, reason: str) -> None:
    good = write(tmp_path, "good.json", document(obj(), EMPTY))
    bad = tmp_path / "bad.json" if content is None else write(tmp_path, "bad.json", content)
    with pytest.raises(DiffError, match=reason) as caught:
        diff_files(good, bad)
    assert "\n" not in str(caught.value) and "bad.json" in str(caught.value)


def test_diff_files_refuses_different_endpoints_unless_allowed(tmp_path: Path) -> None:
    old = write(tmp_path, "a.json", document(obj(), EMPTY, endpoint_id="owner/a"))
    new = write(tmp_path, "b.json", document(obj(), EMPTY, endpoint_id="owner/b"))
    with pytest.raises(DiffError, match="different endpoints: 'owner/a' vs 'owner/b'"):
        diff_files(old, new)
    assert diff_files(old, new, allow_different_ids=True).endpoint_id == "owner/b"


# --------------------------------------------------------------------------- real data

needs_data = pytest.mark.skipif(
    not (DATA / "endpoints").is_dir(), reason=f"shared fal OpenAPI data not found at {DATA}"
)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def history_pairs() -> list[tuple[Path, Path]]:
    if not (DATA / "history").is_dir():
        return []
    return [
        (older, DATA / "endpoints" / f"{slug.name}.json")
        for slug in sorted((DATA / "history").iterdir())
        for older in sorted(slug.glob("older-*.json"))
    ]


def real_diff(slug: str) -> SchemaDiff:
    old, new = DATA / "history" / slug / "older-1.json", DATA / "endpoints" / f"{slug}.json"
    assert load(old) != load(new), "the pair should differ"
    return diff_files(old, new)


def real_triples(slug: str) -> set[tuple[str, str, str, bool]]:
    return {(c.side, c.path, c.kind, c.breaking) for c in real_diff(slug).changes}


@needs_data
def test_every_endpoint_against_itself_has_no_real_changes() -> None:
    for path in sorted((DATA / "endpoints").glob("*.json")):
        doc = load(path)
        diff = diff_documents(doc, doc)
        assert not diff.is_breaking, path.name
        assert {c.kind for c in diff.changes} <= {"unresolvable"}, path.name


@needs_data
def test_top_level_field_removals_in_history_are_all_breaking() -> None:
    """Cross-check against the raw documents: every top-level property that disappears
    from an input or output root is reported as a breaking removal."""
    checked = 0
    for old_path, new_path in history_pairs():
        old, new = load(old_path), load(new_path)
        diff = diff_documents(old, new)
        reported = {(c.path, c.kind, c.breaking) for c in diff.changes}
        for side in ("input", "output"):
            before, after = raw_root_properties(old, side), raw_root_properties(new, side)
            if after is None:  # root emptied upstream: a type change, tested elsewhere
                continue
            for name in (before or set()) - after:
                assert (f"{side}.{name}", "field_removed", True) in reported, (old_path, name)
                checked += 1
    assert checked >= 10  # the data has real removals, so this test has teeth


def raw_root_properties(doc: dict[str, Any], side: str) -> set[str] | None:
    """Property names of the side's root object, or None if it declares no properties."""
    endpoint_id = doc["info"]["x-fal-metadata"]["endpointId"]
    if side == "input":
        operation = doc["paths"][f"/{endpoint_id}"]["post"]["requestBody"]
    else:
        operation = doc["paths"][f"/{endpoint_id}/requests/{{request_id}}"]["get"]["responses"][
            "200"
        ]
    schema = operation["content"]["application/json"]["schema"]
    name = schema.get("$ref", "").removeprefix("#/components/schemas/")
    root = doc["components"]["schemas"].get(name, schema)
    return set(root["properties"]) if "properties" in root else None


@needs_data
def test_history_input_fields_removed_dia_tts_voice_clone() -> None:
    # The older version required ref_audio_url and ref_text; the newest drops both.
    assert real_triples("fal-ai__dia-tts__voice-clone") == {
        ("input", "input.ref_audio_url", "field_removed", True),
        ("input", "input.ref_text", "field_removed", True),
    }


@needs_data
def test_history_bria_fibo_removes_guidance_scale_and_adds_resolution() -> None:
    assert real_triples("bria__fibo__generate") == {
        ("input", "input.guidance_scale", "field_removed", True),
        ("input", "input.resolution", "field_added", False),
    }


@needs_data
def test_history_minimum_raised_is_breaking() -> None:
    (change,) = real_diff("fal-ai__flux-2-lora-gallery__ballpoint-pen-sketch").changes
    assert (change.path, change.kind, change.breaking) == (
        "input.num_inference_steps",
        "bound_tightened",
        True,
    )
    assert (change.old, change.new) == (">= 1", ">= 4")


@needs_data
def test_history_minimum_dropped_inside_nullable_is_compatible() -> None:
    # seed: anyOf [{integer, minimum 0}, null] became anyOf [{integer}, null] (older-2 to
    # older-1; the current document put the minimum back).
    history = DATA / "history" / "fal-ai__clarity-upscaler"
    (change,) = diff_files(history / "older-2.json", history / "older-1.json").changes
    assert (change.path, change.kind, change.breaking, change.old) == (
        "input.seed",
        "bound_loosened",
        False,
        ">= 0",
    )


@needs_data
def test_history_default_flip_is_reported_but_compatible() -> None:
    (change,) = real_diff("fal-ai__ltx-2-19b__distilled__text-to-video").changes
    assert (change.path, change.kind, change.breaking) == (
        "input.enable_prompt_expansion",
        "default_changed",
        False,
    )
    assert (change.old, change.new) == (False, True)


@needs_data
def test_history_integer_widened_to_number_and_file_fields_nullable() -> None:
    assert real_triples("fal-ai__stable-audio-25__text-to-audio") == {
        ("input", "input.guidance_scale", "type_widened", False),
        ("input", "input.seed", "nullable_added", False),
        ("output", "output.audio.content_type", "nullable_added", True),
        ("output", "output.audio.file_name", "nullable_added", True),
        ("output", "output.audio.file_size", "nullable_added", True),
        ("output", "output.audio.file_data", "field_removed", True),
    }


@needs_data
def test_history_flux_pro_ultra_inputs_lose_nullability() -> None:
    assert real_triples("fal-ai__flux-pro__v1.1-ultra") == {
        ("input", "input.enable_safety_checker", "field_added", False),
        ("input", "input.image_url", "nullable_removed", True),
        ("input", "input.seed", "nullable_removed", True),
        ("output", "output.images[].content_type", "nullable_removed", False),
    }


@needs_data
def test_history_optional_input_became_required() -> None:
    changes = real_triples("fal-ai__pixverse__v5__transition")
    assert ("input", "input.end_image_url", "field_became_required", True) in changes


@needs_data
def test_history_required_output_fields_became_optional() -> None:
    assert real_triples("fal-ai__elevenlabs__speech-to-text") == {
        ("output", "output.words[].end", "field_became_optional", True),
        ("output", "output.words[].start", "field_became_optional", True),
    }


@needs_data
def test_history_renamed_nested_ref_gains_required_fields() -> None:
    # StructuredPrompt.aesthetics pointed at Aesthetics, now at AestheticsDetails, which
    # adds two required scores and makes its existing fields required.
    changes = real_triples("bria__fibo-lite__generate__structured_prompt")
    prefix = "input.structured_prompt.aesthetics"
    assert ("input", f"{prefix}.aesthetic_score", "field_required_added", True) in changes
    assert ("input", f"{prefix}.preference_score", "field_required_added", True) in changes
    assert ("input", f"{prefix}.composition", "field_became_required", True) in changes


@needs_data
def test_history_output_schema_emptied_upstream_is_breaking() -> None:
    assert real_triples("bria__video__erase__mask") == {("output", "output", "type_widened", True)}


@needs_data
def test_history_dangling_input_root_is_reported_in_both_versions() -> None:
    (change,) = real_diff("openrouter__router__openai__v1__responses").changes
    assert (change.path, change.kind, change.breaking) == ("input", "unresolvable", False)
