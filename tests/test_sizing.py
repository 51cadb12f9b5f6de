"""OpenAI-style sizes mapped onto each model's own size parameter (pure planning; the bodies sent
over the wire are asserted by the image-generation tests)."""

from __future__ import annotations

import math

import pytest

import falbind
from falbind.images.sizing import (
    SizeCapability,
    SizeError,
    SizeLimits,
    capability_for,
    parse_size,
    plan_for,
    plan_size,
)
from falbind.models.bindings import sizes as _sizes

from starting_set import STARTING_SET

SIZES = (
    "256x256",
    "512x512",
    "1024x1024",
    "1792x1024",
    "1024x1792",
    "1536x1024",
    "1024x1536",
    "1200x800",
    "900x1200",
    "auto",
)
EXACT = (
    "256x256",
    "512x512",
    "1024x1024",
    "1792x1024",
    "1024x1792",
    "1536x1024",
    "1024x1536",
    "1200x800",
    "900x1200",
)


def custom(field: str = "image_size", minimum: int | None = None) -> dict[str, object]:
    """Every size sent exactly as {width, height} (sides below ``minimum`` scaled up)."""
    expected: dict[str, object] = {}
    for size in EXACT:
        width, height = map(int, size.split("x"))
        if minimum and min(width, height) < minimum:
            scale = minimum / min(width, height)
            width, height = round(width * scale), round(height * scale)
        expected[size] = {field: {"width": width, "height": height}}
    expected["auto"] = {}
    return expected


def ratios(mapping: dict[str, str]) -> dict[str, object]:
    return {size: {"aspect_ratio": ratio} for size, ratio in mapping.items()} | {"auto": {}}


ULTRA_BRIA = ratios(
    {
        "256x256": "1:1",
        "512x512": "1:1",
        "1024x1024": "1:1",
        "1792x1024": "16:9",
        "1024x1792": "9:16",
        "1536x1024": "3:2",
        "1024x1536": "2:3",
        "1200x800": "3:2",
        "900x1200": "3:4",
    }
)
IMAGEN = ratios(
    {
        "256x256": "1:1",
        "512x512": "1:1",
        "1024x1024": "1:1",
        "1792x1024": "16:9",
        "1024x1792": "9:16",
        "1536x1024": "4:3",
        "1024x1536": "3:4",
        "1200x800": "4:3",
        "900x1200": "3:4",
    }
)

EXPECTED: dict[str, dict[str, object]] = {
    "fal-ai/flux/schnell": custom(),
    "fal-ai/flux/dev": custom(),
    "fal-ai/flux-pro/v1.1": custom(),
    "fal-ai/flux-pro/v1.1-ultra": ULTRA_BRIA,
    "fal-ai/bytedance/seedream/v3/text-to-image": custom(minimum=512),
    "fal-ai/bytedance/dreamina/v3.1/text-to-image": custom(minimum=512),
    "fal-ai/imagen4/preview": IMAGEN,
    "fal-ai/recraft/v3/text-to-image": custom(),
    "fal-ai/recraft-v3": custom(),
    "fal-ai/ideogram/v3": custom(),
    "fal-ai/stable-diffusion-v35-medium": custom(),
    "bria/text-to-image/3.2": ULTRA_BRIA,
    "fal-ai/fast-sdxl": custom(),
}


def test_table_covers_the_starting_set() -> None:
    assert set(EXPECTED) == set(STARTING_SET)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("endpoint_id", list(EXPECTED))
def test_starting_set_size_plans(endpoint_id: str, size: str) -> None:
    plan = plan_for(endpoint_id, size)
    assert plan.params == EXPECTED[endpoint_id][size]
    # The request built from the plan validates against the model's own schema.
    falbind.ENDPOINTS[endpoint_id].input_model.model_validate(
        {"prompt": "a red fox", **plan.params}
    )
    if plan.adjusted:
        assert plan.note
        with pytest.raises(SizeError, match=endpoint_id):
            plan_for(endpoint_id, size, strict=True)
    else:
        assert plan_for(endpoint_id, size, strict=True) == plan


def test_flux_keeps_1792x1024() -> None:
    plan = plan_for("fal-ai/flux/dev", "1792x1024", strict=True)
    assert plan.params == {"image_size": {"width": 1792, "height": 1024}}
    assert not plan.adjusted


def test_seedream_256_is_scaled_up_and_reported() -> None:
    plan = plan_for("fal-ai/bytedance/seedream/v3/text-to-image", "256x256")
    assert plan.adjusted and plan.delivered == "512x512"
    assert "sides >= 512" in (plan.note or "")


def _orientation(width: float, height: float) -> int:
    return (width > height) - (width < height)


TEXT_TO_IMAGE = sorted(i for i, s in falbind.ENDPOINTS.items() if s.category == "text-to-image")


