"""The one table of fal failures (falbind/client/failures.py) and the adapters that read it.

Each failure is built the way falbind builds it (``error_from_response`` on a real
``httpx.Response``, a transport error as ``__cause__``), so the table is checked against what
the client really raises, not against hand-made stand-ins.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx
import pytest
from litellm.llms.custom_llm import CustomLLMError
from PIL import Image
from pipecat.utils.errors import ErrorCategory
from pydantic import BaseModel, ValidationError

import falbind
from falbind.client.errors import error_from_response
from falbind.client.failures import TABLE, Billing, Kind, Resend, Row, classify, may_be_billed
from falbind.images.sizing import SizeError
from falbind.integrations._errors import CallTracker, possibly_accepted
from falbind.integrations.litellm import _custom_error
from falbind.integrations.pipecat import FalbindImageGenService
from falbind.serve.errors import error_from_fal

RUN_URL = "https://fal.run/fal-ai/flux/dev"


def answered(status: int, body: Any = None, **headers: str) -> falbind.FalStatusError:
    """The error falbind raises for fal's ``status`` answer to a run POST."""
    request = httpx.Request("POST", RUN_URL)
    response = httpx.Response(
        status,
        json=body if body is not None else {"detail": "no"},
        headers={"x-fal-request-id": "req-1", **headers},
        request=request,
    )
    return error_from_response(response)


def lost(error: type[falbind.FalError], cause: httpx.TransportError) -> falbind.FalError:
    """A falbind transport failure raised from ``cause`` (as the client raises them)."""
    try:
        try:
            raise cause
        except httpx.TransportError as exc:
            raise error("the request failed") from exc
    except falbind.FalError as raised:
        return raised


def not_connected() -> httpx.ConnectError:
    return httpx.ConnectError("refused", request=httpx.Request("POST", RUN_URL))


def read_lost() -> httpx.ReadTimeout:
    return httpx.ReadTimeout("no answer", request=httpx.Request("POST", RUN_URL))


def validation_error() -> ValidationError:
    class Input(BaseModel):
        prompt: str

    try:
        Input.model_validate({})
    except ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


UNPROCESSABLE_BODY = {
    "detail": [{"loc": ["body", "image_size"], "msg": "bad size", "type": "value_error"}]
}

# (name, the failure, its kind, billed if sent, billed if nothing was sent)
CASES: list[tuple[str, Exception, Kind, bool, bool]] = [
    ("429", answered(429), Kind.RATE_LIMITED, False, False),
    ("401", answered(401), Kind.AUTH_REFUSED, False, False),
    ("403", answered(403), Kind.AUTH_REFUSED, False, False),
    ("402", answered(402), Kind.NO_CREDIT, False, False),
    ("422", answered(422, UNPROCESSABLE_BODY), Kind.INVALID_INPUT, False, False),
    ("400", answered(400), Kind.REQUEST_REFUSED, False, False),
    ("404", answered(404), Kind.FAL_REFUSED, False, False),
    ("409", answered(409), Kind.FAL_REFUSED, False, False),
    ("500", answered(500), Kind.SERVER_ERROR, True, False),
    ("503 retryable", answered(503, None, **{"x-fal-retryable": "true"}), Kind.SERVER_ERROR,
     False, False),
    ("504 user timeout", answered(504, None, **{"x-fal-request-timeout-type": "user"}),
     Kind.SERVER_ERROR, False, False),
    ("model failed",
     falbind.FalRequestFailedError("failed", request_id="req-1", error="NSFW", error_type="x"),
     Kind.MODEL_FAILED, True, True),
    ("timeout, answer lost", lost(falbind.FalTimeoutError, read_lost()), Kind.TIMEOUT, True,
     False),
    ("timeout, never connected", lost(falbind.FalTimeoutError, not_connected()), Kind.TIMEOUT,
     False, False),
    ("reset", lost(falbind.FalConnectionError, httpx.ReadError("reset")), Kind.UNREACHABLE, True,
     False),
    ("refused", lost(falbind.FalConnectionError, not_connected()), Kind.UNREACHABLE, False,
     False),
    ("undecodable", falbind.FalDecodeError("not JSON", status_code=200, request_id="req-1"),
     Kind.UNDECODABLE, True, False),
    ("not an image",
     falbind.UnexpectedContentTypeError("text", expected="image/", actual="text/html"),
     Kind.UNDECODABLE, True, False),
    ("validation", validation_error(), Kind.INVALID_ARGUMENTS, True, False),
    ("unknown endpoint", falbind.UnknownEndpointError("fal-ai/flux/dve", ["fal-ai/flux/dev"]),
     Kind.INVALID_ARGUMENTS, True, False),
    ("size", SizeError("no such size"), Kind.INVALID_ARGUMENTS, True, False),
    ("value", ValueError("bad"), Kind.INVALID_ARGUMENTS, True, False),
    ("other", RuntimeError("boom"), Kind.OTHER, True, False),
]  # fmt: skip
IDS = [case[0] for case in CASES]


