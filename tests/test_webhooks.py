"""Webhook deliveries decoded into the endpoint's Output model or its error."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

import falbind
from falbind.client.errors import FalDecodeError, FalRequestFailedError
from falbind.client.webhooks import parse_webhook
from falbind.testing.fake_outputs import OutputContext, synthesize_output

SCHNELL = "fal-ai/flux/schnell"


def _output() -> dict[str, object]:
    model = falbind.ENDPOINTS[SCHNELL].output_model
    return synthesize_output(model, OutputContext("http://127.0.0.1:1"))


def test_ok_delivery_gives_the_typed_output_from_bytes_text_or_mapping() -> None:
    delivery = {
        "request_id": "r1",
        "gateway_request_id": "g1",
        "status": "OK",
        "payload": _output(),
    }
    for body in (json.dumps(delivery).encode(), json.dumps(delivery), delivery):
        result = parse_webhook(body, SCHNELL)
        assert result.ok and result.error is None
        assert isinstance(result.output, falbind.ENDPOINTS[SCHNELL].output_model)
        assert (result.request_id, result.gateway_request_id) == ("r1", "g1")
        assert result.output_or_raise() is result.output


def test_error_delivery_gives_the_error() -> None:
    body = {
        "request_id": "r2",
        "gateway_request_id": "g2",
        "status": "ERROR",
        "error": "Invalid status code: 422",
        "payload": {"detail": [{"loc": ["body", "prompt"], "msg": "field required"}]},
    }
    result = parse_webhook(body, SCHNELL)
    assert not result.ok and result.output is None
    assert result.error == "Invalid status code: 422"
    assert result.raw.payload["detail"][0]["msg"] == "field required"
    with pytest.raises(FalRequestFailedError, match="422"):
        result.output_or_raise()
    no_error_text = parse_webhook({**body, "error": None, "payload": {"detail": "boom"}}, SCHNELL)
    assert no_error_text.error == "boom"


def test_payload_error_means_no_output() -> None:
    body = {"request_id": "r3", "status": "OK", "payload": None, "payload_error": "too large"}
    result = parse_webhook(body, SCHNELL)
    assert result.output is None and result.payload_error == "too large"
    with pytest.raises(FalRequestFailedError, match="too large"):
        result.output_or_raise()


def test_bad_deliveries_are_refused() -> None:
    with pytest.raises(ValidationError):
        parse_webhook({"request_id": "r", "status": "MAYBE"}, SCHNELL)
    with pytest.raises(ValueError):
        parse_webhook(b"not json", SCHNELL)
    with pytest.raises(FalDecodeError, match="FluxSchnellOutput"):
        parse_webhook(
            {"request_id": "r", "status": "OK", "payload": {"images": 3}},
            SCHNELL,
            strict_outputs=True,
        )
    with pytest.raises(falbind.UnknownEndpointError):
        parse_webhook({"request_id": "r", "status": "OK", "payload": {}}, "fal-ai/nope")


def test_untyped_keeps_the_dict() -> None:
    body = {"request_id": "r", "status": "OK", "payload": {"anything": 1}}
    assert parse_webhook(body, "my-org/app", untyped=True).output == {"anything": 1}
