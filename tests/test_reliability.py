"""Issue 9, the client part: no paid result lost, deadlines kept, keys kept secret and checked,
queue URLs followed only on trusted origins, every failure a picklable ``FalError``.

Every network case runs over real loopback sockets (the fake fal server, or a small server
started here), on the sync client and on the async client with both transports.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

import falbind
from falbind import (
    AsyncFalClient,
    FalClient,
    FalConnectionError,
    FalDecodeError,
    FalError,
    FalTimeoutError,
    InvalidArgumentsError,
    InvalidKeyError,
    MissingKeyError,
    OutputSchemaWarning,
    UntrustedURLError,
)
from falbind.client._core import ClientConfig, QueueURLs, resolve_endpoint
from falbind.client.auth import Secret
from falbind.client.errors import FieldError
from falbind.client.retry import RetryPolicy, retry_delay
from falbind.testing.server import FakeFalServer, Fault

from support import FAST_RETRY

SCHNELL = "fal-ai/flux/schnell"
KEY = "sk-test-0123456789abcdef:topsecretvalue"
SECRET_PART = "topsecretvalue"
KEY_VARIABLES = ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_AI_API_KEY")


def drifted_output(server: FakeFalServer) -> dict[str, Any]:
    """A flux/schnell answer after fal's schema drifted: ``seed`` gone, an image's ``width``
    mistyped, a new field added."""
    return {
        "images": [
            {"url": f"{server.url}/files/a.png", "width": "wide", "height": 512},
            {"url": f"{server.url}/files/b.png", "width": 512, "height": 512},
        ],
        "timings": {"inference": 0.1},
        "has_nsfw_concepts": [False, False],
        "prompt": "a fox",
        "added_later": {"x": 1},
    }


def assert_drift_kept(output: Any) -> None:
    model = falbind.ENDPOINTS[SCHNELL].output_model
    assert isinstance(output, model)
    image_model = type(output.images[1])
    assert image_model.__name__ == "Image" and isinstance(output.images[0], image_model)
    assert output.images[0].url.endswith("/files/a.png") and output.images[0].width == "wide"
    assert output.images[1].width == 512
    assert output.seed is None and output.prompt == "a fox"
    assert output.model_extra == {"added_later": {"x": 1}}
    problems = output.schema_mismatch
    assert problems is not None and len(problems) == 2
    assert any(p.startswith("images.0.width:") and "'wide'" in p for p in problems)
    assert "seed: Field required" in problems


@pytest.fixture
def drift(server: FakeFalServer) -> FakeFalServer:
    server.add_endpoint(SCHNELL, lambda body: drifted_output(server))
    return server


# -- 1. paid results are never lost -------------------------------------------------------------


@pytest.mark.parametrize("how", ["run", "subscribe", "handle"])
def test_drifted_output_is_kept_typed_with_a_warning_sync(
    drift: FakeFalServer, client: FalClient, how: str
) -> None:
    with pytest.warns(OutputSchemaWarning, match="FluxSchnellOutput") as caught:
        if how == "run":
            output = client.run(SCHNELL, prompt="a fox")
        elif how == "subscribe":
            output = client.subscribe(SCHNELL, prompt="a fox")
        else:
            output = client.submit(SCHNELL, prompt="a fox").result()
    assert "request_id=" in str(caught[0].message)
    assert_drift_kept(output)


@pytest.mark.parametrize("how", ["run", "subscribe", "handle"])
async def test_drifted_output_is_kept_typed_with_a_warning_async(
    drift: FakeFalServer, async_client: AsyncFalClient, how: str
) -> None:
    with pytest.warns(OutputSchemaWarning):
        if how == "run":
            output = await async_client.run(SCHNELL, prompt="a fox")
        elif how == "subscribe":
            output = await async_client.subscribe(SCHNELL, prompt="a fox")
        else:
            output = await (await async_client.submit(SCHNELL, prompt="a fox")).result()
    assert_drift_kept(output)


def test_matching_output_has_no_mismatch_and_no_warning(
    server: FakeFalServer, client: FalClient
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        output = client.flux_schnell(prompt="x")
    assert output.schema_mismatch is None


def test_drifted_webhook_payload_is_kept_typed() -> None:
    payload = drifted_output(FakeFalServer())
    body = json.dumps({"request_id": "r1", "status": "OK", "payload": payload}).encode()
    with pytest.warns(OutputSchemaWarning, match="webhook payload"):
        result = falbind.parse_webhook(body, SCHNELL)
    assert_drift_kept(result.output)
    with pytest.raises(FalDecodeError) as info:
        falbind.parse_webhook(body, SCHNELL, strict_outputs=True)
    assert info.value.body == payload and info.value.request_id == "r1"


def test_images_generate_keeps_a_drifted_answer(drift: FakeFalServer, client: FalClient) -> None:
    with pytest.warns(OutputSchemaWarning):
        response = client.images.generate(model=SCHNELL, prompt="a fox", n=2)
    assert [d.url for d in response.data] == [i["url"] for i in drifted_output(drift)["images"]]
    assert response.outputs[0].schema_mismatch


async def test_images_generate_keeps_a_drifted_answer_async(
    drift: FakeFalServer, async_client: AsyncFalClient
) -> None:
    with pytest.warns(OutputSchemaWarning):
        response = await async_client.images.generate(model=SCHNELL, prompt="a fox", n=2)
    assert len(response.data) == 2 and response.outputs[0].schema_mismatch


@pytest.mark.parametrize("how", ["run", "subscribe"])
def test_strict_outputs_raise_with_the_body_and_request_id(drift: FakeFalServer, how: str) -> None:
    with (
        drift.client(retry=FAST_RETRY, strict_outputs=True) as client,
        pytest.raises(FalDecodeError, match="does not match FluxSchnellOutput") as info,
    ):
        getattr(client, how)(SCHNELL, prompt="a fox")
    assert info.value.body == drifted_output(drift)
    assert info.value.request_id and info.value.status_code == 200


async def test_strict_outputs_raise_async(drift: FakeFalServer) -> None:
    async with drift.async_client(retry=FAST_RETRY, strict_outputs=True) as client:
        with pytest.raises(FalDecodeError) as info:
            await client.subscribe(SCHNELL, prompt="a fox")
    assert info.value.body == drifted_output(drift) and info.value.request_id


def test_status_errors_carry_the_body_and_request_id(
    server: FakeFalServer, client: FalClient
) -> None:
    server.inject(Fault.http(500, detail="runner died"), route="run", times=None)
    with pytest.raises(falbind.ServerError) as info:
        client.flux_schnell(prompt="x")
    assert info.value.body == {"detail": "runner died"}
    assert info.value.headers["content-type"] == "application/json"


# -- 2. deadlines hold ----------------------------------------------------------------------------


@pytest.fixture
def slow_queue(server: FakeFalServer) -> FakeFalServer:
    server.queue_time = 60.0  # IN_QUEUE for the whole test
    return server


@pytest.mark.parametrize("stream", ["chatty", "keepalive_forever"])
def test_client_timeout_holds_while_the_stream_keeps_talking(
    slow_queue: FakeFalServer, client: FalClient, stream: str
) -> None:
    if stream == "chatty":
        slow_queue.inject(Fault.chatty_stream(0.5), route="stream", times=None)
    else:  # the fake server's own stream: a keep-alive comment every second, never ending
        slow_queue.inject(Fault.never_complete())
    started = time.monotonic()
    with pytest.raises(FalTimeoutError, match=r"within 1\.5s"):
        client.subscribe(SCHNELL, prompt="x", client_timeout=1.5)
    assert time.monotonic() - started < 1.5 + 0.75
    assert slow_queue.count(route="cancel") == 1


@pytest.mark.parametrize("stream", ["chatty", "keepalive_forever"])
async def test_client_timeout_holds_while_the_stream_keeps_talking_async(
    slow_queue: FakeFalServer, async_client: AsyncFalClient, stream: str
) -> None:
    if stream == "chatty":
        slow_queue.inject(Fault.chatty_stream(0.5), route="stream", times=None)
    else:
        slow_queue.inject(Fault.never_complete())
    started = time.monotonic()
    with pytest.raises(FalTimeoutError, match=r"within 1\.5s"):
        await async_client.subscribe(SCHNELL, prompt="x", client_timeout=1.5)
    assert time.monotonic() - started < 1.5 + 0.75
    assert slow_queue.count(route="cancel") == 1


def test_client_timeout_holds_when_polling(slow_queue: FakeFalServer, client: FalClient) -> None:
    slow_queue.inject(Fault.http(404), route="stream", times=None)  # no stream: poll
    slow_queue.inject(Fault.slow(5.0), route="status", times=None)  # and each poll hangs
    started = time.monotonic()
    with pytest.raises(FalTimeoutError):
        client.subscribe(SCHNELL, prompt="x", client_timeout=1.0)
    assert time.monotonic() - started < 1.0 + 0.75
    assert slow_queue.count(route="cancel") == 1


# -- 3. bad keys fail early, naming where they came from --------------------------------------


BAD_KEYS = {
    "newline": KEY + "\n",
    "crlf": "sk-a\r\n" + SECRET_PART,
    "control": "sk-\x01" + SECRET_PART,
    "non_ascii": "sk-é" + SECRET_PART,
}


@pytest.fixture
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("bad", list(BAD_KEYS))
@pytest.mark.parametrize(
    "source", ["argument", "FAL_KEY", "FAL_KEY_ID/FAL_KEY_SECRET", "FAL_AI_API_KEY"]
)
def test_a_key_that_cannot_be_a_header_is_refused_naming_its_source(
    no_env_key: pytest.MonkeyPatch, bad: str, source: str
) -> None:
    value = BAD_KEYS[bad]
    key: str | None = None
    if source == "argument":
        key, expected = value, "key= argument"
    elif source == "FAL_KEY_ID/FAL_KEY_SECRET":
        no_env_key.setenv("FAL_KEY_ID", "sk-id")
        no_env_key.setenv("FAL_KEY_SECRET", value)
        expected = "FAL_KEY_SECRET"
    else:
        no_env_key.setenv(source, value)
        expected = source
    for make in (FalClient, AsyncFalClient):
        with pytest.raises(InvalidKeyError) as info:
            make(key)
        text = str(info.value) + repr(info.value)
        assert expected in text and SECRET_PART not in text
        assert isinstance(info.value, FalError) and isinstance(info.value, ValueError)


# -- 4. no repr shows the key ---------------------------------------------------------------------


def test_nothing_falbind_builds_shows_the_key(server: FakeFalServer) -> None:
    config = ClientConfig(run_url=server.run_url, queue_url=server.queue_url, auth=Secret(KEY))
    endpoint = resolve_endpoint(SCHNELL)
    urls = QueueURLs.rebuilt(server.queue_url, SCHNELL, "req-1")
    headers = config.headers(extra_headers={"X-Trace": "1"})
    assert headers["authorization"] == f"Key {KEY}"  # it is sent...
    objects: list[object] = [
        config,
        headers,
        config.run_call(endpoint, b"{}", config.headers(), None),
        config.submit_call(endpoint, b"{}", config.headers(), None),
        config.status_call(urls, with_logs=True),
        config.stream_call(urls, with_logs=False, read_timeout=1.0),
        config.result_call(urls),
        config.cancel_call(urls),
        Secret(KEY),
    ]
    with FalClient(KEY, **_urls(server)) as client:
        objects += [client, client.queue, client.get_handle(SCHNELL, "req-1"), client.images]
        objects += [client._config, client.flux_schnell]
    async_client = AsyncFalClient(KEY, **_urls(server))
    objects += [async_client, async_client.get_handle(SCHNELL, "req-1")]
    for obj in objects:  # ...but never shown
        assert SECRET_PART not in repr(obj) and SECRET_PART not in str(obj), type(obj)


def _urls(server: FakeFalServer) -> dict[str, str]:
    return {"run_url": server.run_url, "queue_url": server.queue_url}


def _rendered(error: BaseException) -> str:
    """The traceback as an error tracker renders it: every frame's locals, causes included."""
    exception = traceback.TracebackException.from_exception(error, capture_locals=True)
    return "".join(exception.format())


