"""Every error the falbind client raises, in one tree.

::

    FalError                          base of everything below
    ├── FalConnectionError            the request did not get an HTTP answer (DNS, refused, reset)
    ├── FalTimeoutError               a timeout: connect/read/write, the retry budget, or a
    │                                 queued request's ``client_timeout`` (it is cancelled first)
    ├── FalDecodeError                an answer that is not the JSON we expect (malformed, or not
    │   │                             matching the Output model with ``strict_outputs=True``);
    │   │                             ``status_code``, ``request_id``, ``body``, ``headers``
    │   └── UntrustedURLError         fal's submit answer named a queue URL on another origin
    │                                 (the key is not sent there); ``url``, ``expected``
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
    ├── UnexpectedContentTypeError    a download whose content type is not the expected one
    ├── WebhookVerificationError      a webhook delivery failed ``verify_webhook`` (``check``;
    │                                 defined in :mod:`falbind.client.webhooks`)
    │   raised before anything is sent:
    ├── InvalidArgumentsError         arguments that do not fit the Input model (also a
    │   │                             ``ValueError``; ``errors()`` is pydantic's, unknown names
    │   │                             get a did-you-mean), or a call option refused
    │   └── InvalidArgumentTypeError  an argument of the wrong Python type (also a ``TypeError``)
    ├── UnknownEndpointError          an id the registry does not bind (also a ``KeyError``)
    ├── SizeError                     ``images.generate`` cannot deliver a size (a ``ValueError``)
    ├── InvalidKeyError               a key with control or non-ASCII characters (a ``ValueError``)
    └── MissingKeyError               no key configured for a call to fal

Every ``FalError`` pickles with its attributes (multiprocessing, task queues). No message,
``repr`` or attribute of these errors contains the API key: they are built from the answer's
status, headers and body and the request's method and URL, never the request's headers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Self, get_args

import httpx
from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from falbind._error_base import FalError, FalWarning

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "FalConnectionError",
    "FalDecodeError",
    "FalError",
    "FalRequestFailedError",
    "FalStatusError",
    "FalTimeoutError",
    "FalWarning",
    "FieldError",
    "InvalidArgumentTypeError",
    "InvalidArgumentsError",
    "InvalidKeyError",
    "MissingKeyError",
    "NotFoundError",
    "OutputSchemaWarning",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "UnexpectedContentTypeError",
    "UnprocessableEntityError",
    "UntrustedURLError",
    "error_from_response",
]

REQUEST_ID_HEADER: Final = "x-fal-request-id"
ERROR_TYPE_HEADER: Final = "x-fal-error-type"
RETRYABLE_HEADER: Final = "x-fal-retryable"
TIMEOUT_TYPE_HEADER: Final = "x-fal-request-timeout-type"
_BODY_EXCERPT: Final = 500


class OutputSchemaWarning(FalWarning):
    """fal's answer did not match the endpoint's Output model; the output was kept anyway (its
    ``schema_mismatch`` lists the problems). ``strict_outputs=True`` makes it an error."""


class FalConnectionError(FalError):
    """The request got no HTTP answer: DNS failure, connection refused or reset."""


class FalTimeoutError(FalError):
    """A timeout: a transport timeout, the retry budget, or a queued request's client timeout."""


class FalDecodeError(FalError):
    """An answer that is not the JSON the endpoint promises (malformed, or not matching with
    ``strict_outputs=True``). ``body`` is what arrived (decoded JSON, else text), so a paid
    result is never lost with the error."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        request_id: str | None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.request_id = request_id
        self.body = body
        """The answer's body: the decoded JSON, or its text when it is not JSON."""
        self.headers: dict[str, str] = dict(headers or {})
        """The answer's headers (lower-cased names)."""

    @classmethod
    def from_response(cls, message: str, response: httpx.Response, body: Any = None) -> Self:
        """The error for ``response``: its status code, request id and headers, with ``body``."""
        return cls(
            message,
            status_code=response.status_code,
            request_id=response.headers.get(REQUEST_ID_HEADER),
            body=body,
            headers=response.headers,
        )


