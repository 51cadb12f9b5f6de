"""The fault matrix: each fault fal (or the network in front of it) can produce, against sync
``run``, sync ``subscribe``, async ``run`` and async ``subscribe`` (the async ones on the aiohttp
transport and on httpx's own), over the fake fal server's real loopback sockets.

For each case: how many POSTs reached the server (never more than one billable POST; only a
429, which fal never processes, is sent again), what was raised (or, for a drifted output, a
typed object and the warning), and that the wall time stays under a bound.

Two faults only exist on the queue: "COMPLETED with error" is not a case for ``run``, and for
``run`` the "stuck" case is its own deadline (an answer slower than ``timeout=``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import httpx
import pytest

import falbind
from falbind import (
    FalConnectionError,
    FalDecodeError,
    FalError,
    FalRequestFailedError,
    FalTimeoutError,
    OutputSchemaWarning,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    UnprocessableEntityError,
)
from falbind.testing.server import FakeFalServer, Fault

from support import FAST_RETRY

SCHNELL = "fal-ai/flux/schnell"
TIMEOUT = 0.5
"""Each HTTP request's timeout, and the ``client_timeout`` of the stuck queue."""
Mode = Literal["run", "subscribe"]


@dataclass(frozen=True)
class Case:
    fault: Callable[[FakeFalServer], Fault | None]
    """The fault to inject on the billable POST (``run``/``submit``); ``None``: set up otherwise."""
    raises: type[FalError] | None
    """``None``: the call returns (a drifted output, typed, with a warning)."""
    posts: int
    bound: float
    """Seconds the call may take at most."""
    modes: tuple[Mode, ...] = ("run", "subscribe")
    setup: Callable[[FakeFalServer], None] | None = None
    options: Callable[[Mode], dict[str, Any]] | None = None


def _drift(server: FakeFalServer) -> None:
    server.add_endpoint(
        SCHNELL,
        lambda body: {"images": [{"url": f"{server.url}/files/a.png", "width": "wide"}]},
    )


def _stuck(server: FakeFalServer) -> Fault:
    # run: the answer never comes within timeout=; subscribe: the request never completes.
    return Fault.slow(5.0)


CASES: dict[str, Case] = {
    "429 with Retry-After": Case(
        lambda s: Fault.rate_limit(retry_after="0.01"),
        RateLimitError,
        1 + FAST_RETRY.max_retries,
        3,
    ),
    "500": Case(lambda s: Fault.http(500), ServerError, 1, 3),
    "502": Case(lambda s: Fault.http(502), ServerError, 1, 3),
    "503": Case(lambda s: Fault.http(503), ServerError, 1, 3),
    "504": Case(lambda s: Fault.http(504), ServerError, 1, 3),
    "504 user timeout": Case(lambda s: Fault.user_timeout(), RequestTimeoutError, 1, 3),
    "close after request": Case(lambda s: Fault.close(), FalConnectionError, 1, 3),
    "no answer": Case(lambda s: Fault.slow(5.0), FalTimeoutError, 1, TIMEOUT + 1.5),
    "malformed JSON": Case(lambda s: Fault.malformed_json(), FalDecodeError, 1, 3),
    "HTML error page": Case(lambda s: Fault.html(502), ServerError, 1, 3),
    "stuck queue, client_timeout": Case(
        lambda s: None,
        FalTimeoutError,
        1,
        TIMEOUT + 1.5,
        setup=lambda s: s.inject(Fault.never_complete()),
        options=lambda mode: {"client_timeout": TIMEOUT} if mode == "subscribe" else {},
        modes=("subscribe",),
    ),
    "run slower than timeout=": Case(_stuck, FalTimeoutError, 1, TIMEOUT + 1.5, modes=("run",)),
    "COMPLETED with error": Case(
        lambda s: None,
        FalRequestFailedError,
        1,
        3,
        setup=lambda s: s.inject(Fault.completed_with_error()),
        modes=("subscribe",),
    ),
    "drifted output": Case(lambda s: None, None, 1, 3, setup=_drift),
    "422 with a list": Case(
        lambda s: Fault.json(
            422, {"detail": [{"loc": ["body", "prompt"], "msg": "too long", "type": "x"}]}
        ),
        UnprocessableEntityError,
        1,
        3,
    ),
    "422 with a string": Case(
        lambda s: Fault.json(422, {"detail": "prompt refused"}), UnprocessableEntityError, 1, 3
    ),
}

PAIRS = [(name, mode) for name, case in CASES.items() for mode in case.modes]


def _arrange(server: FakeFalServer, name: str, mode: Mode) -> Case:
    case = CASES[name]
    if case.setup is not None:
        case.setup(server)
    fault = case.fault(server)
    if fault is not None:
        route = "run" if mode == "run" else "submit"
        server.inject(fault, route=route, times=None)
    return case


def _check(case: Case, server: FakeFalServer, outcome: Any, error: BaseException | None) -> None:
    assert server.count(method="POST") == case.posts
    if case.raises is None:
        assert error is None
        assert isinstance(outcome, falbind.ENDPOINTS[SCHNELL].output_model)
        assert outcome.images[0].width == "wide" and outcome.schema_mismatch
    else:
        assert isinstance(error, case.raises), repr(error)
    if isinstance(error, UnprocessableEntityError):
        assert error.detail in ("prompt refused", error.body["detail"])


@pytest.mark.parametrize(("name", "mode"), PAIRS)
def test_sync(server: FakeFalServer, name: str, mode: Mode) -> None:
    case = _arrange(server, name, mode)
    options = case.options(mode) if case.options else {}
    outcome, error = None, None
    started = time.monotonic()
    with server.client(retry=FAST_RETRY, timeout=TIMEOUT) as client:
        try:
            with _warns_if(case.raises is None):
                outcome = getattr(client, mode)(SCHNELL, prompt="x", **options)
        except FalError as exc:
            error = exc
    assert time.monotonic() - started < case.bound
    _check(case, server, outcome, error)


@pytest.mark.parametrize("transport", ["aiohttp", "httpx", "aiohttp_session"])
@pytest.mark.parametrize(("name", "mode"), PAIRS)
async def test_async(server: FakeFalServer, name: str, mode: Mode, transport: str) -> None:
    case = _arrange(server, name, mode)
    options = case.options(mode) if case.options else {}
    outcome, error = None, None
    started = time.monotonic()
    async with httpx.AsyncClient() as http, aiohttp.ClientSession() as session:
        extra: dict[str, Any] = {"http_client": http} if transport == "httpx" else {}
        if transport == "aiohttp_session":
            extra = {"aiohttp_session": session}
        async with server.async_client(retry=FAST_RETRY, timeout=TIMEOUT, **extra) as client:
            try:
                with _warns_if(case.raises is None):
                    outcome = await getattr(client, mode)(SCHNELL, prompt="x", **options)
            except FalError as exc:
                error = exc
    assert time.monotonic() - started < case.bound
    _check(case, server, outcome, error)


def _warns_if(expected: bool) -> contextlib.AbstractContextManager[Any]:
    """``pytest.warns(OutputSchemaWarning)`` when ``expected``, else nothing is checked."""
    return pytest.warns(OutputSchemaWarning) if expected else contextlib.nullcontext()
