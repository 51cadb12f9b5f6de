"""Every error the falbind client raises, in one tree.

::

    FalError                          base of everything below
    ├── FalConnectionError            the request did not get an HTTP answer (DNS, refused, reset)
    ├── FalTimeoutError               a timeout: connect/read/write, the retry budget, or a
    │                                 queued request's ``client_timeout`` (it is cancelled first)
    ├── FalDecodeError                an answer that is not the JSON we expect (malformed, or not
    │                                 matching the endpoint's Output model); ``status_code``,
    │                                 ``request_id``
    ├── FalStatusError                a non-2xx answer; ``status_code``, ``request_id`` (header
    │   │                             ``x-fal-request-id``), ``error_type`` (body ``error_type``
    │   │                             or header ``X-Fal-Error-Type``), ``retryable`` (header
    │   │                             ``X-Fal-Retryable``), ``detail``, ``body``
    │   ├── BadRequestError           400
    │   ├── AuthenticationError       401
    │   ├── PaymentRequiredError      402
    │   ├── PermissionDeniedError     403
    │   ├── NotFoundError             404
    │   ├── UnprocessableEntityError  422, with ``field_errors``: fal's ``detail`` list as
    │   │                             :class:`FieldError` objects
    │   ├── RateLimitError            429
    │   └── ServerError               5xx
    │       └── RequestTimeoutError   504 with ``X-Fal-Request-Timeout-Type: user``: the
    │                                 caller's own ``start_timeout`` expired (never retried)
    ├── FalRequestFailedError         a queued request COMPLETED with ``error`` (the model failed)
    └── UnexpectedContentTypeError    a download whose content type is not the expected one

Errors raised before any byte is sent are not ``FalError``: ``pydantic.ValidationError`` for
arguments that do not fit the endpoint's Input model (unknown names get a did-you-mean), and
:class:`falbind.UnknownEndpointError` (a ``KeyError``) for an id the registry does not bind.

No message, ``repr`` or attribute of these errors contains the API key: they are built from
the answer's status, headers and body and the request's method and URL, never its headers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "FalConnectionError",
    "FalDecodeError",
    "FalError",
    "FalRequestFailedError",
    "FalStatusError",
    "FalTimeoutError",
    "FieldError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "UnexpectedContentTypeError",
    "UnprocessableEntityError",
    "error_from_response",
]

REQUEST_ID_HEADER: Final = "x-fal-request-id"
ERROR_TYPE_HEADER: Final = "x-fal-error-type"
RETRYABLE_HEADER: Final = "x-fal-retryable"
TIMEOUT_TYPE_HEADER: Final = "x-fal-request-timeout-type"
_BODY_EXCERPT: Final = 500


class FalError(Exception):
    """Base of every error raised by the falbind client."""


class FalConnectionError(FalError):
    """The request got no HTTP answer: DNS failure, connection refused or reset."""


class FalTimeoutError(FalError):
    """A timeout: a transport timeout, the retry budget, or a queued request's client timeout."""


