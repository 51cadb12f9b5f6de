"""The sync client sends a request's head and body in one write (issue 11), over real sockets:
one write per small request, an upload still streamed past 64 KiB, connections reused, a
caller's client left alone, and httpcore's handling of a failed write kept."""

from __future__ import annotations

import os
import typing
from collections.abc import Iterator

import httpcore
import httpx
import pytest

from falbind import FalClient
from falbind.client._coalesce import CoalescingBackend, CoalescingStream, coalesce_writes
from falbind.testing import FakeFalServer

SCHNELL = "fal-ai/flux/schnell"


class _Counting(httpcore.NetworkBackend):
    """A backend that counts connections and the writes reaching the socket."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend
        self.connections = 0
        self.writes: list[int] = []

    def connect_tcp(self, *args: typing.Any, **kwargs: typing.Any) -> httpcore.NetworkStream:
        self.connections += 1
        return _CountingStream(self._backend.connect_tcp(*args, **kwargs), self.writes)

    def connect_unix_socket(
        self, *args: typing.Any, **kwargs: typing.Any
    ) -> httpcore.NetworkStream:
        raise NotImplementedError

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _CountingStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, writes: list[int]) -> None:
        self._stream, self._writes = stream, writes

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:  # httpcore's socket stream sends nothing for an empty write
            self._writes.append(len(buffer))
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


def _counted(client: FalClient) -> _Counting:
    """Count what ``client``'s coalescing backend passes to the socket."""
    backend = client._http._transport._pool._network_backend  # type: ignore[attr-defined]
    assert isinstance(backend, CoalescingBackend)
    counting = _Counting(backend._backend)
    backend._backend = counting
    return counting


@pytest.fixture
def fal(server: FakeFalServer) -> Iterator[FalClient]:
    with server.client() as client:
        yield client


def test_falbind_s_own_client_coalesces(fal: FalClient) -> None:
    # The private layout coalesce_writes relies on: this fails if an httpx upgrade moves it.
    assert coalesce_writes(fal._http) is True
    assert isinstance(fal._http._transport._pool._network_backend, CoalescingBackend)  # type: ignore[attr-defined]


def test_each_small_request_is_one_write_on_one_connection(
    server: FakeFalServer, fal: FalClient
) -> None:
    counting = _counted(fal)
    assert fal.run(SCHNELL, {"prompt": "a fox"}).images
    assert fal.subscribe(SCHNELL, {"prompt": "a fox"}).images
    assert fal.run(SCHNELL, {"prompt": "a fox"}, extra_headers={"X-Trace": "t"}).images
    requests = len(server.requests)
    assert requests >= 5  # run, submit, the status stream, the result, run
    assert len(counting.writes) == requests
    assert counting.connections == 1
    # What arrived is whole: the POSTs' bodies are the arguments.
    posts = [r for r in server.requests if r.method == "POST"]
    assert all(r.json() == {"prompt": "a fox"} for r in posts)


def test_plain_httpx_writes_a_post_twice(server: FakeFalServer) -> None:
    """The baseline the tests above beat: httpcore's own backend writes head, then body."""
    with httpx.Client() as client:
        counting = _Counting(client._transport._pool._network_backend)  # type: ignore[attr-defined]
        client._transport._pool._network_backend = counting  # type: ignore[attr-defined]
        client.post(f"{server.run_url}/{SCHNELL}", json={"prompt": "a fox"})
    assert len(counting.writes) == 2


def test_a_large_upload_arrives_whole(server: FakeFalServer, fal: FalClient) -> None:
    counting = _counted(fal)
    data = os.urandom(300 * 1024)
    url = fal.upload(data, content_type="application/octet-stream")
    put = next(r for r in server.requests if r.method == "PUT")
    assert put.body == data
    assert httpx.get(url, timeout=10).content == data
    assert len(counting.writes) == 2  # the initiate POST, the PUT: one write each
    assert counting.writes[1] > len(data)


class _Recording(httpcore.NetworkStream):
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.sent.append(buffer)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return b"HTTP/1.1 200 OK\r\n"

    def close(self) -> None:
        pass


def test_writes_are_held_until_a_read_or_64_kib() -> None:
    inner = _Recording()
    stream = CoalescingStream(inner)
    stream.write(b"head")
    stream.write(b"")
    stream.write(b"body")
    assert inner.sent == []
    assert stream.read(100) == b"HTTP/1.1 200 OK\r\n"
    assert inner.sent == [b"headbody"]
    stream.write(b"h2")
    stream.write(b"x" * (64 * 1024))  # an upload's chunk: sent now, with what was held
    assert inner.sent[1:] == [b"h2" + b"x" * (64 * 1024)]
    stream.write(b"tail")
    stream.close()  # a closed connection sends nothing more
    assert len(inner.sent) == 2


def test_a_callers_client_is_left_as_it_is(server: FakeFalServer) -> None:
    with httpx.Client() as http:
        backend = http._transport._pool._network_backend  # type: ignore[attr-defined]
        with FalClient(run_url=server.run_url, queue_url=server.queue_url, http_client=http) as fal:
            assert fal.run(SCHNELL, {"prompt": "a fox"}).images
        assert http._transport._pool._network_backend is backend  # type: ignore[attr-defined]


class _Broken(httpcore.NetworkStream):
    """A connection whose peer closed: writes fail, reads find the end."""

    def __init__(self) -> None:
        self.reads = 0

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        raise httpcore.WriteError("connection reset by peer")

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.reads += 1
        return b""

    def close(self) -> None:
        pass


def test_a_failed_flush_lets_the_read_go_on_as_httpcore_does() -> None:
    broken = _Broken()
    stream = CoalescingStream(broken)
    stream.write(b"GET / HTTP/1.1\r\n\r\n")  # held: nothing fails yet
    assert stream.read(1024) == b"" and broken.reads == 1
    with pytest.raises(httpcore.WriteError):  # past the threshold it is sent at once
        stream.write(b"x" * (64 * 1024))


def test_a_client_built_otherwise_is_left_plain() -> None:
    with httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200))) as http:
        assert coalesce_writes(http) is False
