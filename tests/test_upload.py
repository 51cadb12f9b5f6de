"""Uploads to fal storage, sync and async, over real sockets against the fake fal server:
initiate + PUT, the uploaded URL as an endpoint input, retries and errors."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import falbind
from falbind.client.clients import AsyncFalClient, FalClient
from falbind.client.errors import (
    AuthenticationError,
    FalDecodeError,
    FalError,
    RateLimitError,
    ServerError,
)
from falbind.client.files import Upload
from falbind.client.retry import RetryPolicy
from falbind.testing.fake_outputs import png_bytes
from falbind.testing.server import FakeFalServer, Fault, RecordedRequest

KEY = "sk-upload-secret-42"
IMAGE_TO_IMAGE = "fal-ai/fast-fooocus-sdxl/image-to-image"
PNG = png_bytes(3, 2)


@pytest.fixture
def server() -> Iterator[FakeFalServer]:
    """This module's fake server requires a key (the shared client fixtures follow it)."""
    with FakeFalServer(key=KEY) as fake:
        yield fake


@pytest.fixture
def png_file(tmp_path: Path) -> Path:
    path = tmp_path / "a photo.png"
    path.write_bytes(PNG)
    return path


def one(server: FakeFalServer, route: str) -> RecordedRequest:
    (request,) = [r for r in server.requests if r.route == route]
    return request


def assert_uploaded(server: FakeFalServer, content_type: str, file_name: str, data: bytes) -> None:
    """The client spoke fal's storage protocol: an authenticated initiate, a keyless PUT."""
    initiate, put = one(server, "upload_initiate"), one(server, "upload_put")
    assert (initiate.method, initiate.path) == ("POST", "/storage/upload/initiate")
    assert initiate.query == {"storage_type": "fal-cdn-v3"}
    assert initiate.headers["authorization"] == f"Key {KEY}"
    assert initiate.headers["content-type"] == "application/json"
    assert initiate.json() == {"content_type": content_type, "file_name": file_name}
    assert put.method == "PUT"
    assert "authorization" not in put.headers
    assert (put.headers["content-type"], put.body) == (content_type, data)


# -- the protocol, sync and async --------------------------------------------------------------


def test_upload_bytes_then_download(server: FakeFalServer, client: FalClient) -> None:
    url = client.upload(b"raw \x00 bytes")
    assert url.startswith(f"{server.url}/files/uploads/") and url.endswith("/upload.bin")
    assert_uploaded(server, "application/octet-stream", "upload.bin", b"raw \x00 bytes")
    response = httpx.get(url, timeout=10)
    assert (response.status_code, response.content) == (200, b"raw \x00 bytes")
    assert response.headers["content-type"] == "application/octet-stream"


def test_upload_a_path_guesses_type_and_name(
    server: FakeFalServer, client: FalClient, png_file: Path
) -> None:
    url = client.upload(png_file)
    assert_uploaded(server, "image/png", "a photo.png", PNG)
    assert client.download(url, expected_type="image/png") == PNG
    server.clear_requests()
    url = client.upload(str(png_file), content_type="image/x-custom", file_name="b.img")
    assert_uploaded(server, "image/x-custom", "b.img", PNG)
    response = httpx.get(url, timeout=10)
    assert (response.content, response.headers["content-type"]) == (PNG, "image/x-custom")


async def test_async_upload_bytes_and_path(
    server: FakeFalServer, async_client: AsyncFalClient, png_file: Path
) -> None:
    url = await async_client.upload(b"async bytes", content_type="text/plain")
    assert_uploaded(server, "text/plain", "upload.txt", b"async bytes")
    assert await async_client.download(url, expected_type="text/plain") == b"async bytes"
    server.clear_requests()
    url = await async_client.upload(png_file)
    assert_uploaded(server, "image/png", "a photo.png", PNG)
    assert await async_client.download(url, expected_type="image/png") == PNG


def test_the_uploaded_url_is_an_endpoint_input(server: FakeFalServer, client: FalClient) -> None:
    assert "image_url" in falbind.ENDPOINTS[IMAGE_TO_IMAGE].input_model.model_fields
    url = client.upload(PNG, content_type="image/png", file_name="in.png")
    client.run(IMAGE_TO_IMAGE, image_url=url, prompt="make it blue")
    assert one(server, "run").json() == {"image_url": url, "prompt": "make it blue"}
    assert one(server, "run").path == f"/run/{IMAGE_TO_IMAGE}"


async def test_the_uploaded_url_is_an_endpoint_input_async(
    server: FakeFalServer, async_client: AsyncFalClient
) -> None:
    url = await async_client.upload(PNG, content_type="image/png", file_name="in.png")
    await async_client.run(IMAGE_TO_IMAGE, {"image_url": url, "prompt": "p"})
    assert one(server, "run").json() == {"image_url": url, "prompt": "p"}


def test_upload_refuses_what_is_not_bytes_or_a_path(
    server: FakeFalServer, client: FalClient
) -> None:
    with pytest.raises(TypeError, match="bytes or a path"):
        client.upload(bytearray(b"x"))  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        client.upload("/nonexistent/falbind-upload.png")
    assert server.count() == 0
    assert "<3 bytes>" in repr(Upload.of(b"abc"))


# -- retries: the initiate is a POST, the PUT of the same bytes is idempotent --------------------


def test_429_on_initiate_is_retried(server: FakeFalServer, client: FalClient) -> None:
    server.inject(Fault.rate_limit(retry_after=0), route="upload_initiate")
    url = client.upload(b"x")
    assert server.count(route="upload_initiate") == 2
    assert server.count(route="upload_put") == 1
    assert client.download(url) == b"x"


