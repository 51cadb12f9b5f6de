"""fal's webhook deliveries: a typed payload model and a parser to the endpoint's Output model.

fal POSTs ``{request_id, gateway_request_id, status: "OK" | "ERROR", payload, error?,
payload_error?}`` to the ``webhook_url`` of a queued request, and retries delivery, so a
receiver should be idempotent on ``request_id``. (Checking fal's signature headers is up to the
receiving web framework; this module only decodes the body.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from ._core import decode_output, resolve_endpoint
from .errors import FalRequestFailedError

__all__ = ["WebhookPayload", "WebhookResult", "parse_webhook"]

OutputT = TypeVar("OutputT")


class WebhookPayload(BaseModel):
    """The JSON body of a fal webhook delivery (unknown fields are kept)."""

    model_config = ConfigDict(extra="allow")

    request_id: str
    gateway_request_id: str | None = None
    status: Literal["OK", "ERROR"]
    payload: Any = None
    """The output (status OK) or fal's error body (status ERROR)."""
    error: str | None = None
    payload_error: str | None = None
    """Set when fal could not include the output; fetch it with ``get_handle(...).result()``."""


@dataclass(frozen=True, slots=True)
class WebhookResult(Generic[OutputT]):
    """A decoded delivery: ``output`` (the endpoint's Output model) or ``error``."""

    request_id: str
    gateway_request_id: str | None
    output: OutputT | None
    error: str | None
    payload_error: str | None
    raw: WebhookPayload

    @property
    def ok(self) -> bool:
        """True when the request succeeded and its output came with the delivery."""
        return self.output is not None

    def output_or_raise(self) -> OutputT:
        """The output; :class:`~falbind.FalRequestFailedError` when the request failed or the
        output was left out (``payload_error``)."""
        if self.output is not None:
            return self.output
        error = self.error or self.payload_error or "no output in the webhook delivery"
        raise FalRequestFailedError(
            f"request {self.request_id} failed: {error}", request_id=self.request_id, error=error
        )


def parse_webhook(
    body: bytes | str | Mapping[str, Any],
    endpoint_id: str,
    *,
    untyped: bool = False,
    strict_outputs: bool = False,
) -> WebhookResult[Any]:
    """Decode a webhook body (raw bytes/text or parsed JSON) sent for ``endpoint_id``.

    ``ValueError`` (a pydantic ``ValidationError``) when the body is not fal's webhook shape.
    An OK payload that does not match the Output model is still decoded as that model, with
    ``schema_mismatch`` and an :class:`~falbind.OutputSchemaWarning` (as every client call);
    ``strict_outputs=True`` raises :class:`~falbind.FalDecodeError` (with the payload) instead.
    ``untyped=True`` keeps the output a dict, for ids the registry does not bind.
    """
    endpoint = resolve_endpoint(endpoint_id, untyped=untyped)
    data = json.loads(body) if isinstance(body, bytes | str) else dict(body)
    delivery = WebhookPayload.model_validate(data)
    output: Any = None
    if delivery.status == "OK" and delivery.payload is not None and delivery.payload_error is None:
        if endpoint.spec is None:
            output = delivery.payload
        else:
            output = decode_output(
                endpoint.spec.output_model,
                delivery.payload,
                source=f"the webhook payload for {endpoint.id}",
                strict=strict_outputs,
                status_code=200,
                request_id=delivery.request_id,
            )
    error = delivery.error
    if delivery.status == "ERROR" and error is None:
        error = _error_text(delivery.payload)
    return WebhookResult(
        request_id=delivery.request_id,
        gateway_request_id=delivery.gateway_request_id,
        output=output,
        error=error,
        payload_error=delivery.payload_error,
        raw=delivery,
    )


def _error_text(payload: Any) -> str:
    detail = payload.get("detail") if isinstance(payload, Mapping) else payload
    return detail if isinstance(detail, str) else json.dumps(detail)
