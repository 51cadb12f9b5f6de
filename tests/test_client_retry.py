"""Retries that never bill twice: the pure decisions, then each fault over real sockets."""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import httpx
import pytest

from falbind.client.clients import FalClient
from falbind.client.errors import (
    FalConnectionError,
    FalError,
    FalTimeoutError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
)
from falbind.client.retry import (
    PollSchedule,
    RetryPolicy,
    never_reached_server,
    retry_after,
    retry_delay,
)
from falbind.testing.server import FakeFalServer, Fault

from support import FAST_RETRY

SCHNELL = "fal-ai/flux/schnell"


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "http://x/"))


# -- decisions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "get_retries", "post_retries"),
    [
        (429, {}, True, True),
        (500, {}, True, False),
        (502, {}, True, False),
        (503, {}, True, False),
        (504, {}, True, False),
        (504, {"X-Fal-Request-Timeout-Type": "user"}, False, False),
        (503, {"X-Fal-Retryable": "false"}, False, False),
        (400, {}, False, False),
        (401, {}, False, False),
        (422, {}, False, False),
    ],
)
def test_which_answers_are_retried(
    status: int, headers: dict[str, str], get_retries: bool, post_retries: bool
) -> None:
    for idempotent, expected in ((True, get_retries), (False, post_retries)):
        delay = retry_delay(
            FAST_RETRY,
            idempotent=idempotent,
            attempt=0,
            elapsed=0,
            response=_response(status, headers),
        )
        assert (delay is not None) is expected, (status, idempotent)


def _caused(error: httpx.TransportError, cause: BaseException) -> httpx.TransportError:
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("error", "post_retries"),
    [
        (httpx.ConnectError("refused"), True),
        (httpx.ConnectTimeout("slow connect"), True),
        (httpx.ReadTimeout("slow answer"), False),
        (httpx.ReadError("reset"), False),
        (httpx.RemoteProtocolError("server disconnected"), False),
        (httpx.WriteError("broken pipe"), False),
        # The aiohttp transport reports a mid-response disconnect as ConnectTimeout.
        (_caused(httpx.ConnectTimeout("x"), aiohttp.ServerDisconnectedError()), False),
        (_caused(httpx.ConnectTimeout("x"), aiohttp.ConnectionTimeoutError()), True),
    ],
)
def test_which_transport_errors_are_retried(
    error: httpx.TransportError, post_retries: bool
) -> None:
    assert never_reached_server(error) is post_retries
    assert retry_delay(FAST_RETRY, idempotent=True, attempt=0, elapsed=0, error=error) is not None
    post = retry_delay(FAST_RETRY, idempotent=False, attempt=0, elapsed=0, error=error)
    assert (post is not None) is post_retries


def test_backoff_is_exponential_bounded_and_jittered() -> None:
    policy = RetryPolicy(initial_backoff=0.25, max_backoff=1.0, jitter=False)
    assert [policy.backoff(n) for n in range(5)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    jittered = RetryPolicy(initial_backoff=0.25, max_backoff=1.0)
    assert jittered.backoff(3, rand=lambda: 0.5) == 0.5
    assert all(0 <= jittered.backoff(3) <= 1.0 for _ in range(100))


def test_retry_after_in_seconds_or_as_a_date_is_honoured_and_capped() -> None:
    assert retry_after(_response(429, {"Retry-After": "2"})) == 2.0
    when = datetime(2030, 1, 1, tzinfo=UTC)
    dated = _response(429, {"Retry-After": format_datetime(when, usegmt=True)})
    assert retry_after(dated, now=lambda: (when - timedelta(seconds=3)).timestamp()) == 3.0
    assert retry_after(_response(429, {"Retry-After": "soon"})) is None
    policy = RetryPolicy(max_retry_after=5.0)
    late = _response(429, {"Retry-After": "3600"})
    assert retry_delay(policy, idempotent=False, attempt=0, elapsed=0, response=late) == 5.0


def test_retries_stop_at_max_retries_and_total_timeout() -> None:
    error = httpx.ConnectError("refused")
    assert retry_delay(FAST_RETRY, idempotent=True, attempt=3, elapsed=0, error=error) is None
    bounded = RetryPolicy(initial_backoff=1.0, jitter=False, total_timeout=2.0)
    assert retry_delay(bounded, idempotent=True, attempt=0, elapsed=0.5, error=error) == 1.0
    assert retry_delay(bounded, idempotent=True, attempt=0, elapsed=1.5, error=error) is None


def test_poll_schedule_starts_fast_backs_off_to_a_cap_and_resets() -> None:
    schedule = PollSchedule(initial=0.02, factor=2.0, cap=0.1)
    assert [schedule.next_delay() for _ in range(5)] == [0.02, 0.04, 0.08, 0.1, 0.1]
    schedule.reset()
    assert schedule.next_delay() == 0.02


# -- over real sockets ----------------------------------------------------------------------


def _wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def test_post_is_retried_on_429(server: FakeFalServer, client: FalClient) -> None:
    server.inject(Fault.rate_limit(), route="run", times=2)
    client.flux_schnell(prompt="x")
    assert server.count(route="run") == 3


def test_post_gives_up_after_max_retries_of_429(server: FakeFalServer, client: FalClient) -> None:
    server.inject(Fault.rate_limit(), route="run", times=None)
    with pytest.raises(RateLimitError):
        client.flux_schnell(prompt="x")
    assert server.count(route="run") == 1 + FAST_RETRY.max_retries


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_post_is_never_retried_on_5xx(
    server: FakeFalServer, client: FalClient, status: int
) -> None:
    server.inject(Fault.http(status), route="run")
    with pytest.raises(ServerError):
        client.flux_schnell(prompt="x")
    assert server.count(route="run") == 1


def test_user_timeout_504_is_never_retried(server: FakeFalServer, client: FalClient) -> None:
    server.inject(Fault.user_timeout(), times=None)
    with pytest.raises(RequestTimeoutError):
        client.flux_schnell(prompt="x", start_timeout=5)
    handle = client.get_handle(SCHNELL, "some-request")
    with pytest.raises(RequestTimeoutError):
        handle.status()
    assert server.count() == 2


def test_post_is_not_retried_after_a_reset(server: FakeFalServer, client: FalClient) -> None:
    server.inject(Fault.reset(), route="run")
    with pytest.raises(FalConnectionError):
        client.flux_schnell(prompt="x")
    assert server.count(route="run") == 1


def test_no_duplicate_post_on_read_timeout(server: FakeFalServer, client: FalClient) -> None:
    server.inject(Fault.slow(1.0), route="run")
    with pytest.raises(FalTimeoutError, match="ReadTimeout"):
        client.flux_schnell(prompt="x", timeout=0.2)
    time.sleep(0.05)  # a retry would arrive now
    assert server.count(route="run") == 1


def test_submit_times_out_with_the_client_timeout(server: FakeFalServer) -> None:
    server.inject(Fault.slow(1.0), route="submit")
    with server.client(timeout=0.2, retry=FAST_RETRY) as client, pytest.raises(FalTimeoutError):
        client.submit(SCHNELL, prompt="x")
    assert server.count(route="submit") == 1


def test_post_is_retried_when_the_connection_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.DEBUG, logger="falbind")
    url = f"http://127.0.0.1:{port}"
    with (
        FalClient(key="", run_url=url, retry=FAST_RETRY) as client,
        pytest.raises(FalConnectionError, match="ConnectError"),
    ):
        client.flux_schnell(prompt="x")
    retries = [r for r in caplog.records if r.getMessage().startswith("retrying POST")]
    assert len(retries) == FAST_RETRY.max_retries