@pytest.mark.parametrize("endpoint_id", TEXT_TO_IMAGE)
def test_no_text_to_image_model_flips_orientation_or_shrinks_silently(endpoint_id: str) -> None:
    capability = capability_for(endpoint_id)
    for size in EXACT:
        width, height = map(int, size.split("x"))
        plan = plan_for(endpoint_id, size)
        value = next(iter(plan.params.values()), None)
        if isinstance(value, dict):
            assert _orientation(value["width"], value["height"]) == _orientation(width, height)
            if (value["width"], value["height"]) != (width, height):
                assert plan.adjusted, (endpoint_id, size)
        elif capability.kind == "aspect_ratio" and isinstance(value, str):
            offered = [v for v in capability.presets if ":" in v]
            same_side = [
                v
                for v in offered
                if _orientation(*map(float, v.split(":"))) == _orientation(width, height)
            ]
            if same_side:
                assert _orientation(*map(float, value.split(":"))) == _orientation(width, height), (
                    endpoint_id,
                    size,
                )
        elif isinstance(value, str) and value in _sizes.PRESETS:
            pw, ph = _sizes.PRESETS[value]
            assert _orientation(pw, ph) == _orientation(width, height) or not any(
                _orientation(*_sizes.PRESETS[p]) == _orientation(width, height)
                for p in capability.presets
                if p in _sizes.PRESETS
            )
            assert plan.adjusted == ((pw, ph) != (width, height))
        if not plan.params:
            assert plan.adjusted or size == "auto"


PRESET_ONLY = SizeCapability(
    kind="image_size",
    parameter="image_size",
    presets=("square_hd", "portrait_16_9", "landscape_4_3", "landscape_16_9", "auto"),
)


@pytest.mark.parametrize(
    ("size", "preset", "adjusted"),
    [
        ("1024x1024", "square_hd", False),
        ("512x512", "square_hd", True),
        ("1792x1024", "landscape_16_9", True),
        ("1024x1792", "portrait_16_9", True),
        ("1200x800", "landscape_4_3", True),
        ("auto", "auto", False),
    ],
)
def test_preset_only_picks_nearest_ratio_then_area(size: str, preset: str, adjusted: bool) -> None:
    plan = plan_size(PRESET_ONLY, size, _sizes.PRESETS, model="m")
    assert plan.params == {"image_size": preset}
    assert plan.adjusted is adjusted


@pytest.mark.parametrize(
    ("limits", "size", "expected"),
    [
        (SizeLimits(min_side=1, max_side=1440, multiple_of=32), "1792x1024", (1440, 832)),
        (SizeLimits(min_side=1, max_side=None, multiple_of=64), "1000x1000", (1024, 1024)),
        (SizeLimits(min_side=512, max_side=2048, multiple_of=1), "4096x1024", (2048, 512)),
    ],
)
def test_custom_sizes_are_fitted_keeping_the_ratio(
    limits: SizeLimits, size: str, expected: tuple[int, int]
) -> None:
    capability = SizeCapability(
        kind="image_size", parameter="image_size", custom=True, limits=limits
    )
    plan = plan_size(capability, size, _sizes.PRESETS, model="m")
    assert plan.params == {"image_size": {"width": expected[0], "height": expected[1]}}
    assert plan.adjusted and plan.note
    width, height = map(int, size.split("x"))
    assert math.isclose(expected[0] / expected[1], width / height, rel_tol=0.05)


def test_log_space_keeps_portrait_portrait() -> None:
    capability = SizeCapability(
        kind="aspect_ratio", parameter="aspect_ratio", presets=("16:9", "1:1", "4:5")
    )
    assert plan_size(capability, "900x1200", _sizes.PRESETS, model="m").params == {
        "aspect_ratio": "4:5"
    }


def test_model_without_size_parameter() -> None:
    plan = plan_size(SizeCapability(kind="none"), "1024x1024", _sizes.PRESETS, model="m")
    assert plan.params == {} and plan.adjusted
    with pytest.raises(SizeError, match="takes no size parameter"):
        plan_size(SizeCapability(kind="none"), "1024x1024", _sizes.PRESETS, model="m", strict=True)


@pytest.mark.parametrize("size", ["1024", "1024x", "x1024", "0x10", "big", "10x-1"])
def test_bad_sizes(size: str) -> None:
    with pytest.raises(SizeError, match="WIDTHxHEIGHT"):
        parse_size(size)


def test_readme_shows_the_current_starting_set_table() -> None:
    from falbind.images.sizing import size_table

    from support import ROOT

    readme = (ROOT / "README.md").read_text()
    for line in size_table(list(STARTING_SET)).splitlines()[2:]:
        assert line in readme, line
