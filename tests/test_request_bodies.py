"""Request bodies are serialised straight to JSON bytes (issue 11): byte for byte the bodies of
the two-step path they replace (``model_dump(mode="json", by_alias=True, exclude_unset=True)``
then ``pydantic_core.to_json``), for a synthesised request of every bound endpoint and for the
values where pydantic's two serialisers could part (non-finite floats, ``None``, non-ASCII)."""

from __future__ import annotations

import enum
import math
from collections import Counter
from typing import Any

import pydantic_core
import pytest
from pydantic import BaseModel, Field

import falbind
from falbind.client._core import Endpoint, request_json
from falbind.models.base import RequestModel
from falbind.models.index import EndpointSpec
from falbind.testing.fake_outputs import OutputContext, synthesize_output

CONTEXT = OutputContext("http://127.0.0.1:1")
NON_ASCII = " — un renard roux 🦊 dans la neige, é\u2028ü"


def _before(model: BaseModel) -> bytes:
    """The body as it was written before: a JSON-mode dump, then pydantic_core's encoder."""
    return pydantic_core.to_json(model.model_dump(mode="json", by_alias=True, exclude_unset=True))


def _richer(value: Any) -> Any:
    """``value`` with its synthesised text made non-ASCII and its floats given many digits."""
    if isinstance(value, str) and (value.startswith("fake ") or value == "a fake prompt"):
        return value + NON_ASCII
    if isinstance(value, float):
        return value * 0.7 + 0.1
    if isinstance(value, dict):
        return {key: _richer(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_richer(item) for item in value]
    return value


def _valid(model: type[BaseModel], data: dict[str, Any]) -> bool:
    try:
        model.model_validate(data)
    except Exception:
        return False
    return True


def _arguments(spec: EndpointSpec) -> dict[str, Any]:
    """A valid request for ``spec``: the required fields filled from the schema, then each
    optional field and each richer value (non-ASCII text, many-digit floats) kept where the
    model accepts it."""
    model = spec.input_model
    data = synthesize_output(model, CONTEXT)
    assert _valid(model, data), spec.id
    for key, value in synthesize_output(model, CONTEXT, every_field=True).items():
        if key not in data:
            data[key] = value
            if not _valid(model, data):
                del data[key]
    for key, value in list(data.items()):
        data[key] = _richer(value)
        if not _valid(model, data):
            data[key] = value
    return data


def _kinds(value: Any, seen: Counter[str]) -> None:
    if isinstance(value, str) and not value.isascii():
        seen["non-ASCII text"] += 1
    elif isinstance(value, float):
        seen["float"] += 1
    elif isinstance(value, dict):
        seen["object"] += 1
        for item in value.values():
            _kinds(item, seen)
    elif isinstance(value, list):
        for item in value:
            _kinds(item, seen)


def test_every_endpoints_body_is_byte_identical() -> None:
    seen: Counter[str] = Counter()
    differ = []
    for endpoint_id, spec in falbind.ENDPOINTS.items():
        arguments = _arguments(spec)
        validated = spec.input_model.model_validate(arguments)
        expected = _before(validated)
        endpoint = Endpoint(endpoint_id, spec)
        from_mapping = endpoint.build_body(arguments, {}, None)
        from_model = endpoint.build_body(validated, {}, None)
        if not (from_mapping == from_model == expected):
            differ.append(endpoint_id)
        _kinds(pydantic_core.from_json(expected), seen)
        fields = type(validated).model_fields
        seen["enum"] += any(
            "Literal[" in repr(fields[name].annotation) for name in validated.model_fields_set
        )
    assert len(falbind.ENDPOINTS) > 900
    assert differ == []
    # The bodies exercised what matters: nested objects, floats, non-ASCII text, enums (a
    # schema's enum is a Literal field).
    assert min(seen["object"], seen["float"], seen["non-ASCII text"], seen["enum"]) > 100, seen


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Inner(RequestModel):
    weight: float | None = None
    label: str | None = None


class Sample(RequestModel):
    ratio: float | None = None
    colour: Colour | None = None
    inner: Inner | None = None
    items: list[Inner] | None = None
    text: str | None = None
    extra: dict[str, Any] | None = None
    count: int | None = None
    camel: int | None = Field(default=None, alias="camelCase")


SAMPLES: dict[str, dict[str, Any]] = {
    "empty": {},
    "plain": {"ratio": 0.1 + 0.2, "colour": "blue", "text": "a fox", "camelCase": 3},
    "non-ASCII and escapes": {"text": 'é 🦊 \u2028 \x00 \t "quoted" \\ </script>'},
    "nested": {"inner": {"weight": 1e-7, "label": "ü"}, "items": [{"weight": 2.5}, {}]},
    "None set": {"text": None, "inner": None},
    "text null": {"text": "null"},
    "infinity": {"ratio": math.inf},
    "minus infinity": {"ratio": -math.inf, "text": "x"},
    "NaN": {"inner": {"weight": math.nan}},
    "NaN in a dict": {"extra": {"a": math.nan, "b": [1.5, math.inf, None]}},
    "big numbers": {"count": 2**70, "ratio": 1e300, "extra": {"n": -(2**64), "f": 5e-324}},
    "enum in a dict": {"extra": {"colour": Colour.RED}},
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_special_values_are_written_as_before(name: str) -> None:
    model = Sample.model_validate(SAMPLES[name])
    assert request_json(model) == _before(model)


def test_extra_body_and_keyword_arguments_keep_their_path() -> None:
    spec = falbind.ENDPOINTS.resolve("fal-ai/flux/schnell")
    endpoint = Endpoint(spec.id, spec)
    arguments = {"prompt": "un renard" + NON_ASCII, "guidance_scale": 3.3}
    body = endpoint.build_body(arguments, {"seed": 7}, {"custom": "x"})
    expected = _before(spec.input_model.model_validate({**arguments, "seed": 7}))
    assert body == expected[:-1] + b',"custom":"x"}'
    model = spec.input_model.model_validate(arguments)
    assert endpoint.build_body(model, {"seed": 7}, None) == expected
