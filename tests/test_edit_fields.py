"""The one image-edit field mapping shared by the gateway and the LiteLLM provider."""

from __future__ import annotations

from typing import Any

import pytest

import falbind
from falbind.images.edit_fields import EditFields, EditRefusedError, edit_fields
from falbind.models.base import field_schemas

STRING: dict[str, Any] = {"type": "string"}


def props(*names: str) -> dict[str, Any]:
    return {name: STRING for name in ("prompt", *names)}


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        (props("image_urls"), EditFields("image_urls", None, None)),
        (props("image_url"), EditFields(None, "image_url", None)),
        (props("image_url", "mask_url"), EditFields(None, "image_url", "mask_url")),
        (props("image_url", "mask_image_url"), EditFields(None, "image_url", "mask_image_url")),
        (
            props("inpaint_image_url", "mask_image_url"),
            EditFields(None, "inpaint_image_url", "mask_image_url"),
        ),
        # Both present: the list field and the first names win.
        (
            props("image_urls", "image_url", "mask_image_url", "mask_url"),
            EditFields("image_urls", "image_url", "mask_url"),
        ),
        (props(), EditFields(None, None, None)),
        (props("control_image_url", "mask_video_url"), EditFields(None, None, None)),
    ],
)
def test_fields_found_in_the_input_properties(
    properties: dict[str, Any], expected: EditFields
) -> None:
    assert edit_fields(properties) == expected


@pytest.mark.parametrize(
    ("endpoint_id", "expected"),
    [
        ("fal-ai/flux-2/klein/9b/edit", EditFields("image_urls", None, None)),
        ("fal-ai/flux-lora/inpainting", EditFields(None, "image_url", "mask_url")),
        ("fal-ai/fooocus/inpaint", EditFields(None, "inpaint_image_url", "mask_image_url")),
        ("fal-ai/flux/dev", EditFields(None, None, None)),
    ],
)
def test_fields_of_bound_endpoints(endpoint_id: str, expected: EditFields) -> None:
    input_model = falbind.ENDPOINTS[endpoint_id].input_model
    assert edit_fields(field_schemas(input_model)) == expected


LIST = EditFields("image_urls", None, None)
SINGLE = EditFields(None, "image_url", None)
INPAINT = EditFields(None, "image_url", "mask_image_url")
NONE = EditFields(None, None, None)


@pytest.mark.parametrize(
    ("fields", "images", "mask", "model_name", "param", "code", "message"),
    [
        (
            NONE,
            1,
            False,
            "dev",
            "image",
            "invalid_value",
            "model 'dev' (fal-ai/x) takes no input image; use /v1/images/generations",
        ),
        (
            NONE,
            1,
            False,
            None,
            "image",
            "invalid_value",
            "fal-ai/x takes no input image; use /v1/images/generations",
        ),
        (
            SINGLE,
            2,
            False,
            "one",
            "image",
            "invalid_value",
            "model 'one' (fal-ai/x) takes one image (image_url), not 2",
        ),
        (SINGLE, 0, False, None, "image", "invalid_value", "fal-ai/x: an image edit needs"),
        (LIST, 0, False, None, "image", "invalid_value", "fal-ai/x: an image edit needs"),
        (LIST, 1, True, None, "mask", "unknown_parameter", "fal-ai/x takes no mask"),
        (SINGLE, 1, True, "m", "mask", "unknown_parameter", "model 'm' (fal-ai/x) takes no mask"),
    ],
)
def test_refusals_name_the_endpoint_and_the_form_field(
    fields: EditFields,
    images: int,
    mask: bool,
    model_name: str | None,
    param: str,
    code: str,
    message: str,
) -> None:
    with pytest.raises(EditRefusedError) as caught:
        fields.check("fal-ai/x", images=images, mask=mask, model_name=model_name)
    assert str(caught.value).startswith(message)
    assert (caught.value.param, caught.value.code) == (param, code)
    assert isinstance(caught.value, ValueError)  # what the LiteLLM provider turns into a 400


@pytest.mark.parametrize(
    ("fields", "images", "mask"),
    [
        (LIST, 1, False),
        (LIST, 5, False),
        (SINGLE, 1, False),
        (INPAINT, 1, True),
        (INPAINT, 1, False),
    ],
)
def test_accepted_edits(fields: EditFields, images: int, mask: bool) -> None:
    fields.check("fal-ai/x", images=images, mask=mask)


@pytest.mark.parametrize(
    ("fields", "images", "mask", "expected"),
    [
        (LIST, ["a", "b"], None, {"image_urls": ["a", "b"]}),
        (SINGLE, ["a"], None, {"image_url": "a"}),
        (INPAINT, ["a"], "m", {"image_url": "a", "mask_image_url": "m"}),
        (INPAINT, ["a"], None, {"image_url": "a"}),
        (
            EditFields("image_urls", None, "mask_url"),
            ["a"],
            "m",
            {"image_urls": ["a"], "mask_url": "m"},
        ),
    ],
)
def test_place_maps_values_onto_the_fields(
    fields: EditFields, images: list[str], mask: str | None, expected: dict[str, Any]
) -> None:
    assert fields.place(images, mask) == expected
