"""What a failed call to fal is, whether fal may have billed it, and whether resending is safe.

One table, read by every adapter that turns a fal failure into someone else's error: the
gateway (OpenAI's wire shape and ``x-should-retry``), the LiteLLM provider (a
``CustomLLMError`` status LiteLLM's router does or does not retry) and the Pipecat service
(an ``ErrorCategory``). Each adapter maps :class:`Kind` onto its own shape; none of them
decides again what a failure means. It lives in the client package because both the gateway
and the integrations import the client, and neither may import the other.

==================  ==========================================  =============  =================
kind                raised as                                   billed?        resend
==================  ==========================================  =============  =================
rate_limited        429                                         no             safe (later)
auth_refused        401, 403                                    no             never (same key)
no_credit           402                                         no             never (same key)
invalid_input       422 (fal refused named fields)              no             never
request_refused     400 (a prompt or content fal refused)       no             if not accepted
fal_refused         any other 4xx (404, 409...)                 no             if not accepted
server_error        5xx                                         unknown (1)    if not accepted
model_failed        a queued job COMPLETED with an error        yes            never
timeout             a timeout (transport, budget, client)       unknown (2)    if not accepted
unreachable         no HTTP answer (DNS, refused, reset)        unknown (2)    if not accepted
undecodable         an answer that is not what was promised     unknown        if not accepted
invalid_arguments   refused before sending (validation, size)   unknown (3)    if not accepted
other               anything else                               unknown        if not accepted
==================  ==========================================  =============  =================

"billed?" is what is known once a request that submits work was sent; when nothing was sent,
nothing was billed (except ``model_failed``, which implies a job ran). (1) not billed when
fal marks the answer ``X-Fal-Retryable: true`` or it is the caller's own start timeout.
(2) not billed when the connection was provably never made. (3) raised after another
request of the same call was sent, so that one's fate is unknown.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

import httpx
from pydantic import ValidationError

from falbind.models.index import UnknownEndpointError

from .errors import (
    AuthenticationError,
    BadRequestError,
    FalConnectionError,
    FalDecodeError,
    FalRequestFailedError,
    FalStatusError,
    FalTimeoutError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    UnexpectedContentTypeError,
    UnprocessableEntityError,
)
from .retry import never_reached_server

__all__ = ["TABLE", "Billing", "Kind", "Resend", "Row", "classify", "may_be_billed"]


class Kind(enum.StrEnum):
    """What a failure is (see the module's table)."""

    RATE_LIMITED = "rate_limited"
    AUTH_REFUSED = "auth_refused"
    NO_CREDIT = "no_credit"
    INVALID_INPUT = "invalid_input"
    REQUEST_REFUSED = "request_refused"
    FAL_REFUSED = "fal_refused"
    SERVER_ERROR = "server_error"
    MODEL_FAILED = "model_failed"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    UNDECODABLE = "undecodable"
    INVALID_ARGUMENTS = "invalid_arguments"
    OTHER = "other"


class Billing(enum.Enum):
    """What is known about billing once a request that submits work was sent."""

    NO = "no"
    """fal answered with a refusal: it bills successful outputs only."""
    YES = "yes"
    """The model ran (and failed): the job is over and paid for."""
    UNKNOWN = "unknown"
    """The answer was lost or unusable: assume fal accepted (and will bill) it."""


class Resend(enum.Enum):
    """Whether sending the same request again is safe (and may help)."""

    SAFE = "safe"
    """fal did not process it; the same request may succeed later (clients retry it anyway)."""
    NEVER = "never"
    """fal's answer will not change by resending: the key, the account or the input is refused,
    or the model ran and failed."""
    IF_NOT_ACCEPTED = "if_not_accepted"
    """Safe exactly when fal did not accept (and will not bill) the request."""


@dataclass(frozen=True, slots=True)
class Row:
    """One line of :data:`TABLE`."""

    billing: Billing
    resend: Resend


TABLE: Final[dict[Kind, Row]] = {
    Kind.RATE_LIMITED: Row(Billing.NO, Resend.SAFE),
    Kind.AUTH_REFUSED: Row(Billing.NO, Resend.NEVER),
    Kind.NO_CREDIT: Row(Billing.NO, Resend.NEVER),
    Kind.INVALID_INPUT: Row(Billing.NO, Resend.NEVER),
    Kind.REQUEST_REFUSED: Row(Billing.NO, Resend.IF_NOT_ACCEPTED),
    Kind.FAL_REFUSED: Row(Billing.NO, Resend.IF_NOT_ACCEPTED),
    Kind.SERVER_ERROR: Row(Billing.UNKNOWN, Resend.IF_NOT_ACCEPTED),
    Kind.MODEL_FAILED: Row(Billing.YES, Resend.NEVER),
    Kind.TIMEOUT: Row(Billing.UNKNOWN, Resend.IF_NOT_ACCEPTED),
    Kind.UNREACHABLE: Row(Billing.UNKNOWN, Resend.IF_NOT_ACCEPTED),
    Kind.UNDECODABLE: Row(Billing.UNKNOWN, Resend.IF_NOT_ACCEPTED),
    Kind.INVALID_ARGUMENTS: Row(Billing.UNKNOWN, Resend.IF_NOT_ACCEPTED),
    Kind.OTHER: Row(Billing.UNKNOWN, Resend.IF_NOT_ACCEPTED),
}
"""Every :class:`Kind`'s billing and resend rule."""

_BY_CLASS: Final[tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Kind], ...]] = (
    # The order matters: the first class that matches wins (subclasses before their bases).
    (RateLimitError, Kind.RATE_LIMITED),
    ((AuthenticationError, PermissionDeniedError), Kind.AUTH_REFUSED),
    (PaymentRequiredError, Kind.NO_CREDIT),
    (UnprocessableEntityError, Kind.INVALID_INPUT),
    (BadRequestError, Kind.REQUEST_REFUSED),
    (ServerError, Kind.SERVER_ERROR),
    (FalStatusError, Kind.FAL_REFUSED),
    (FalRequestFailedError, Kind.MODEL_FAILED),
    (FalTimeoutError, Kind.TIMEOUT),
    (FalConnectionError, Kind.UNREACHABLE),
    ((FalDecodeError, UnexpectedContentTypeError), Kind.UNDECODABLE),
    # falbind's own refusals (InvalidArgumentsError is a ValidationError, SizeError a
    # ValueError, UnknownEndpointError a KeyError) and the plain ones they stand for.
    ((ValidationError, UnknownEndpointError), Kind.INVALID_ARGUMENTS),
    ((ValueError, TypeError), Kind.INVALID_ARGUMENTS),
)


def classify(error: BaseException) -> Kind:
    """What ``error`` (raised by a call to fal, or while preparing one) is."""
    for classes, kind in _BY_CLASS:
        if isinstance(error, classes):
            return kind
    return Kind.OTHER


def may_be_billed(error: BaseException, *, sent: bool) -> bool:
    """Whether fal may have accepted (and may bill) the work of the call that raised ``error``.

    ``sent``: a request that submits work (a run or queue POST) was handed to the transport.
    Only what ``error`` itself says counts: a caller that saw a 2xx answer to a submission
    knows more and should say so first.
    """
    kind = classify(error)
    billing = TABLE[kind].billing
    if billing is Billing.YES:
        return True
    if not sent or billing is Billing.NO:
        return False
    if kind in (Kind.TIMEOUT, Kind.UNREACHABLE):
        cause = error.__cause__
        return not (isinstance(cause, httpx.TransportError) and never_reached_server(cause))
    if isinstance(error, ServerError):
        return error.retryable is not True and not isinstance(error, RequestTimeoutError)
    return True