@pytest.mark.parametrize(
    "fault", [Fault.http(500), Fault.reset(), Fault.close(), Fault.raw(b"SSH-2.0-x\r\n")]
)
def test_tracebacks_with_locals_never_hold_the_key(fault: Fault) -> None:
    with FakeFalServer(key=KEY) as server:
        server.inject(fault, route="run", times=None)
        with server.client(retry=FAST_RETRY) as client, pytest.raises(FalError) as info:
            client.flux_schnell(prompt="x")
        assert SECRET_PART not in _rendered(info.value)
        with pytest.raises(InvalidArgumentsError) as bad_option:
            client.flux_schnell(prompt="x", start_timeout=0.5)
        assert SECRET_PART not in _rendered(bad_option.value)


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
@pytest.mark.parametrize("fault", [Fault.http(500), Fault.reset(), Fault.close()])
async def test_tracebacks_with_locals_never_hold_the_key_async(
    fault: Fault, transport: str
) -> None:
    with FakeFalServer(key=KEY) as server:
        server.inject(fault, route="run", times=None)
        async with httpx.AsyncClient() as http:
            options: dict[str, Any] = {"retry": FAST_RETRY}
            if transport == "httpx":
                options["http_client"] = http
            async with server.async_client(**options) as client:
                with pytest.raises(FalError) as info:
                    await client.flux_schnell(prompt="x")
        assert SECRET_PART not in _rendered(info.value)


