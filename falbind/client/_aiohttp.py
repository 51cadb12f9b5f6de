"""The async client's requests sent over an ``aiohttp.ClientSession`` directly.

``httpx`` over aiohttp (``httpx-aiohttp``'s transport) costs ~220 µs of CPU a request more than
aiohttp alone, most of it httpx's request/response machinery. Here :mod:`._core`'s ready
:class:`~._core.Call` (method, URL, headers, body, timeouts) goes straight to aiohttp, and the
answer comes back as a plain ``httpx.Response`` built from bytes already read, so everything
above (decoding, errors, retries) is unchanged. Failures are mapped to httpx's exception classes
by ``httpx-aiohttp``'s own mapping (the aiohttp error chained as ``__cause__``), so the retry
rules and messages are exactly those of the httpx-over-aiohttp path. A queued job's status
stream (:func:`stream`) goes over the session directly too, its body read through httpx's
decoders exactly as on the httpx-over-aiohttp path.
"""

from __future__ import annotations

import functools
import ssl
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions
from yarl import URL

from ._core import Call, SharedHeaders
from ._urls import plain_url

__all__ = ["AiohttpSession", "Answer", "Headers", "Target", "send", "stream", "target"]

# httpx's pool defaults, as httpx-aiohttp's transport applies them to the session it creates.
_LIMIT = 100
_KEEPALIVE_SECONDS = 5.0


class Headers(dict[str, str]):
    """Request headers as aiohttp takes them (lower-cased names). Their ``repr`` shows the
    names only, so no traceback's frame locals show the key (as ``httpx.Headers`` hides it)."""

    def __repr__(self) -> str:
        return f"<headers {sorted(self)}>"


class AiohttpSession:
    """The session requests go over: the caller's (used, never closed), or one created on first
    use inside the running event loop (aiohttp sessions belong to a loop) and closed by
    :meth:`close`. Shared by a client and its ``with_options`` copies.

    :meth:`prepare` turns a :class:`~._core.Call` into what aiohttp takes, :meth:`send` and
    :meth:`stream` send it (the module's functions over this session).
    """

    def __init__(self, session: aiohttp.ClientSession | None, ssl_context: ssl.SSLContext) -> None:
        self._given = session
        self._session = session
        self._ssl = ssl_context
        self._base_headers: dict[str, str] = {}
        # A config's shared headers (see SharedHeaders) merged with the base headers, by id:
        # most calls send one of the same few, so the merge is kept rather than redone. Each
        # entry holds the headers object itself, so its id cannot be reused while it lives.
        self._merged: dict[int, tuple[httpx.Headers, Headers]] = {}

    def set_base_headers(self, headers: Mapping[str, str]) -> None:
        """The headers every request starts with (the client sets httpx's defaults, which the
        httpx path sends too: Accept, Accept-Encoding, Connection, User-Agent)."""
        self._base_headers = dict(headers)
        self._merged.clear()

    def prepare(self, call: Call) -> tuple[Target, Headers]:
        """Where ``call`` goes and its headers: the base headers, then the call's."""
        where = target(call.method, call.url, tuple(call.params.items()) if call.params else ())
        merged = self._merged.get(id(call.headers))
        if merged is not None and merged[0] is call.headers:
            return where, merged[1]
        headers = Headers(self._base_headers)
        headers.update(call.headers.items())
        if isinstance(call.headers, SharedHeaders):
            if len(self._merged) >= 16:  # a client and its with_options copies have a few each
                self._merged.clear()
            self._merged[id(call.headers)] = (call.headers, headers)
        return where, headers

    def send(self, call: Call, where: Target, headers: Headers) -> Awaitable[httpx.Response]:
        """:func:`send` over this session (returned as is: no coroutine of its own)."""
        return send(self.get(), call, where, headers)

    def stream(
        self, call: Call, where: Target, headers: Headers
    ) -> AbstractAsyncContextManager[httpx.Response]:
        """:func:`stream` over this session."""
        return stream(self.get(), call, where, headers)

    @property
    def given(self) -> bool:
        return self._given is not None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl, limit=_LIMIT, keepalive_timeout=_KEEPALIVE_SECONDS
            )
            # Honour HTTP(S)_PROXY/NO_PROXY as the sync client (httpx) does. aiohttp's trust_env
            # re-reads the environment on every request (measured: a third of the throughput),
            # so it is turned on only when a proxy variable is set when the session is created.
            proxies = urllib.request.getproxies_environment()
            trust_env = any(scheme != "no" for scheme in proxies)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=trust_env)
        return self._session

    async def close(self) -> None:
        if self._given is None and self._session is not None:
            await self._session.close()


class Target:
    """Where a request goes: aiohttp's URL, and what its answer's ``request`` names (built
    only when read: error messages read it, a good answer never does)."""

    __slots__ = ("_named", "method", "url")

    def __init__(self, method: str, url: URL, named: httpx.URL | str) -> None:
        self.method = method
        self.url = url
        self._named = named

    def request(self) -> httpx.Request:
        return httpx.Request(self.method, self._named)