def test_500_on_initiate_is_not_retried(server: FakeFalServer, client: FalClient) -> None:
    server.inject(Fault.http(500), route="upload_initiate")
    with pytest.raises(ServerError):
        client.upload(b"x")
    assert (server.count(route="upload_initiate"), server.count(route="upload_put")) == (1, 0)


def test_reset_on_initiate_is_not_retried(server: FakeFalServer, client: FalClient) -> None:
    server.inject(Fault.reset(), route="upload_initiate")
    with pytest.raises(FalError):
        client.upload(b"x")
    assert (server.count(route="upload_initiate"), server.count(route="upload_put")) == (1, 0)


def test_500_and_reset_on_put_are_retried(server: FakeFalServer, client: FalClient) -> None:
    server.inject(Fault.http(500), route="upload_put")
    server.inject(Fault.reset(), route="upload_put")
    url = client.upload(b"again")
    assert server.count(route="upload_initiate") == 1
    assert server.count(route="upload_put") == 3
    assert client.download(url) == b"again"


async def test_async_retries_follow_the_same_rule(
    server: FakeFalServer, async_client: AsyncFalClient
) -> None:
    server.inject(Fault.rate_limit(retry_after=0), route="upload_initiate")
    server.inject(Fault.http(503), route="upload_put")
    url = await async_client.upload(b"y")
    assert (server.count(route="upload_initiate"), server.count(route="upload_put")) == (2, 2)
    assert await async_client.download(url) == b"y"
    server.inject(Fault.http(500), route="upload_initiate")
    with pytest.raises(ServerError):
        await async_client.upload(b"z")
    assert server.count(route="upload_initiate") == 3


def test_rate_limits_past_the_budget_raise(server: FakeFalServer) -> None:
    server.inject(Fault.rate_limit(retry_after=0), route="upload_initiate", times=None)
    policy = RetryPolicy(max_retries=2, jitter=False)
    with server.client(retry=policy) as client, pytest.raises(RateLimitError):
        client.upload(b"x")
    assert server.count(route="upload_initiate") == 3


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault.malformed_json(), Fault.http(200, detail="no urls here")],
    ids=["not-json", "no-urls"],
)
def test_a_malformed_initiate_answer_is_a_decode_error(
    server: FakeFalServer, client: FalClient, fault: Fault
) -> None:
    server.inject(fault, route="upload_initiate")
    with pytest.raises(FalDecodeError):
        client.upload(b"x")
    assert server.count(route="upload_put") == 0


async def test_a_malformed_initiate_answer_is_a_decode_error_async(
    server: FakeFalServer, async_client: AsyncFalClient
) -> None:
    server.inject(Fault.http(200, detail="no urls here"), route="upload_initiate")
    with pytest.raises(FalDecodeError, match="upload_url"):
        await async_client.upload(b"x")


def test_a_wrong_key_is_an_authentication_error(server: FakeFalServer) -> None:
    with server.client(key="wrong") as client, pytest.raises(AuthenticationError):
        client.upload(b"x")
    assert server.count(route="upload_put") == 0


def test_the_key_never_appears_in_errors_or_logs(
    server: FakeFalServer, client: FalClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = [repr(client)]
    cases: list[tuple[Fault, Any]] = [
        (Fault.http(500), "upload_initiate"),
        (Fault.reset(), "upload_initiate"),
        (Fault.malformed_json(), "upload_initiate"),
        (Fault.http(200), "upload_initiate"),
        (Fault.rate_limit(retry_after=0), "upload_initiate"),
        (Fault.http(500), "upload_put"),
        (Fault.reset(), "upload_put"),
    ]
    for fault, route in cases:
        server.inject(fault, route=route, times=None)
        with pytest.raises(FalError) as caught:
            client.upload(b"secret-free bytes")
        texts += [str(caught.value), repr(caught.value), repr(caught.value.__dict__)]
        texts += [repr(caught.value.__cause__), str(caught.value.__context__)]
        server.clear_faults()
    with server.client(key=f"wrong-{KEY}") as other, pytest.raises(FalError) as caught:
        other.upload(b"x")
    texts += [str(caught.value), repr(caught.value), repr(caught.value.__dict__)]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(record.args) for record in caplog.records]
    assert any("retrying PUT" in text for text in texts)  # the logs were captured
    assert len(texts) > 30
    assert not [text for text in texts if KEY in text]


# -- the fake server's storage routes, with bare httpx ------------------------------------------


def test_fake_storage_routes(server: FakeFalServer) -> None:
    auth = {"Authorization": f"Key {KEY}"}
    body = {"content_type": "text/plain", "file_name": "n.txt"}
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/storage/upload/initiate", json=body).status_code == 401
        assert http.post("/storage/upload/initiate", json={}, headers=auth).status_code == 422
        assert http.put("/storage/upload/unknown", content=b"x").status_code == 404
        target = http.post("/storage/upload/initiate", json=body, headers=auth).json()
        assert http.get(target["file_url"]).status_code == 404  # not PUT yet
        put = http.put(target["upload_url"], content=b"hi", headers={"Content-Type": "text/x"})
        assert put.status_code == 200
        got = http.get(target["file_url"])
        assert (got.status_code, got.content, got.headers["content-type"]) == (200, b"hi", "text/x")
        assert http.get(target["file_url"].replace("n.txt", "m.txt")).status_code == 404
    routes = [r.route for r in server.requests]
    assert routes.count("upload_initiate") == 3 and routes.count("upload_put") == 2
    assert routes.count("file") == 3
