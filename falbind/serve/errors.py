"""The gateway's errors, in OpenAI's wire shape.

Every failure answers ``{"error": {"message", "type", "param", "code"}}`` with the status an
OpenAI SDK maps to the right exception class (400, 401, 403, 404, 429, 5xx). ``code`` is always
a string (OpenAI's SDKs stringify it anyway).

The money rule: OpenAI's SDKs retry 408, 409, 429 and 5xx twice by default unless the answer
carries ``x-should-retry: false``. :class:`GatewayError` therefore has ``should_retry``: once a
request may have reached fal (a job may be running and billed), the answer says ``false``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from starlette.responses import JSONResponse

__all__ = [
    "GatewayError",
    "error_from_fal",
    "error_from_validation",
]

SHOULD_RETRY_HEADER: Final = "x-should-retry"
FAL_REQUEST_ID_HEADER: Final = "x-fal-request-id"
_PASS_THROUGH_HINT: Final = re.compile(r"\s*\(pass it through extra_body=.*\)\s*$")


class GatewayError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        should_retry: bool | None = None,
        headers: Mapping[str, str] | None = None,
        fal_request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.should_retry = should_retry
        """``False``: tell OpenAI clients not to retry (fal may have accepted the job)."""
        self.headers = dict(headers or {})
        self.fal_request_id = fal_request_id
        self.caller: Any = None
        """The authenticated caller a refusal concerns (so it is logged against its key)."""

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        headers = dict(self.headers)
        if self.should_retry is not None:
            headers[SHOULD_RETRY_HEADER] = "true" if self.should_retry else "false"
        if self.fal_request_id:
            headers[FAL_REQUEST_ID_HEADER] = self.fal_request_id
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def error_from_validation(errors: list[Any], model_name: str) -> GatewayError:
    """A 400 for pydantic's errors on a request body: the first error's field as ``param``
    (with fal's did-you-mean in the message), every error in the message."""
    first = errors[0]
    param = ".".join(str(part) for part in first.get("loc", ())) or None
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()))
        message = _PASS_THROUGH_HINT.sub("", str(error.get("msg", "")))
        parts.append(f"{where}: {message}" if where and where not in message else message)
    kind = str(first.get("type", ""))
    code = (
        "unknown_parameter" if kind in ("unknown_parameter", "extra_forbidden") else "invalid_value"
    )
    return GatewayError(
        400,
        f"invalid request for model {model_name!r}: " + "; ".join(parts),
        code=code,
        param=param,
    )


def error_from_fal(exc: BaseException, *, accepted: bool) -> GatewayError:
    """The answer for an error raised while talking to fal.

    ``accepted``: fal may have taken the job (the submit POST was sent), so the client must not
    retry (``x-should-retry: false``). The fal key is never in these messages: falbind's errors
    are built from fal's answer and the request's method and URL, never its headers.
    """
    from falbind import (
        AuthenticationError,
        FalConnectionError,
        FalRequestFailedError,
        FalStatusError,
        FalTimeoutError,
        PaymentRequiredError,
        PermissionDeniedError,
        RateLimitError,
        UnprocessableEntityError,
    )

    request_id = getattr(exc, "request_id", None)
    request_id = request_id if isinstance(request_id, str) else None
    # The truth either way: nothing reached fal (or fal refused it unbilled), so sending it
    # again is safe; or fal may have a billed job, so it is not.
    retry = not accepted
    suffix = f" (fal request id {request_id})" if request_id else ""
    if isinstance(exc, RateLimitError):
        # fal did not process the request: retrying later is safe.
        return GatewayError(
            429,
            f"fal is rate limiting this gateway; try again later{suffix}",
            type="rate_limit_error",
            code="upstream_rate_limited",
            fal_request_id=request_id,
        )
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return GatewayError(
            502,
            f"the gateway's fal key was refused by fal ({exc.status_code}); "
            f"tell the gateway's operator{suffix}",
            type="api_error",
            code="upstream_auth",
            should_retry=False,
            fal_request_id=request_id,
        )
    if isinstance(exc, PaymentRequiredError):
        return GatewayError(
            402,
            f"the gateway's fal account has no credit left{suffix}",
            type="insufficient_quota",
            code="insufficient_quota",
            should_retry=False,
            fal_request_id=request_id,
        )
    if isinstance(exc, UnprocessableEntityError):
        field_errors = exc.field_errors
        param = field_errors[0].field if field_errors else None
        detail = "; ".join(f"{e.field}: {e.msg}" for e in field_errors) or str(exc.detail)
        return GatewayError(
            400,
            f"fal refused the request: {detail}{suffix}",
            code=exc.error_type or "invalid_value",
            param=param or None,
            should_retry=False,
            fal_request_id=request_id,
        )
    if isinstance(exc, FalRequestFailedError):
        return GatewayError(
            502,
            f"the model failed on fal: {exc.error}{suffix}",
            type="api_error",
            code=exc.error_type or "model_failed",
            should_retry=False,
            fal_request_id=request_id,
        )
    if isinstance(exc, FalStatusError):
        status = 400 if 400 <= exc.status_code < 500 else 502
        return GatewayError(
            status,
            f"fal answered {exc.status_code}"
            + (f" ({exc.error_type})" if exc.error_type else "")
            + f"; the request was not retried to avoid paying twice{suffix}",
            type="invalid_request_error" if status == 400 else "api_error",
            code=exc.error_type or f"upstream_{exc.status_code}",
            should_retry=retry,
            fal_request_id=request_id,
        )
    if isinstance(exc, FalTimeoutError):
        return GatewayError(
            504,
            f"fal did not answer in time{suffix}",
            type="api_error",
            code="upstream_timeout",
            should_retry=retry,
            fal_request_id=request_id,
        )
    if isinstance(exc, FalConnectionError):
        return GatewayError(
            502,
            f"could not reach fal: {type(exc).__name__}{suffix}",
            type="api_error",
            code="upstream_unreachable",
            should_retry=retry,
            fal_request_id=request_id,
        )
    return GatewayError(
        502,
        f"fal's answer could not be used: {exc}{suffix}",
        type="api_error",
        code="upstream_error",
        should_retry=retry,
        fal_request_id=request_id,
    )