class FalDecodeError(FalError):
    """An answer that is not the JSON the endpoint promises (malformed or not matching)."""

    def __init__(self, message: str, *, status_code: int, request_id: str | None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class FieldError:
    """One item of a 422 answer's ``detail`` list: which input was refused and why."""

    loc: tuple[str | int, ...]
    """Where the error is, e.g. ``("body", "image_size")``."""
    msg: str
    type: str
    url: str | None = None
    ctx: Mapping[str, Any] | None = None
    input: Any = None

    @property
    def field(self) -> str:
        """The dotted parameter path without fal's leading ``body``, e.g. ``image_size.width``."""
        parts = self.loc[1:] if self.loc[:1] == ("body",) else self.loc
        return ".".join(str(part) for part in parts)

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> FieldError:
        loc = item.get("loc") or ()
        ctx = item.get("ctx")
        return cls(
            loc=tuple(p if isinstance(p, int) else str(p) for p in loc),
            msg=str(item.get("msg", "")),
            type=str(item.get("type", "")),
            url=item.get("url") if isinstance(item.get("url"), str) else None,
            ctx=ctx if isinstance(ctx, Mapping) else None,
            input=item.get("input"),
        )


class FalStatusError(FalError):
    """fal answered with a non-2xx status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        request_id: str | None = None,
        error_type: str | None = None,
        retryable: bool | None = None,
        detail: Any = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.request_id = request_id
        """fal's id of the failed call (header ``x-fal-request-id``), for support requests."""
        self.error_type = error_type
        """fal's machine-readable cause, e.g. ``request_timeout`` or ``runner_scheduling_failure``."""
        self.retryable = retryable
        """What fal says about retrying (header ``X-Fal-Retryable``); ``None`` when not said."""
        self.detail = detail
        """The body's ``detail``: a string, or a list of field errors for a 422."""
        self.body = body
        """The decoded JSON body, or the body text when it is not JSON."""


class BadRequestError(FalStatusError):
    """400: fal refused the request."""


class AuthenticationError(FalStatusError):
    """401: the key is missing or wrong."""


class PaymentRequiredError(FalStatusError):
    """402: the account has no credit left."""


class PermissionDeniedError(FalStatusError):
    """403: the key may not call this endpoint."""


class NotFoundError(FalStatusError):
    """404: no such endpoint or request."""


class UnprocessableEntityError(FalStatusError):
    """422: fal refused the arguments; ``field_errors`` says which and why."""

    @property
    def field_errors(self) -> list[FieldError]:
        """fal's ``detail`` list as :class:`FieldError` objects (empty when ``detail`` is text)."""
        if not isinstance(self.detail, list):
            return []
        return [FieldError.from_json(item) for item in self.detail if isinstance(item, Mapping)]


class RateLimitError(FalStatusError):
    """429: too many requests; the request was not processed."""


class ServerError(FalStatusError):
    """5xx: fal or the model's runner failed."""


class RequestTimeoutError(ServerError):
    """504 caused by the caller's own ``start_timeout``: the request never started. Not retried."""


class FalRequestFailedError(FalError):
    """A queued request COMPLETED with an error: the model ran and failed."""

    def __init__(
        self,
        message: str,
        *,
        request_id: str,
        error: str,
        error_type: str | None = None,
        logs: list[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.error = error
        self.error_type = error_type
        self.logs = logs or []


class UnexpectedContentTypeError(FalError):
    """A downloaded file's content type does not start with the expected prefix."""

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


_BY_STATUS: Final[dict[int, type[FalStatusError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def is_user_timeout(response: httpx.Response) -> bool:
    """A 504 caused by the caller's own ``X-Fal-Request-Timeout`` deadline."""
    return (
        response.status_code == 504
        and response.headers.get(TIMEOUT_TYPE_HEADER, "").strip().lower() == "user"
    )


def _parse_bool(value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    return None


def _decode_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:_BODY_EXCERPT]


def _summary(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        errors = [FieldError.from_json(item) for item in detail if isinstance(item, Mapping)]
        if errors:
            return "; ".join(f"{e.field or '<body>'}: {e.msg}" for e in errors)
    return json.dumps(detail)[:_BODY_EXCERPT] if detail is not None else ""


def error_from_response(response: httpx.Response) -> FalStatusError:
    """The :class:`FalStatusError` subclass for a non-2xx answer, with fal's details."""
    status = response.status_code
    body = _decode_body(response)
    detail = body.get("detail") if isinstance(body, Mapping) else body
    error_type = body.get("error_type") if isinstance(body, Mapping) else None
    if not isinstance(error_type, str):
        error_type = response.headers.get(ERROR_TYPE_HEADER)
    if status >= 500:
        cls: type[FalStatusError] = (
            RequestTimeoutError if is_user_timeout(response) else ServerError
        )
    else:
        cls = _BY_STATUS.get(status, FalStatusError)
    request = response.request
    request_id = response.headers.get(REQUEST_ID_HEADER)
    message = f"{status} {response.reason_phrase} from {request.method} {request.url.copy_with(query=None)}"
    summary = _summary(detail)
    if summary:
        message += f": {summary}"
    if error_type:
        message += f" (error_type={error_type})"
    if request_id:
        message += f" [request_id={request_id}]"
    return cls(
        message,
        status_code=status,
        request_id=request_id,
        error_type=error_type,
        retryable=_parse_bool(response.headers.get(RETRYABLE_HEADER)),
        detail=detail,
        body=body,
    )
