"""Names derived from endpoint ids: table-driven."""

from __future__ import annotations

import keyword

import pytest

from falbind_codegen.naming import (
    class_stem,
    endpoint_names,
    is_valid_endpoint_id,
    method_name,
    module_name,
    schema_filename,
)

from support import REGISTRY


@pytest.mark.parametrize(
    ("endpoint_id", "module", "stem", "method"),
    [
        ("fal-ai/flux/schnell", "fal_ai__flux_schnell", "FluxSchnell", "flux_schnell"),
        (
            "fal-ai/flux-pro/v1.1-ultra",
            "fal_ai__flux_pro_v1_1_ultra",
            "FluxProV11Ultra",
            "flux_pro_v1_1_ultra",
        ),
        (
            "bria/text-to-image/3.2",
            "bria__text_to_image_3_2",
            "BriaTextToImage32",
            "bria_text_to_image_3_2",
        ),
        (
            "fal-ai/bytedance/dreamina/v3.1/text-to-image",
            "fal_ai__bytedance_dreamina_v3_1_text_to_image",
            "BytedanceDreaminaV31TextToImage",
            "bytedance_dreamina_v3_1_text_to_image",
        ),
        ("fal-ai/try", "fal_ai__try", "Try", "try_"),
        ("fal-ai/async", "fal_ai__async", "Async", "async_"),
        ("fal-ai/3d-model", "fal_ai__3d_model", "M3dModel", "m_3d_model"),
        ("fal-ai/match", "fal_ai__match", "Match", "match_"),
        ("acme/Flux_Dev", "acme__flux_dev", "AcmeFluxDev", "acme_flux_dev"),
    ],
)
def test_names(endpoint_id: str, module: str, stem: str, method: str) -> None:
    names = endpoint_names(endpoint_id)
    assert (names.module, names.stem, names.method) == (module, stem, method)
    assert module_name(endpoint_id) == module
    assert class_stem(endpoint_id) == stem
    assert method_name(endpoint_id) == method
    for name in (names.module, names.stem, names.method):
        assert name.isidentifier() and not keyword.iskeyword(name)


def test_override_replaces_method_and_stem_but_not_module() -> None:
    names = endpoint_names("fal-ai/flux-pro/v1.1-ultra", "flux_ultra")
    assert names == endpoint_names("fal-ai/flux-pro/v1.1-ultra").__class__(
        module="fal_ai__flux_pro_v1_1_ultra", stem="FluxUltra", method="flux_ultra"
    )


@pytest.mark.parametrize(
    ("endpoint_id", "valid"),
    [
        ("fal-ai/flux/dev", True),
        ("bria/text-to-image/3.2", True),
        ("owner/x", True),
        ("flux", False),
        ("fal-ai/", False),
        ("/fal-ai/flux", False),
        ("fal-ai/flux dev", False),
        ("fal-ai/../etc", False),
        ("fal-ai/flux\n", False),
        ("fal-ai//flux", False),
    ],
)
def test_endpoint_id_grammar(endpoint_id: str, valid: bool) -> None:
    assert is_valid_endpoint_id(endpoint_id) is valid


def test_schema_filename() -> None:
    assert schema_filename("fal-ai/flux-pro/v1.1") == "fal-ai__flux-pro__v1.1.json"


def test_real_ids_give_unique_names() -> None:
    ids = [path.stem.replace("__", "/") for path in (REGISTRY / "schemas").glob("*.json")]
    assert len(ids) > 900
    for attribute in ("module", "stem", "method"):
        values = [getattr(endpoint_names(i), attribute) for i in ids]
        assert len(set(values)) == len(values), attribute
