"""The queue with FalClient over real sockets: submit, handles, statuses, stream, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import falbind
from falbind.client.clients import FalClient
from falbind.client.errors import FalRequestFailedError, FalTimeoutError
from falbind.client.queue import Completed, InProgress, Queued, QueueStatus, parse_status
from falbind.testing.server import FakeFalServer, Fault

DEV = "fal-ai/flux/dev"


def test_submit_uses_the_urls_fal_returns(server: FakeFalServer, client: FalClient) -> None:
    handle = client.submit(DEV, prompt="x")
    base = f"{server.queue_url}/fal-ai/flux/requests/{handle.request_id}"
    assert (handle.status_url, handle.response_url, handle.cancel_url) == (
        f"{base}/status",
        base,
        f"{base}/cancel",
    )
    assert handle.endpoint_id == DEV
    assert isinstance(handle.result(), falbind.ENDPOINTS[DEV].output_model)
    assert server.requests[0].path == f"/queue/{DEV}"


def test_statuses_are_typed(server: FakeFalServer, client: FalClient) -> None:
    server.queue_time, server.processing_time = 0.3, 0.3
    handle = client.submit(DEV, prompt="x")
    assert handle.status() == Queued(position=0)
    events = list(handle.iter_events(with_logs=True))
    assert isinstance(events[-1], Completed)
    assert events[-1].metrics == {"inference_time": 0.3}
    assert [e.message for e in events[-1].logs] == ["fake runner started", "fake runner finished"]
    in_progress = [e for e in events if isinstance(e, InProgress)]
    assert in_progress and in_progress[0].logs[0].message == "fake runner started"
    assert server.requests[-1].query == {"logs": "1"}


def test_parse_status_refuses_unknown_statuses() -> None:
    assert parse_status({"status": "IN_QUEUE", "queue_position": 3}) == Queued(3)
    with pytest.raises(ValueError, match="SLEEPING"):
        parse_status({"status": "SLEEPING"})


def test_subscribe_uses_the_status_stream(server: FakeFalServer, client: FalClient) -> None:
    server.processing_time = 0.2
    seen: list[QueueStatus] = []
    output = client.queue.flux_dev(prompt="a fox", on_queue_update=seen.append, with_logs=True)
    assert output.prompt == "a fox"
    assert isinstance(seen[0], Queued | InProgress) and isinstance(seen[-1], Completed)
    assert server.count(route="stream") == 1
    assert server.count(route="status") == 0


def test_the_stream_connection_is_reused_once_it_ends(
    server: FakeFalServer, client: FalClient
) -> None:
    client.subscribe(DEV, prompt="x")
    client.subscribe(DEV, prompt="y")
    assert [r.route for r in server.requests] == ["submit", "stream", "result"] * 2
    assert len({r.peer for r in server.requests}) == 1


def test_polling_is_the_fallback_when_no_stream_is_served(
    server: FakeFalServer, client: FalClient
) -> None:
    server.processing_time = 0.2
    server.inject(Fault.http(404), route="stream", times=None)
    client.subscribe(DEV, prompt="x")
    client.subscribe(DEV, prompt="y")
    assert server.count(route="stream") == 1  # not asked again once known to be missing
    assert server.count(route="status") >= 3


def test_polling_backs_off(server: FakeFalServer, client: FalClient) -> None:
    server.processing_time = 0.6
    client._status_stream = False
    client.subscribe(DEV, prompt="x")
    polls = server.count(route="status")
    assert 4 <= polls <= 20  # 20 ms first, growing; a fixed 20 ms loop would poll ~30 times


def test_a_broken_stream_falls_back_to_polling(server: FakeFalServer, client: FalClient) -> None:
    server.inject(Fault.reset(), route="stream")
    assert client.subscribe(DEV, prompt="x").prompt == "x"
    assert server.count(route="status") >= 1


def test_subscribe_options_reach_fal(server: FakeFalServer, client: FalClient) -> None:
    client.subscribe(
        DEV,
        prompt="x",
        webhook_url="https://example.com/hook?a=1",
        priority="low",
        start_timeout=60.5,
        hint="h",
    )
    submit = server.requests[0]
    assert submit.query == {"fal_webhook": "https://example.com/hook?a=1"}
    assert submit.headers["x-fal-queue-priority"] == "low"
    assert submit.headers["x-fal-request-timeout"] == "60.5"
    assert submit.headers["x-fal-runner-hint"] == "h"


def test_a_handle_is_rebuilt_from_a_stored_request_id(
    server: FakeFalServer, client: FalClient
) -> None:
    request_id = client.submit(DEV, prompt="stored").request_id
    handle = client.get_handle(DEV, request_id)
    assert handle.status_url == f"{server.queue_url}/fal-ai/flux/requests/{request_id}/status"
    assert handle.result().prompt == "stored"


def test_completed_with_error_raises_request_failed(
    server: FakeFalServer, client: FalClient
) -> None:
    server.inject(Fault.completed_with_error("CUDA out of memory", "runner_oom"))
    with pytest.raises(FalRequestFailedError, match="CUDA out of memory") as caught:
        client.queue.flux_dev(prompt="x")
    assert caught.value.error_type == "runner_oom"
    assert caught.value.request_id
    assert server.count(route="result") == 0


def test_client_timeout_cancels_the_request(server: FakeFalServer, client: FalClient) -> None:
    server.inject(Fault.never_complete())
    with pytest.raises(FalTimeoutError, match="cancelled"):
        client.subscribe(DEV, prompt="x", client_timeout=0.3)
    (cancel,) = [r for r in server.requests if r.route == "cancel"]
    assert cancel.method == "PUT"
    handle = client.get_handle(DEV, _request_id(server))
    status = handle.status()
    assert isinstance(status, Completed) and status.error_type == "request_cancelled"


def test_client_timeout_also_bounds_polling(server: FakeFalServer, client: FalClient) -> None:
    client._status_stream = False
    server.inject(Fault.never_complete())
    with pytest.raises(FalTimeoutError):
        client.subscribe(DEV, prompt="x", client_timeout=0.3)
    assert server.count(route="cancel") == 1


def test_cancel_says_whether_fal_accepted(server: FakeFalServer, client: FalClient) -> None:
    server.inject(Fault.never_complete())
    stuck = client.submit(DEV, prompt="x")
    assert stuck.cancel() is True
    handle = client.submit(DEV, prompt="x")
    handle.result()
    assert handle.cancel() is False  # fal: 400 ALREADY_COMPLETED
    assert server.count(route="cancel") == 2


def test_cancel_of_an_unknown_request_still_raises(client: FalClient) -> None:
    handle = client.get_handle(DEV, "00000000-0000-0000-0000-00000000dead")
    with pytest.raises(falbind.NotFoundError):
        handle.cancel()


def _request_id(server: FakeFalServer) -> str:
    submitted = server.requests[0]
    assert submitted.route == "submit"
    stream = next(r for r in server.requests if r.route in ("stream", "status"))
    return stream.path.split("/requests/")[1].split("/")[0]


def test_status_stream_lines_are_utf8_split_anywhere() -> None:
    """Event-stream lines are split on bytes and decoded as UTF-8 (the SSE standard), so a
    character cut between two reads, CRLF endings and a last line without its newline all
    come out whole, and malformed bytes are replaced rather than failing the stream."""
    from falbind.client.queue import _alines, _Deadline, _lines

    body = 'data: {"logs": [{"message": "gerät ✓"}]}\r\n\r\n: ping\nlast'.encode()
    expected = ['data: {"logs": [{"message": "gerät ✓"}]}', "", ": ping", "last"]
    for size in (1, 2, 3, 5, len(body)):
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        assert list(_lines(iter(chunks), _Deadline(None))) == expected

        async def collect(chunks: list[bytes] = chunks) -> list[str]:
            async def produce() -> AsyncIterator[bytes]:
                for chunk in chunks:
                    yield chunk

            return [line async for line in _alines(produce(), _Deadline(None))]

        assert asyncio.run(collect()) == expected
    assert list(_lines(iter([b"data: \xff\n"]), _Deadline(None))) == ["data: \ufffd"]