class UntrustedURLError(FalDecodeError):
    """fal's submit answer named a status/response/cancel URL whose origin is not the configured
    queue's (nor in ``trusted_origins``); nothing was sent there."""

    def __init__(
        self,
        message: str,
        *,
        url: str,
        expected: tuple[str, ...],
        status_code: int,
        request_id: str | None,
        body: Any = None,
    ) -> None:
        super().__init__(message, status_code=status_code, request_id=request_id, body=body)
        self.url = url
        """The refused URL (without its query)."""
        self.expected = expected
        """The origins that were trusted (``scheme://host:port``)."""


class InvalidArgumentsError(FalError, ValidationError):
    """Arguments refused before anything is sent: they do not fit the endpoint's Input model
    (unknown names get a did-you-mean), or a call option is out of range.

    It *is* a ``pydantic.ValidationError`` (so a ``ValueError``): ``errors()``, ``title`` and
    the message are pydantic's. Build one with :meth:`of` or :meth:`because`.
    """

    endpoint_id: str | None = None
    """The endpoint the arguments were for, when there is one."""

    @classmethod
    def of(cls, error: ValidationError, endpoint_id: str | None = None) -> Self:
        """The same errors as pydantic's ``error``, as a falbind error."""
        new = cls.from_exception_data(error.title, _line_errors(error.errors(include_url=False)))
        new.endpoint_id = endpoint_id
        return new

    @classmethod
    def because(cls, argument: str, message: str, value: Any = None) -> Self:
        """One refused call option (e.g. ``priority``), with a readable message."""
        detail = PydanticCustomError("invalid_argument", "{detail}", {"detail": message})
        return cls.from_exception_data(
            "call options", [InitErrorDetails(type=detail, loc=(argument,), input=value)]
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # pydantic's own pickling rebuilds a plain ValidationError; keep the class and fields.
        errors = _line_errors(self.errors(include_url=False))
        return (_rebuild_invalid, (type(self), self.title, errors, dict(self.__dict__)))


class InvalidArgumentTypeError(InvalidArgumentsError, TypeError):
    """An argument of the wrong Python type (e.g. a model for another endpoint): also a
    ``TypeError``."""


_KNOWN_ERROR_TYPES: Final = frozenset(get_args(ErrorType))


def _line_errors(errors: list[Any]) -> list[InitErrorDetails]:
    """pydantic's ``errors()`` as details ``from_exception_data`` accepts again; falbind's own
    error types (``unknown_parameter``...) as custom errors with the same message and context."""
    details: list[InitErrorDetails] = []
    for error in errors:
        ctx = dict(error.get("ctx") or {})
        kind: Any = error["type"]
        if kind not in _KNOWN_ERROR_TYPES:
            kind = PydanticCustomError(kind, "{detail}", {"detail": error["msg"], **ctx})
            details.append(InitErrorDetails(type=kind, loc=error["loc"], input=error["input"]))
        elif ctx:
            details.append(
                InitErrorDetails(type=kind, loc=error["loc"], input=error["input"], ctx=ctx)
            )
        else:
            details.append(InitErrorDetails(type=kind, loc=error["loc"], input=error["input"]))
    return details


def _rebuild_invalid(
    cls: type[InvalidArgumentsError],
    title: str,
    errors: list[InitErrorDetails],
    state: dict[str, Any],
) -> InvalidArgumentsError:
    error = cls.from_exception_data(title, errors)
    error.__dict__.update(state)
    return error


class InvalidKeyError(FalError, ValueError):
    """A fal key that cannot be sent in a header (a control character or non-ASCII text). The
    message names where the key came from, never the key."""

    def __init__(self, message: str, *, source: str) -> None:
        super().__init__(message)
        self.source = source
        """Where the key came from: ``key=``, ``FAL_KEY``, ``FAL_KEY_ID/FAL_KEY_SECRET``..."""


class MissingKeyError(FalError):
    """A call to fal with no key configured (checked before anything is sent)."""


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
        headers: Mapping[str, str] | None = None,
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
        self.headers: dict[str, str] = dict(headers or {})
        """The answer's headers (lower-cased names)."""


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
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.error = error
        self.error_type = error_type
        self.logs = logs or []
        self.body = body
        """What fal sent with the failure (the status JSON or the webhook payload), if any."""


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


def decode_body(response: httpx.Response) -> Any:
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
    body = decode_body(response)
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
        headers=dict(response.headers),
    )