# -- 5. no key at all -----------------------------------------------------------------------------


def test_no_key_fails_before_sending_naming_every_variable(no_env_key: pytest.MonkeyPatch) -> None:
    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(401))
    with httpx.Client(transport=transport) as http, FalClient(http_client=http) as client:
        for call in (
            lambda: client.flux_schnell(prompt="x"),
            lambda: client.submit(SCHNELL, prompt="x"),
            lambda: client.get_handle(SCHNELL, "req-1").status(),
            lambda: client.upload(b"data"),
        ):
            with pytest.raises(MissingKeyError) as info:
                call()
            for name in KEY_VARIABLES:
                assert name in str(info.value)
    assert sent == []


async def test_no_key_fails_before_sending_async(no_env_key: pytest.MonkeyPatch) -> None:
    async with AsyncFalClient() as client:
        with pytest.raises(MissingKeyError, match="FAL_KEY_ID and FAL_KEY_SECRET"):
            await client.flux_schnell(prompt="x")


def test_loopback_and_untyped_local_calls_need_no_key(
    no_env_key: pytest.MonkeyPatch, server: FakeFalServer
) -> None:
    server.add_endpoint("me/local-app", lambda body: {"echo": body})
    with FalClient(run_url=server.run_url, queue_url=server.queue_url) as client:
        assert client.flux_schnell(prompt="x").prompt == "x"
        assert client.run("me/local-app", {"a": 1}, untyped=True) == {"echo": {"a": 1}}
        assert client.subscribe(SCHNELL, prompt="x").prompt == "x"
    assert "authorization" not in server.requests[0].headers


