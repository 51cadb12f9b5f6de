"""The generator's edits of datamodel-code-generator's modules, made in one pass over one parse
(``edit_fields``), equal the two edits made one after the other, each on its own parse."""

from __future__ import annotations

import ast

import pytest

from falbind_codegen.normalise import NormalisedEndpoint
from falbind_codegen.render import (
    drop_null_from_non_nullable,
    edit_fields,
    input_parameters,
    mark_structured_defaults,
)

BODY = """from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from falbind.models.base import RequestModel, ResponseModel


class ImageSize(RequestModel):
    width: Annotated[int, Field(ge=1)] = 512
    height: int = 512


class DemoInput(RequestModel):
    prompt: str
    image_size: ImageSize | Literal['square', 'wide'] | None = {'width': 1024, 'height': 768}
    sizes: list[ImageSize] | None = [{'width': 1, 'height': 2}, {'width': 3, 'height': 4}]
    seed: Annotated[int | None, Field(description='Seed — the same one, the same image.')] = None
    note: Annotated[str | None, Field(alias='the note')] = None
    maybe: Annotated[str | None, Field()] = None
    count: int | None = None


class DemoOutput(ResponseModel):
    seed: int | None = None
    images: list[dict[str, str]] | None = [{'url': 'x'}]
"""

SCHEMAS = {
    "ImageSize": {"type": "object", "properties": {"width": {}, "height": {}}},
    "DemoInput": {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "prompt": {"type": "string"},
            "image_size": {"anyOf": [{"$ref": "#/components/schemas/ImageSize"}]},
            "sizes": {"type": "array"},
            "seed": {"type": "integer"},
            "the note": {"type": "string"},
            "maybe": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "count": {"type": "integer", "default": 1},
        },
    },
    "DemoOutput": {"type": "object", "properties": {"seed": {"type": "integer"}}},
}

NORMALISED = NormalisedEndpoint(
    input_name="DemoInput",
    output_name="DemoOutput",
    schemas=SCHEMAS,
    request_models=frozenset({"ImageSize", "DemoInput"}),
    response_models=frozenset({"DemoOutput"}),
)


def test_one_pass_equals_the_two_edits_in_turn() -> None:
    one_pass, _ = edit_fields(BODY, ast.parse(BODY), NORMALISED)
    in_turn = drop_null_from_non_nullable(mark_structured_defaults(BODY), NORMALISED)
    assert one_pass == in_turn
    # The edits did happen: both defaults wrapped, seed and the note made non-nullable.
    assert one_pass.count("structured_default(") == 3
    assert "seed: Annotated[int, Field(description=" in one_pass
    assert "note: Annotated[str, Field(alias='the note')] = omitted()" in one_pass
    assert "maybe: Annotated[str | None, Field()] = None" in one_pass
    assert "count: int | None = None" in one_pass
    assert "from falbind.models.base import omitted, structured_default, RequestModel" in one_pass


def test_parameters_read_from_the_first_parse_match_the_edited_module() -> None:
    tree = ast.parse(BODY)
    edited, narrowed = edit_fields(BODY, tree, NORMALISED)
    assert input_parameters(BODY, "DemoInput", tree, narrowed) == input_parameters(
        edited, "DemoInput"
    )


def test_a_none_that_cannot_be_cut_cleanly_is_refused() -> None:
    """``(A | B) | None``: cutting `` | None`` after ``A | B`` would leave a parenthesis open;
    the module was not parsed again, so the edit is refused rather than made."""
    body = BODY.replace(
        "count: int | None = None", "count: int | None = None\n    odd: (int | str) | None = None"
    )
    normalised = NormalisedEndpoint(
        input_name="DemoInput",
        output_name="DemoOutput",
        schemas={
            **SCHEMAS,
            "DemoInput": {
                **SCHEMAS["DemoInput"],
                "properties": {**SCHEMAS["DemoInput"]["properties"], "odd": {"type": "integer"}},
            },
        },
        request_models=NORMALISED.request_models,
        response_models=NORMALISED.response_models,
    )
    with pytest.raises(ValueError, match=r"DemoInput\.odd: cannot drop None"):
        edit_fields(body, ast.parse(body), normalised)
