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
from collections.abc import Callable, Mapping
from typing import Any, Final

from starlette.responses import JSONResponse

from falbind.client.failures import TABLE, Kind, Resend, classify

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


_Shape = tuple[int, str, str, str]
"""An answer's status, ``type``, ``code`` and message (before the request id suffix)."""


def _rate_limited(exc: Any) -> _Shape:
    message = "fal is rate limiting this gateway; try again later"
    return 429, "rate_limit_error", "upstream_rate_limited", message


def _auth_refused(exc: Any) -> _Shape:
    message = (
        f"the gateway's fal key was refused by fal ({exc.status_code}); tell the gateway's operator"
    )
    return 502, "api_error", "upstream_auth", message


def _no_credit(exc: Any) -> _Shape:
    message = "the gateway's fal account has no credit left"
    return 402, "insufficient_quota", "insufficient_quota", message


def _invalid_input(exc: Any) -> _Shape:
    detail = "; ".join(f"{e.field}: {e.msg}" for e in exc.field_errors) or str(exc.detail)
    message = f"fal refused the request: {detail}"
    return 400, "invalid_request_error", exc.error_type or "invalid_value", message


def _fal_status(exc: Any) -> _Shape:
    status = 400 if 400 <= exc.status_code < 500 else 502
    message = (
        f"fal answered {exc.status_code}"
        + (f" ({exc.error_type})" if exc.error_type else "")
        + "; the request was not retried to avoid paying twice"
    )
    type_ = "invalid_request_error" if status == 400 else "api_error"
    return status, type_, exc.error_type or f"upstream_{exc.status_code}", message


def _model_failed(exc: Any) -> _Shape:
    message = f"the model failed on fal: {exc.error}"
    return 502, "api_error", exc.error_type or "model_failed", message


def _timeout(exc: Any) -> _Shape:
    return 504, "api_error", "upstream_timeout", "fal did not answer in time"


def _unreachable(exc: Any) -> _Shape:
    message = f"could not reach fal: {type(exc).__name__}"
    return 502, "api_error", "upstream_unreachable", message


def _unusable(exc: Any) -> _Shape:
    return 502, "api_error", "upstream_error", f"fal's answer could not be used: {exc}"


_OPENAI_SHAPE: Final[dict[Kind, Callable[[Any], _Shape]]] = {
    Kind.RATE_LIMITED: _rate_limited,
    Kind.AUTH_REFUSED: _auth_refused,
    Kind.NO_CREDIT: _no_credit,
    Kind.INVALID_INPUT: _invalid_input,
    Kind.REQUEST_REFUSED: _fal_status,
    Kind.FAL_REFUSED: _fal_status,
    Kind.SERVER_ERROR: _fal_status,
    Kind.MODEL_FAILED: _model_failed,
    Kind.TIMEOUT: _timeout,
    Kind.UNREACHABLE: _unreachable,
}
"""Each kind of fal failure in OpenAI's shape; any other kind is :func:`_unusable`."""


def error_from_fal(exc: BaseException, *, accepted: bool) -> GatewayError:
    """The answer for an error raised while talking to fal.

    What the failure is and whether resending it is safe come from
    :mod:`falbind.client.failures`; this only maps that onto OpenAI's shape. ``accepted``: fal
    may have taken the job (the submit POST was sent), so the client must not retry
    (``x-should-retry: false``). The fal key is never in these messages: falbind's errors are
    built from fal's answer and the request's method and URL, never its headers.
    """
    request_id = getattr(exc, "request_id", None)
    request_id = request_id if isinstance(request_id, str) else None
    suffix = f" (fal request id {request_id})" if request_id else ""
    kind = classify(exc)
    status, type_, code, message = _OPENAI_SHAPE.get(kind, _unusable)(exc)
    return GatewayError(
        status,
        message + suffix,
        type=type_,
        code=code,
        param=_param_at_fault(exc) if kind is Kind.INVALID_INPUT else None,
        should_retry=_should_retry(TABLE[kind].resend, accepted=accepted),
        fal_request_id=request_id,
    )


def _param_at_fault(exc: Any) -> str | None:
    """The first field fal refused (a 422's ``detail``), for OpenAI's ``param``."""
    field_errors = exc.field_errors
    return (field_errors[0].field if field_errors else None) or None


def _should_retry(resend: Resend, *, accepted: bool) -> bool | None:
    """``x-should-retry``: unsaid for what fal did not process (a 429, which OpenAI clients
    retry later by default); false for what fal will answer the same way again; otherwise
    the truth about money: true exactly when fal did not accept (bill) the request."""
    if resend is Resend.SAFE:
        return None
    return resend is Resend.IF_NOT_ACCEPTED and not accepted