@pytest.mark.parametrize(
    "fault",
    [
        Fault.http(500),
        Fault.http(502),
        Fault.http(503),
        Fault.http(504),
        Fault.rate_limit(),
        Fault.reset(),
    ],
    ids=["500", "502", "503", "504", "429", "reset"],
)
def test_status_get_is_retried_on_transient_faults(
    server: FakeFalServer, client: FalClient, fault: Fault
) -> None:
    handle = client.submit(SCHNELL, prompt="x")
    server.inject(fault, route="status", times=2)
    handle.status()
    assert server.count(route="status") == 3


def test_result_get_is_retried(server: FakeFalServer, client: FalClient) -> None:
    client._status_stream = False
    server.inject(Fault.http(502), route="result", times=2)
    assert client.queue.flux_schnell(prompt="x").prompt == "x"
    assert server.count(route="result") == 3


def test_retry_after_is_honoured(
    server: FakeFalServer, client: FalClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    server.inject(Fault.rate_limit(retry_after=0.7), route="run")
    server.inject(Fault.rate_limit(retry_after="Wed, 21 Oct 2015 07:28:00 GMT"), route="run")
    client.flux_schnell(prompt="x")
    assert waits == [0.7, 0.0]  # a date in the past means "now"


def test_total_time_is_bounded(server: FakeFalServer) -> None:
    policy = RetryPolicy(max_retries=100, initial_backoff=0.05, jitter=False, total_timeout=0.5)
    server.inject(Fault.http(503), route="status", times=None)
    started = time.monotonic()
    with server.client(retry=policy) as client, pytest.raises(ServerError):
        client.get_handle(SCHNELL, "r").status()
    assert time.monotonic() - started < 5
    assert 2 <= server.count(route="status") < 100


def test_the_key_never_appears_in_errors_reprs_or_logs(
    server: FakeFalServer, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-very-secret-key-123"
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    server.key = secret
    faults = [
        Fault.http(500),
        Fault.rate_limit(),
        Fault.reset(),
        Fault.malformed_json(),
        Fault.slow(0.5),
    ]
    with server.client(timeout=0.2, retry=FAST_RETRY) as client:
        texts.append(repr(client))
        for fault in faults:
            server.inject(fault, times=None)
            for call in (
                lambda: client.flux_schnell(prompt="x"),
                lambda: client.get_handle(SCHNELL, "r").status(),
            ):
                with pytest.raises(FalError) as caught:
                    call()
                texts += [str(caught.value), repr(caught.value), repr(caught.value.__dict__)]
                texts += [repr(caught.value.__cause__), str(caught.value.__context__)]
            server.clear_faults()
    with server.client(key="wrong-" + secret) as client, pytest.raises(FalError) as caught:
        client.flux_schnell(prompt="x")
    texts += [str(caught.value), repr(caught.value)]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(record.args) for record in caplog.records]
    assert len(caplog.records) > 10
    assert not [text for text in texts if secret in text]