# -- 6. queue URLs only on trusted origins --------------------------------------------------------


class _SubmitAnswer(BaseHTTPRequestHandler):
    """Answers every POST with a submit answer whose URLs point at ``self.server.target``."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        base = f"{self.server.target}/fal-ai/flux/requests/req-1"  # type: ignore[attr-defined]
        body = json.dumps(
            {
                "request_id": "req-1",
                "status_url": f"{base}/status",
                "response_url": base,
                "cancel_url": f"{base}/cancel",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def foreign_submit(server: FakeFalServer) -> Iterator[str]:
    """A queue on 127.0.0.1 (another port) whose submit answer sends clients to ``server``."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _SubmitAnswer)
    httpd.target = server.queue_url  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_queue_urls_on_another_origin_are_not_followed(
    server: FakeFalServer, foreign_submit: str
) -> None:
    with (
        FalClient(KEY, queue_url=foreign_submit, retry=FAST_RETRY) as client,
        pytest.raises(UntrustedURLError) as info,
    ):
        client.subscribe(SCHNELL, prompt="x")
    assert info.value.url == f"{server.queue_url}/fal-ai/flux/requests/req-1/status"
    assert info.value.request_id is None and info.value.body["request_id"] == "req-1"
    assert server.count() == 0  # the key never went there


async def test_queue_urls_on_another_origin_are_not_followed_async(
    server: FakeFalServer, foreign_submit: str
) -> None:
    async with AsyncFalClient(KEY, queue_url=foreign_submit, retry=FAST_RETRY) as client:
        with pytest.raises(UntrustedURLError):
            await client.submit(SCHNELL, prompt="x")
    assert server.count() == 0


def test_trusted_origins_are_followed(server: FakeFalServer, foreign_submit: str) -> None:
    options = {"queue_url": foreign_submit, "retry": FAST_RETRY, "trusted_origins": [server.url]}
    with FalClient(KEY, **options) as client:  # type: ignore[arg-type]
        handle = client.submit(SCHNELL, prompt="x")
        with pytest.raises(falbind.NotFoundError):  # the fake server does not know req-1
            handle.status()
    assert server.requests[0].route == "status"
    assert server.requests[0].headers["authorization"] == f"Key {KEY}"


# -- 7. async transport failures are FalErrors that say what happened ----------------------------

TRANSPORT_FAULTS = {
    "not_http": (Fault.raw(b"SSH-2.0-OpenSSH_9.6\r\n"), "the answer is not HTTP|closed the"),
    "reset": (Fault.reset(), "connection reset by peer on POST"),
    "disconnect": (Fault.close(), "closed the connection without a complete answer on POST"),
    "payload": (
        Fault.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}"),
        "cut short|broke the HTTP protocol",
    ),
}


