"""The committed bindings: every endpoint imports, validates its own example input, rejects an
unknown key; the index is read-only and lazy; errors help."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest
from pydantic import BaseModel, RootModel, ValidationError

import falbind
from falbind import ENDPOINTS

from starting_set import STARTING_SET
from support import GENERATED, ROOT, example_input

ALL_IDS = sorted(ENDPOINTS)


def test_every_registry_entry_is_bound_or_listed_with_a_reason() -> None:
    manifest = json.loads((GENERATED / "_manifest.json").read_text())
    registered = {
        line.split("id: ", 1)[1]
        for line in (ROOT / "registry" / "models.yaml").read_text().splitlines()
        if line.startswith("- id: ")
    }
    assert set(ENDPOINTS) | set(falbind.UNBOUND) == registered
    assert not set(ENDPOINTS) & set(falbind.UNBOUND)
    assert len(registered) >= 938
    assert dict(falbind.UNBOUND) == manifest["unbound"]
    assert all(reason for reason in falbind.UNBOUND.values())
    readme = (ROOT / "README.md").read_text()
    assert f"{len(ENDPOINTS)} of {len(registered)}" in readme
    for endpoint_id in falbind.UNBOUND:
        assert endpoint_id in readme


def test_starting_set_is_bound() -> None:
    for endpoint_id in STARTING_SET:
        assert endpoint_id in ENDPOINTS


@pytest.mark.parametrize("endpoint_id", ALL_IDS)
def test_endpoint_binding(endpoint_id: str) -> None:
    spec = ENDPOINTS[endpoint_id]
    model = spec.input_model
    assert model.__name__ == f"{spec.class_stem}Input"
    assert spec.output_model.__name__ == f"{spec.class_stem}Output"
    arguments = example_input(model)
    instance = model.model_validate(arguments)
    assert instance.model_dump(by_alias=True, exclude_unset=True).keys() == arguments.keys()
    with pytest.raises(ValidationError) as info:
        model.model_validate({**arguments, "definitely_not_a_parameter": 1})
    error = info.value.errors()[0]
    assert error["type"] == "unknown_parameter"
    assert error["loc"] == ("definitely_not_a_parameter",)
    assert endpoint_id in error["msg"]
    module = spec.module
    assert endpoint_id == module.ENDPOINT_ID
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) and issubclass(obj, BaseModel) and not issubclass(obj, RootModel):
            assert issubclass(obj, (falbind.RequestModel, falbind.ResponseModel)), name


def test_unknown_parameter_names_endpoint_field_and_suggestion() -> None:
    model = ENDPOINTS["fal-ai/flux/schnell"].input_model
    with pytest.raises(ValidationError) as info:
        model(prompt="x", num_image=2)
    (error,) = info.value.errors()
    assert error["loc"] == ("num_image",)
    assert "fal-ai/flux/schnell" in error["msg"] and "'num_images'" in error["msg"]
    assert error["ctx"]["suggestions"] == ["num_images"]
    assert "fal-ai/flux/schnell" in str(info.value)


def test_unknown_nested_parameter_is_explained_with_the_nested_fields() -> None:
    model = ENDPOINTS["fal-ai/flux/schnell"].input_model
    with pytest.raises(ValidationError) as info:
        model(prompt="x", image_size={"width": 512, "heigth": 512})
    unknown = [e for e in info.value.errors() if e["type"] == "unknown_parameter"]
    assert unknown and unknown[0]["ctx"]["suggestions"] == ["height"]


def test_aspect_ratio_on_a_model_that_takes_image_size() -> None:
    model = ENDPOINTS["fal-ai/flux/dev"].input_model
    with pytest.raises(ValidationError, match="unknown parameter 'aspect_ratio'"):
        model(prompt="x", aspect_ratio="16:9")


def test_wrong_enum_lists_allowed_values() -> None:
    model = ENDPOINTS["fal-ai/flux-pro/v1.1"].input_model
    with pytest.raises(ValidationError) as info:
        model(prompt="x", output_format="gif")
    assert "'jpeg'" in str(info.value) and "'png'" in str(info.value)


def test_preset_the_model_does_not_accept() -> None:
    model = ENDPOINTS["fal-ai/flux/schnell"].input_model
    with pytest.raises(ValidationError, match="square_hd"):
        model(prompt="x", image_size="square_xl")


def test_out_of_range_number_names_the_bound() -> None:
    model = ENDPOINTS["fal-ai/flux/schnell"].input_model
    with pytest.raises(ValidationError, match="less than or equal to 4"):
        model(prompt="x", num_images=5)
    with pytest.raises(ValidationError, match="greater than 0"):
        model(prompt="x", image_size={"width": 0, "height": 10})


def test_open_enum_accepts_other_strings() -> None:
    model = ENDPOINTS["fal-ai/flux-pro/v1.1-ultra"].input_model
    assert model(prompt="x", aspect_ratio="5:4").to_body() == {"prompt": "x", "aspect_ratio": "5:4"}


def test_body_holds_only_what_the_caller_set() -> None:
    model = ENDPOINTS["fal-ai/flux/schnell"].input_model
    request = model(prompt="x", seed=None, image_size={"width": 1792, "height": 1024})
    assert request.to_body() == {
        "prompt": "x",
        "seed": None,
        "image_size": {"width": 1792, "height": 1024},
    }


def test_output_keeps_unknown_fields() -> None:
    model = ENDPOINTS["fal-ai/flux/schnell"].output_model
    output = model.model_validate(
        {
            "images": [{"url": "u", "width": 1, "height": 1, "new_field": 1}],
            "timings": {},
            "seed": 1,
            "has_nsfw_concepts": [False],
            "prompt": "p",
            "added_later": True,
        }
    )
    assert output.model_extra == {"added_later": True}
    assert output.images[0].model_extra == {"new_field": 1}  # type: ignore[attr-defined]


def test_endpoints_is_read_only_and_explains_unknown_ids() -> None:
    with pytest.raises(TypeError):
        ENDPOINTS["x/y"] = ENDPOINTS["fal-ai/flux/dev"]  # type: ignore[index]
    with pytest.raises(KeyError, match="did you mean 'fal-ai/flux/dev'"):
        ENDPOINTS["fal-ai/flux/dew"]
    spec = ENDPOINTS["fal-ai/flux-pro/v1.1-ultra"]
    assert (spec.id, spec.name, spec.category) == (
        "fal-ai/flux-pro/v1.1-ultra",
        "flux_pro_v1_1_ultra",
        "text-to-image",
    )
    assert ENDPOINTS.by_name("flux_pro_v1_1_ultra") is spec
    assert falbind.ALIASES == {} or all(v in ENDPOINTS for v in falbind.ALIASES.values())


def test_models_are_importable_by_name_from_the_package() -> None:
    assert falbind.FluxSchnellInput is ENDPOINTS["fal-ai/flux/schnell"].input_model
    with pytest.raises(AttributeError):
        falbind.NoSuchModelInput  # noqa: B018


@pytest.mark.slow
def test_import_is_lazy() -> None:
    code = (
        "import sys, falbind\n"
        "loaded = [m for m in sys.modules if m.startswith('falbind_generated.endpoints.')]\n"
        "assert loaded == [], loaded\n"
        "falbind.ENDPOINTS['fal-ai/flux/dev'].input_model\n"
        "loaded = [m for m in sys.modules if m.startswith('falbind_generated.endpoints.')]\n"
        "assert loaded == ['falbind_generated.endpoints.fal_ai__flux_dev'], loaded\n"
        "assert len(falbind.ENDPOINTS) > 900\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fal-ai/flux-pro/v1.1-ultra", "fal-ai/flux-pro/v1.1-ultra"),
        ("flux-ultra", "fal-ai/flux-pro/v1.1-ultra"),
        ("flux_pro_v1_1_ultra", "fal-ai/flux-pro/v1.1-ultra"),
    ],
)
def test_resolve_takes_ids_aliases_and_python_names(name: str, expected: str) -> None:
    assert ENDPOINTS.resolve(name).id == expected
    assert ENDPOINTS.canonical_id("flux-ultra") == "fal-ai/flux-pro/v1.1-ultra"
    assert ENDPOINTS.canonical_id("fal-ai/flux/dev") == "fal-ai/flux/dev"


def test_resolve_refuses_unknown_names_with_suggestions() -> None:
    with pytest.raises(falbind.UnknownEndpointError) as info:
        ENDPOINTS.resolve("flux-ultr")
    assert info.value.suggestions[0] == "flux-ultra"
    assert "did you mean 'flux-ultra'" in str(info.value)