def test_every_kind_has_a_row() -> None:
    assert set(TABLE) == set(Kind)
    assert {case[2] for case in CASES} == set(Kind)  # the cases below cover every kind


@pytest.mark.parametrize(("name", "error", "kind", "billed_sent", "billed_unsent"), CASES, ids=IDS)
def test_classify(name: str, error: BaseException, kind: Kind, billed_sent: bool,
                  billed_unsent: bool) -> None:  # fmt: skip
    assert classify(error) is kind


@pytest.mark.parametrize(("name", "error", "kind", "billed_sent", "billed_unsent"), CASES, ids=IDS)
def test_may_be_billed(name: str, error: BaseException, kind: Kind, billed_sent: bool,
                       billed_unsent: bool) -> None:  # fmt: skip
    assert may_be_billed(error, sent=True) is billed_sent
    assert may_be_billed(error, sent=False) is billed_unsent
    # The integrations' view: a 2xx answer to a submission settles it, whatever failed later.
    tracker = CallTracker(posts_sent=1)
    assert possibly_accepted(error, tracker) is billed_sent
    tracker.accepted = True
    assert possibly_accepted(error, tracker) is True


def test_refusals_are_never_billed_and_failed_jobs_always() -> None:
    refused = [kind for kind, row in TABLE.items() if row.billing is Billing.NO]
    assert set(refused) == {
        Kind.RATE_LIMITED,
        Kind.AUTH_REFUSED,
        Kind.NO_CREDIT,
        Kind.INVALID_INPUT,
        Kind.REQUEST_REFUSED,
        Kind.FAL_REFUSED,
    }
    assert TABLE[Kind.MODEL_FAILED] == Row(Billing.YES, Resend.NEVER)


# -- the gateway: status, type, code and x-should-retry per kind -------------------------------

# (name, status, code, x-should-retry before acceptance, x-should-retry after)
GATEWAY: dict[str, tuple[int, str, bool | None, bool | None]] = {
    "429": (429, "upstream_rate_limited", None, None),
    "401": (502, "upstream_auth", False, False),
    "403": (502, "upstream_auth", False, False),
    "402": (402, "insufficient_quota", False, False),
    "422": (400, "invalid_value", False, False),
    "400": (400, "upstream_400", True, False),
    "404": (400, "upstream_404", True, False),
    "409": (400, "upstream_409", True, False),
    "500": (502, "upstream_500", True, False),
    "503 retryable": (502, "upstream_503", True, False),
    "504 user timeout": (502, "upstream_504", True, False),
    "model failed": (502, "x", False, False),
    "timeout, answer lost": (504, "upstream_timeout", True, False),
    "timeout, never connected": (504, "upstream_timeout", True, False),
    "reset": (502, "upstream_unreachable", True, False),
    "refused": (502, "upstream_unreachable", True, False),
    "undecodable": (502, "upstream_error", True, False),
    "not an image": (502, "upstream_error", True, False),
    "validation": (502, "upstream_error", True, False),
    "unknown endpoint": (502, "upstream_error", True, False),
    "size": (502, "upstream_error", True, False),
    "value": (502, "upstream_error", True, False),
    "other": (502, "upstream_error", True, False),
}