@pytest.mark.parametrize("fault", list(TRANSPORT_FAULTS))
async def test_async_transport_failures_are_fal_errors(
    server: FakeFalServer, async_client: AsyncFalClient, fault: str
) -> None:
    injected, message = TRANSPORT_FAULTS[fault]
    server.inject(injected, route="run")
    with pytest.raises(FalConnectionError, match=message) as info:
        await async_client.flux_schnell(prompt="x")
    assert f"{server.run_url}/{SCHNELL}" in str(info.value)
    assert "ConnectTimeout" not in str(info.value)
    assert server.count(route="run") == 1  # a POST that reached fal is never resent


@pytest.mark.parametrize("fault", list(TRANSPORT_FAULTS))
def test_sync_transport_failures_say_what_happened(
    server: FakeFalServer, client: FalClient, fault: str
) -> None:
    injected, message = TRANSPORT_FAULTS[fault]
    server.inject(injected, route="run")
    with pytest.raises(FalConnectionError, match=message):
        client.flux_schnell(prompt="x")
    assert server.count(route="run") == 1


@pytest.mark.parametrize("fault", ["reset", "disconnect", "payload"])
async def test_async_safe_get_is_retried_like_the_sync_client(
    server: FakeFalServer, async_client: AsyncFalClient, client: FalClient, fault: str
) -> None:
    injected, _ = TRANSPORT_FAULTS[fault]
    server.inject(injected, route="result")
    await async_client.subscribe(SCHNELL, prompt="x")
    async_results = server.count(route="result")
    server.clear_requests()
    server.inject(injected, route="result")
    client.subscribe(SCHNELL, prompt="x")
    assert async_results == server.count(route="result") == 2


# -- 8. every FalError pickles ------------------------------------------------------------------


def _all_subclasses(cls: type) -> list[type]:
    found: list[type] = []
    for sub in cls.__subclasses__():
        found += [sub, *_all_subclasses(sub)]
    return sorted(set(found), key=lambda c: c.__name__)


def _sample(cls: type[FalError]) -> FalError:
    if issubclass(cls, InvalidArgumentsError):
        try:
            resolve_endpoint(SCHNELL).build_body({"prompt": "x", "num_image": 2}, {}, None)
        except InvalidArgumentsError as exc:
            base = exc
        if cls is InvalidArgumentsError:
            return base
        return cls.because("arguments", "parameters given both ways", 3)
    if issubclass(cls, falbind.UnknownEndpointError):
        return cls("fal-ai/flux/shnell", ["fal-ai/flux/schnell"])
    options: dict[str, Any] = {
        "status_code": 422,
        "request_id": "req-1",
        "error_type": "runner_error",
        "retryable": False,
        "detail": [{"loc": ["body", "prompt"], "msg": "too long", "type": "value_error"}],
        "body": {"detail": "x", "payload": [1, 2]},
        "headers": {"x-fal-request-id": "req-1"},
        "error": "model failed",
        "logs": [{"message": "hi"}],
        "expected": ("https://queue.fal.run:443",) if cls is UntrustedURLError else "image/",
        "actual": "text/html",
        "url": "https://elsewhere.example/x",
        "source": "FAL_KEY",
        "check": "signature",
    }
    import inspect

    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_POSITIONAL for p in parameters.values()):
        return cls("something failed")
    kwargs = {name: options[name] for name in parameters if name in options}
    return cls("something failed", **kwargs)


def test_every_fal_error_survives_pickle() -> None:
    # Every module that defines a FalError subclass, so the walk below finds them all.
    import falbind.client.webhooks
    import falbind.images.sizing

    classes = _all_subclasses(FalError)
    assert len(classes) >= 20
    for cls in classes:
        error = _sample(cls)
        assert type(error) is cls
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is cls, cls
        assert str(copy) == str(error), cls
        assert vars(copy) == vars(error), cls
        if isinstance(error, falbind.UnprocessableEntityError):
            assert copy.field_errors == [FieldError(("body", "prompt"), "too long", "value_error")]
        if isinstance(error, InvalidArgumentsError):
            assert copy.errors() == error.errors() and copy.endpoint_id == error.endpoint_id