class Answer(httpx.Response):
    """An ``httpx.Response`` whose ``request`` is built from its :class:`Target`, and whose
    ``headers`` from aiohttp's raw ones, when first read: a good answer is decoded from its
    status and body alone, so neither is built for it (~3 µs, several times that under load)."""

    _target: Target
    _headers: httpx.Headers
    _raw_headers: Any = None
    """aiohttp's raw header pairs, until ``headers`` is first read."""

    @property  # httpx's attribute, read and written the same way
    def headers(self) -> httpx.Headers:
        raw = self._raw_headers
        if raw is not None:
            self._headers = httpx.Headers(raw)
            self._raw_headers = None
        return self._headers

    @headers.setter
    def headers(self, value: httpx.Headers) -> None:
        self._headers = value
        self._raw_headers = None

    @property
    def request(self) -> httpx.Request:
        if self._request is None:
            self._request = self._target.request()
        return self._request

    @request.setter
    def request(self, value: httpx.Request) -> None:
        self._request = value


def _answer(
    target: Target,
    status: int,
    raw_headers: Any,
    reason: str | None,
    *,
    content: bytes | None = None,
    stream: httpx.AsyncByteStream | httpx.ByteStream | None = None,
) -> Answer:
    extensions = {"http_version": b"HTTP/1.1"}
    if reason:
        extensions["reason_phrase"] = reason.encode()
    if content is not None:  # httpx sets content headers from these: built now
        answer = Answer(status, headers=raw_headers, content=content, extensions=extensions)
    else:
        answer = Answer(status, stream=stream, extensions=extensions)
        answer._raw_headers = raw_headers
    answer._target = target
    return answer


@functools.lru_cache(maxsize=4096)
def target(method: str, url: str, params: tuple[tuple[str, str], ...]) -> Target:
    """Where ``method url`` (``params`` merged in, as httpx merges them) goes: built once per
    request line (a run URL per endpoint, a queued job's URLs once each). httpx's parse, the
    most costly part of a request's own work, is skipped for a plain URL (see :func:`~._urls.plain_url`);
    either way aiohttp gets the URL exactly as httpx writes it (already percent-encoded)."""
    plain = plain_url(url, params)
    if plain is not None:
        return Target(method, URL(plain, encoded=True), plain)
    parsed = httpx.URL(url)
    if params:
        parsed = parsed.copy_merge_params(dict(params))
    return Target(method, URL(str(parsed), encoded=True), parsed)


@functools.lru_cache(maxsize=64)
def _client_timeout(
    connect: float | None, read: float | None, pool: float | None
) -> aiohttp.ClientTimeout:
    # The mapping httpx-aiohttp's transport makes (aiohttp has no write timeout).
    return aiohttp.ClientTimeout(sock_connect=connect, sock_read=read, connect=pool)


async def send(
    session: aiohttp.ClientSession, call: Call, where: Target, headers: Headers
) -> httpx.Response:
    """Send ``call`` to ``where`` (from :func:`target`) with ``headers``; the whole answer.

    Raises httpx's transport errors (the aiohttp error as ``__cause__``), like the
    httpx-over-aiohttp path; decompression is left to httpx, as there.
    """
    try:
        async with _request(session, call, where, headers) as response:
            content = await response.read()
    except Exception:
        # httpx-aiohttp's mapping, entered only on failure (it costs on every request).
        with map_aiohttp_exceptions():
            raise
    if "Content-Encoding" in response.headers:
        # Decoded by httpx as it reads (gzip, deflate, ...), exactly as on the httpx path.
        return _answer(
            where, response.status, response.raw_headers, response.reason, content=content
        )
    # Unencoded: the bytes read are the content. Handing them to httpx as already read skips
    # its decode pipeline (~20 µs a response); httpx keeps a read body in ``_content``.
    answer = _answer(
        where,
        response.status,
        response.raw_headers,
        response.reason,
        stream=httpx.ByteStream(content),
    )
    answer._content = content
    return answer


def _request(session: aiohttp.ClientSession, call: Call, where: Target, headers: Headers) -> Any:
    """aiohttp's request for ``call`` with the options both paths share (no redirects, no
    decompression by aiohttp, httpx's timeouts); await it, or enter it with ``async with``."""
    timeout = call.timeout
    return session.request(
        call.method,
        where.url,
        headers=headers,
        data=call.content or None,
        allow_redirects=False,
        auto_decompress=False,
        compress=False,
        timeout=_client_timeout(timeout.connect, timeout.read, timeout.pool),
    )


@asynccontextmanager
async def stream(
    session: aiohttp.ClientSession, call: Call, where: Target, headers: Headers
) -> AsyncIterator[httpx.Response]:
    """Open ``call`` (a status stream) at ``where`` with ``headers``: the answer as an
    ``httpx.Response`` whose body is read as it arrives, closed on exit.

    What httpx-aiohttp's transport hands httpx, without httpx's client around it: the same
    aiohttp request (timeouts per read), the body through httpx's own stream wrapper (so
    decompression, charset decoding, chunking and the mapping of aiohttp's errors while
    reading are those of the httpx path), and the aiohttp response released on exit (the
    connection goes back to the pool only when the body was read to its end).
    """
    try:
        opened = await _request(session, call, where, headers)
    except Exception:
        with map_aiohttp_exceptions():
            raise
    response = _answer(
        where,
        opened.status,
        opened.raw_headers,
        opened.reason,
        stream=AiohttpResponseStream(opened),
    )
    try:
        yield response
    finally:
        await response.aclose()
