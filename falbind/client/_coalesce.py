"""The sync client's requests leave in one write: head and body together (issue 11).

httpcore writes a request's head, then its body, each with its own ``send`` call. Over TCP each
is a system call, and on a fast link (loopback above all) the kernel runs the receiving side's
work inside it too: measured here at ~50 µs of CPU a call, as much as all of falbind's own work
on a request. So a POST of a small JSON body paid for two. :class:`CoalescingStream` keeps the
writes of a request until the client starts reading the answer, then sends them in one call;
past 64 KiB pending (an upload) it sends as it goes, so memory stays bounded as before.

This plugs into httpcore's public extension point, the ``NetworkBackend`` of its connection
pool. httpx's ``HTTPTransport`` builds its pool with the default backend and takes no other
(and a client given ``transport=`` ignores the proxy environment), so :func:`coalesce_writes`
wraps the backend of the pool the client built: private attributes of httpx and httpcore, read
defensively (any other layout leaves the writes plain), and checked by a test, so an upgrade
that moves them fails loudly.

Errors keep httpcore's semantics: a write that fails while the request is being sent is
ignored by httpcore, which goes on to read whatever answer the server sent before closing; a
flush that fails when reading starts is ignored the same way (the read then fails, or returns
that answer).
"""

from __future__ import annotations

import contextlib
import ssl
import typing
from typing import Final

import httpcore
import httpx

__all__ = ["CoalescingBackend", "CoalescingStream", "coalesce_writes"]

_FLUSH_AT: Final = 64 * 1024
"""Pending bytes past which writes are sent at once (an upload's body streams as before)."""


class CoalescingStream(httpcore.NetworkStream):
    """A network stream whose writes are held until the next read (or :data:`_FLUSH_AT`)."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self._size = 0
        self._timeout: float | None = None

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        self._pending.append(buffer)
        self._size += len(buffer)
        self._timeout = timeout
        if self._size >= _FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._size = 0
        self._stream.write(data, self._timeout)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        # As httpcore does with a failed write: the server may have answered before closing.
        with contextlib.suppress(httpcore.WriteError):
            self._flush()
        return self._stream.read(max_bytes, timeout)

    def close(self) -> None:
        self._pending.clear()
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        self._flush()  # a proxy's CONNECT goes first
        return CoalescingStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class CoalescingBackend(httpcore.NetworkBackend):
    """A network backend whose streams are :class:`CoalescingStream`."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        return CoalescingStream(
            self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        )

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        return CoalescingStream(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def coalesce_writes(client: httpx.Client) -> bool:
    """Coalesce the writes of ``client``'s default transport (the one falbind's client built;
    the proxy transports httpx mounts from the environment are left as they are). Whether it
    could: with another httpx/httpcore layout, writes stay plain and behaviour the same."""
    transport = getattr(client, "_transport", None)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if not isinstance(transport, httpx.HTTPTransport) or not isinstance(
        pool, httpcore.ConnectionPool
    ):
        return False
    if not isinstance(backend, httpcore.NetworkBackend):
        return False
    if not isinstance(backend, CoalescingBackend):
        pool._network_backend = CoalescingBackend(backend)
    return True
