"""Files: data URIs for inputs, downloads of outputs (checked status and type), sync mode."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from falbind.client.clients import FalClient
from falbind.client.errors import NotFoundError, UnexpectedContentTypeError
from falbind.client.files import decode_data_uri, file_url, sniff_content_type, to_data_uri
from falbind.testing.server import FakeFalServer, Fault

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def server() -> Iterator[FakeFalServer]:
    with FakeFalServer(key="file-test-key") as fake:
        yield fake


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_to_data_uri_from_bytes_and_paths(tmp_path: Path) -> None:
    assert to_data_uri(b"\x89PNG\r\n\x1a\nrest") == "data:image/png;base64," + base64.b64encode(
        b"\x89PNG\r\n\x1a\nrest"
    ).decode("ascii")
    assert to_data_uri(b"abc", "text/plain") == "data:text/plain;base64,YWJj"
    path = tmp_path / "clip.mp3"
    path.write_bytes(b"ID3")
    assert to_data_uri(path).startswith("data:audio/mpeg;base64,")
    assert to_data_uri(str(path)) == to_data_uri(path)


def test_decode_data_uri() -> None:
    assert decode_data_uri("data:image/png;base64,YWJj") == (b"abc", "image/png")
    assert decode_data_uri("data:,a%20b") == (b"a b", "text/plain")
    with pytest.raises(ValueError):
        decode_data_uri("https://example.com/x.png")
    with pytest.raises(ValueError, match="base64"):
        decode_data_uri("data:image/png;base64,***")


def test_sniff_and_file_url() -> None:
    assert sniff_content_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff_content_type(b"RIFF\0\0\0\0WEBPVP8") == "image/webp"
    assert sniff_content_type(b"hello") == "application/octet-stream"
    assert file_url({"url": "https://a/b"}) == "https://a/b"
    with pytest.raises(TypeError):
        file_url(42)


def test_data_uri_input_is_accepted(server: FakeFalServer, client: FalClient) -> None:
    uri = to_data_uri(b"\x89PNG\r\n\x1a\n", "image/png")
    client.run("fal-ai/bagel/understand", image_url=uri, prompt="x")
    assert server.requests[0].json()["image_url"] == uri


def test_download_checks_type_and_saves(
    server: FakeFalServer, client: FalClient, tmp_path: Path
) -> None:
    output = client.flux_schnell(prompt="x", image_size="portrait_4_3")
    image = output.images[0]
    data = client.download(image, expected_type="image/")
    assert _png_size(data) == (768, 1024)
    saved = client.download(image.url, path=tmp_path / "out.png")
    assert saved == tmp_path / "out.png" and saved.read_bytes() == data
    assert client.download({"url": image.url}) == data
    with pytest.raises(UnexpectedContentTypeError) as caught:
        client.download(image, expected_type="video/")
    assert caught.value.actual == "image/png"
    downloads = [r for r in server.requests if r.route == "file"]
    assert downloads and all("authorization" not in r.headers for r in downloads)


def test_download_fails_on_http_errors_and_retries_transient_ones(
    server: FakeFalServer, client: FalClient
) -> None:
    with pytest.raises(NotFoundError):
        client.download(f"{server.url}/files/missing.png")
    server.inject(Fault.http(503), route="file", times=2)
    assert client.download(f"{server.url}/files/file.bin") == b"falbind fake file\n"
    assert server.count(route="file") == 4


def test_sync_mode_outputs_are_data_uris_decoded_without_http(
    server: FakeFalServer, client: FalClient, tmp_path: Path
) -> None:
    output = client.flux_schnell(prompt="x", sync_mode=True, image_size="square")
    assert output.images[0].url.startswith("data:image/png;base64,")
    before = server.count()
    data = client.download(output.images[0], expected_type="image/png")
    assert _png_size(data) == (512, 512)
    assert client.download(output.images[0], path=tmp_path / "s.png").read_bytes() == data
    assert server.count() == before