def test_errors_raised_over_the_wire_survive_pickle(
    server: FakeFalServer, client: FalClient
) -> None:
    server.inject(Fault.json(422, {"detail": [{"loc": ["body", "x"], "msg": "no"}]}), route="run")
    with pytest.raises(falbind.UnprocessableEntityError) as info:
        client.flux_schnell(prompt="x")
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.status_code, copy.request_id, copy.body, copy.headers) == (
        422,
        None,
        info.value.body,
        info.value.headers,
    )
    assert copy.field_errors[0].field == "x"


# -- 9. no retry on what cannot succeed -----------------------------------------------------------


def test_a_malformed_header_is_refused_before_sending(
    server: FakeFalServer, client: FalClient
) -> None:
    for bad in ({"X-Trace": "a\nb"}, {"X-Trace": "é"}, {"X Bad:": "1"}):
        with pytest.raises(InvalidArgumentsError, match="extra_headers"):
            client.flux_schnell(prompt="x", extra_headers=bad)
    assert server.count() == 0


def test_a_local_protocol_error_is_not_retried(
    server: FakeFalServer, client: FalClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="falbind")
    call = client._config.download_call(f"{server.url}/files/x.png", None)
    call.headers["X-Bad"] = "a\x00b"  # past our own checks: httpx refuses it on every try
    with pytest.raises(FalConnectionError, match="could not be sent as HTTP"):
        client._send(call)
    assert not [r for r in caplog.records if r.getMessage().startswith("retrying")]
    policy = RetryPolicy(max_retries=3)
    for error in (httpx.LocalProtocolError("bad header"), httpx.UnsupportedProtocol("ftp")):
        assert retry_delay(policy, idempotent=True, attempt=0, elapsed=0, error=error) is None


# -- 10. except FalError catches everything a call raises -----------------------------------------


def test_invalid_arguments_are_fal_errors_and_pydantic_errors(client: FalClient) -> None:
    with pytest.raises(FalError) as info:
        client.run(SCHNELL, prompt="x", num_image=2)
    error = info.value
    assert isinstance(error, InvalidArgumentsError)
    assert isinstance(error, ValidationError) and isinstance(error, ValueError)
    assert error.errors()[0]["ctx"]["suggestions"] == ["num_images"]
    assert "did you mean 'num_images'" in str(error) and error.endpoint_id == SCHNELL


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.run("fal-ai/flux/shnell", prompt="x"),
        lambda c: c.flux_schnell(prompt="x", priority="urgent"),
        lambda c: c.submit(SCHNELL, prompt="x", priority="urgent"),
        lambda c: c.subscribe(SCHNELL, prompt="x", client_timeout=-1),
        lambda c: c.flux_schnell(prompt="x", object_lifecycle_seconds=1.5),
        lambda c: c.run(SCHNELL, {"prompt": "x"}, prompt="y"),
        lambda c: c.images.generate(model=SCHNELL, prompt="x", size="banana", strict_size=True),
        lambda c: c.images.generate(model=SCHNELL, prompt="x", n=0),
        lambda c: c.images.generate(model="fal-ai/nope", prompt="x"),
        lambda c: c.download("data:image/png;base64,%%%"),
        lambda c: c.download(42),
    ],
)
def test_everything_a_call_raises_is_a_fal_error(
    server: FakeFalServer, client: FalClient, call: Any
) -> None:
    with pytest.raises(FalError):
        call(client)
    assert server.count(route="run") == server.count(route="submit") == 0


async def test_async_calls_raise_fal_errors_too(async_client: AsyncFalClient) -> None:
    with pytest.raises(FalError):
        await async_client.run(SCHNELL, prompt="x", num_image=2)
    with pytest.raises(FalError):
        await async_client.images.generate(model="fal-ai/nope", prompt="x")
    await asyncio.sleep(0)


def test_unwrapped_transport_errors_are_classified() -> None:
    import aiohttp

    from falbind.client.retry import as_transport_error, never_reached_server

    cases: list[tuple[BaseException, type[httpx.TransportError], bool]] = [
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError, False),
        (aiohttp.ClientPayloadError("cut"), httpx.ReadError, False),
        (aiohttp.ClientOSError(104, "reset"), httpx.ReadError, False),
        (ConnectionRefusedError(111, "refused"), httpx.ConnectError, True),
        (ConnectionResetError(104, "reset"), httpx.ReadError, False),
        (TimeoutError(), httpx.ReadTimeout, False),
    ]
    for raw, kind, unsent in cases:
        mapped = as_transport_error(raw)
        assert isinstance(mapped, kind), raw
        assert mapped.__cause__ is raw and never_reached_server(mapped) is unsent
    assert as_transport_error(KeyError("x")) is None
