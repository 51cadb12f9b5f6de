"""The environment, as fal-client and openai-python users expect it: proxies for both clients
(through a real loopback HTTP proxy), ``FAL_RUN_HOST``/``FAL_QUEUE_RUN_HOST``, ``FALBIND_LOG``."""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport

from falbind import AsyncFalClient, FalClient
from falbind.client import env
from falbind.testing import FakeFalServer

SCHNELL = "fal-ai/flux/schnell"
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


class _ForwardingProxy(BaseHTTPRequestHandler):
    """A plain HTTP proxy (no CONNECT): forwards each absolute-form request to its origin and
    relays the whole answer. Every target it forwarded is recorded on the server."""

    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def _forward(self) -> None:
        target = urlsplit(self.path)
        self.server.seen.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else None
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in ("proxy-connection", "connection", "keep-alive")
        }
        assert target.hostname == "127.0.0.1"  # loopback only
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request(self.command, path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ForwardingProxy)
        self.seen: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def proxy() -> Iterator[_ProxyServer]:
    server = _ProxyServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_sync_client_goes_through_the_proxy(
    server: FakeFalServer, proxy: _ProxyServer, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    clean_proxy_env.setenv("HTTP_PROXY", proxy.url)
    with server.client() as fal:
        assert fal.run(SCHNELL, prompt="a fox").images
    assert proxy.seen == [f"POST {server.run_url}/{SCHNELL}"]


async def test_async_client_goes_through_the_proxy(
    server: FakeFalServer, proxy: _ProxyServer, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    clean_proxy_env.setenv("HTTP_PROXY", proxy.url)
    async with server.async_client() as fal:
        assert isinstance(fal._http._transport, AiohttpTransport)  # the default transport
        assert (await fal.run(SCHNELL, prompt="a fox")).images
        assert (await fal.subscribe(SCHNELL, prompt="a fox")).images
    assert proxy.seen[0] == f"POST {server.run_url}/{SCHNELL}"
    assert proxy.seen[1] == f"POST {server.queue_url}/{SCHNELL}"
    assert len(proxy.seen) >= 3  # the status and result GETs too


@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
async def test_no_proxy_is_honoured_by_both_clients(
    server: FakeFalServer,
    proxy: _ProxyServer,
    clean_proxy_env: pytest.MonkeyPatch,
    variable: str,
) -> None:
    clean_proxy_env.setenv("HTTP_PROXY", proxy.url)
    clean_proxy_env.setenv(variable, "127.0.0.1")
    with server.client() as fal:
        assert fal.run(SCHNELL, prompt="a fox").images
    async with server.async_client() as afal:
        assert (await afal.run(SCHNELL, prompt="a fox")).images
    assert proxy.seen == []
    assert server.count(route="run") == 2


async def test_a_users_http_client_is_used_as_given(
    server: FakeFalServer, proxy: _ProxyServer, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    async with httpx.AsyncClient(proxy=proxy.url) as http:
        fal = server.async_client(http_client=http)
        assert (await fal.run(SCHNELL, prompt="x")).images
        await fal.aclose()
        assert not http.is_closed
    assert proxy.seen == [f"POST {server.run_url}/{SCHNELL}"]


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, ("https://fal.run", "https://queue.fal.run")),
        ({"FAL_RUN_HOST": "fal.run"}, ("https://fal.run", "https://queue.fal.run")),
        (
            {"FAL_RUN_HOST": "gw.example:8443"},
            ("https://gw.example:8443", "https://queue.gw.example:8443"),
        ),
        (
            {"FAL_RUN_HOST": "run.example", "FAL_QUEUE_RUN_HOST": "q.example/"},
            ("https://run.example", "https://q.example"),
        ),
        ({"FAL_QUEUE_RUN_HOST": "q.example"}, ("https://fal.run", "https://q.example")),
        (
            {"FAL_RUN_HOST": "http://127.0.0.1:9000/"},
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ),
        ({"FAL_RUN_HOST": "  "}, ("https://fal.run", "https://queue.fal.run")),
    ],
)
def test_host_variables_map_to_urls(variables: dict[str, str], expected: tuple[str, str]) -> None:
    assert env.default_urls("https://fal.run", "https://queue.fal.run", variables) == expected


def test_clients_honour_the_host_variables(
    server: FakeFalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAL_RUN_HOST", server.run_url)
    monkeypatch.setenv("FAL_QUEUE_RUN_HOST", server.queue_url)
    with FalClient(key="", storage_url=server.storage_url) as fal:
        assert fal.run(SCHNELL, prompt="x").images
        assert fal.subscribe(SCHNELL, prompt="x").images
    assert server.count(route="run") == 1 and server.count(route="submit") == 1
    explicit = AsyncFalClient(key="", run_url="https://elsewhere.example")
    assert "run_url='https://elsewhere.example'" in repr(explicit)
    assert f"queue_url='{server.queue_url}'" in repr(explicit)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    logger = logging.getLogger("falbind")
    level = logger.level
    yield
    if env._handler is not None:
        logger.removeHandler(env._handler)
        env._handler = None
    logger.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
async def test_falbind_log_logs_requests_with_the_key_masked(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FALBIND_LOG", "debug")
    secret = "fal-secret-key-0123456789"
    with FakeFalServer(key=secret) as server, caplog.at_level(logging.DEBUG, logger="falbind"):
        with server.client(key=secret) as fal:
            fal.run(SCHNELL, prompt="x")
        async with server.async_client(key=secret) as afal:
            await afal.run(SCHNELL, prompt="x")
    messages = [record.getMessage() for record in caplog.records]
    request_line = f"HTTP request: POST {server.run_url}/{SCHNELL}"
    assert messages.count(request_line) == 2
    assert sum('"200 OK"' in m and m.startswith("HTTP response: POST") for m in messages) == 2
    assert any("'authorization': '<masked>'" in m for m in messages)
    err = capsys.readouterr().err
    assert request_line in err  # FALBIND_LOG installs a stderr handler
    assert secret not in caplog.text and secret not in err


def test_without_falbind_log_no_hooks_are_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FALBIND_LOG", raising=False)
    assert env.log_hooks() == {} and env.async_log_hooks() == {}
    with FalClient(key="") as fal:
        assert fal._http.event_hooks == {"request": [], "response": []}


@pytest.mark.usefixtures("restore_logging")
def test_an_unknown_falbind_log_value_is_ignored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FALBIND_LOG", "loud")
    assert env.log_hooks() == {}
    assert "FALBIND_LOG='loud' is not one of" in caplog.text