@pytest.mark.parametrize(("name", "error"), [(c[0], c[1]) for c in CASES], ids=IDS)
def test_gateway_answer(name: str, error: BaseException) -> None:
    status, code, retry_before, retry_after = GATEWAY[name]
    before = error_from_fal(error, accepted=False)
    after = error_from_fal(error, accepted=True)
    assert (before.status, before.code, before.should_retry) == (status, code, retry_before)
    assert (after.status, after.code, after.should_retry) == (status, code, retry_after)
    if getattr(error, "request_id", None):
        assert before.fal_request_id == "req-1"
        assert "(fal request id req-1)" in before.message
        assert before.response().headers["x-fal-request-id"] == "req-1"


def test_gateway_names_the_field_fal_refused() -> None:
    answer = error_from_fal(answered(422, UNPROCESSABLE_BODY), accepted=False)
    assert answer.param == "image_size"
    assert answer.message.startswith("fal refused the request: image_size: bad size")
    assert error_from_fal(answered(400), accepted=False).param is None


# -- LiteLLM: the status its router does (429, 503) or does not retry --------------------------

# (name, status before anything was sent, status once a POST was sent)
LITELLM: dict[str, tuple[int, int]] = {
    "429": (429, 429),
    "401": (401, 401),
    "403": (403, 403),
    "402": (402, 402),
    "422": (422, 422),
    "400": (400, 400),
    "404": (404, 404),
    "409": (409, 409),
    "500": (503, 424),
    "503 retryable": (503, 503),
    "504 user timeout": (503, 503),
    "model failed": (424, 424),
    "timeout, answer lost": (503, 424),
    "timeout, never connected": (503, 503),
    "reset": (503, 424),
    "refused": (503, 503),
    "undecodable": (500, 424),
    "not an image": (500, 424),
    "validation": (400, 424),
    "unknown endpoint": (400, 424),
    "size": (400, 424),
    "value": (400, 424),
    "other": (500, 424),
}


@pytest.mark.parametrize(("name", "error"), [(c[0], c[1]) for c in CASES], ids=IDS)
def test_litellm_status(name: str, error: Exception) -> None:
    unsent, sent = LITELLM[name]
    assert _custom_error(error, CallTracker(), "m").status_code == unsent
    assert _custom_error(error, CallTracker(posts_sent=1), "m").status_code == sent
    passed = CustomLLMError(418, "mine")  # type: ignore[no-untyped-call]
    assert _custom_error(passed, CallTracker(posts_sent=1), "m") is passed


# -- Pipecat: a category, or None to let Pipecat classify by status_code ------------------------

PIPECAT: dict[Kind, ErrorCategory | None] = {
    Kind.RATE_LIMITED: None,
    Kind.AUTH_REFUSED: None,
    Kind.NO_CREDIT: None,
    Kind.INVALID_INPUT: ErrorCategory.APPLICATION,
    Kind.REQUEST_REFUSED: ErrorCategory.APPLICATION,
    Kind.FAL_REFUSED: None,
    Kind.SERVER_ERROR: None,
    Kind.MODEL_FAILED: ErrorCategory.APPLICATION,
    Kind.TIMEOUT: ErrorCategory.CONNECTIVITY,
    Kind.UNREACHABLE: ErrorCategory.CONNECTIVITY,
    Kind.UNDECODABLE: ErrorCategory.SERVER,
    Kind.INVALID_ARGUMENTS: ErrorCategory.INVALID_REQUEST,
    Kind.OTHER: None,
}


async def test_pipecat_category() -> None:
    async with aiohttp.ClientSession() as session:
        image_gen = FalbindImageGenService(
            aiohttp_session=session,
            key="key-id:key-secret",
            run_url="http://127.0.0.1:9/",  # never called: only the classification runs
            settings=FalbindImageGenService.Settings(model="fal-ai/flux/schnell"),
        )
        for name, error, kind, _, _ in CASES:
            assert image_gen._classify_error(error) is PIPECAT[kind], name
        # Pipecat's own addition: an image PIL cannot read is the server's fault.
        assert image_gen._classify_error(OSError("truncated")) is ErrorCategory.SERVER
        bomb = Image.DecompressionBombError("too big")
        assert image_gen._classify_error(bomb) is ErrorCategory.SERVER
