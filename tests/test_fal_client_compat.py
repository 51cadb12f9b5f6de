"""fal-client's call shapes (issue 10, "Coming from fal-client"), over the loopback fake server."""

from __future__ import annotations

import base64
import builtins
import io
import json
from pathlib import Path
from typing import Any

import pytest

import falbind
from falbind import AsyncFalClient, FalClient, InvalidArgumentsError
from falbind.testing import FakeFalServer

SCHNELL = "fal-ai/flux/schnell"


def test_run_accepts_arguments_as_a_keyword(client: FalClient, server: FakeFalServer) -> None:
    output = client.run(SCHNELL, arguments={"prompt": "a fox", "seed": 7})
    assert output.seed == 7
    assert server.requests[-1].json() == {"prompt": "a fox", "seed": 7}


def test_arguments_twice_is_refused(client: FalClient) -> None:
    with pytest.raises(InvalidArgumentsError, match="both positionally and as arguments="):
        client.run(SCHNELL, {"prompt": "a"}, arguments={"prompt": "b"})


def test_path_is_appended_to_the_endpoint_id(client: FalClient, server: FakeFalServer) -> None:
    client.run("fal-ai/flux", arguments={"prompt": "a fox"}, path="/schnell")
    assert server.requests[-1].path == f"/run/{SCHNELL}"
    handle = client.submit("fal-ai/flux", {"prompt": "a fox"}, path="schnell")
    assert handle.endpoint_id == SCHNELL


def test_submit_takes_webhook_url_and_handle_get_is_result(
    client: FalClient, server: FakeFalServer
) -> None:
    handle = client.submit(
        SCHNELL, arguments={"prompt": "a fox"}, webhook_url="http://127.0.0.1:9/h"
    )
    submitted = server.requests[-1]
    assert submitted.route == "submit"
    assert submitted.query == {"fal_webhook": "http://127.0.0.1:9/h"}
    assert handle.get().images


def test_subscribe_calls_on_enqueue_with_the_request_id(client: FalClient) -> None:
    seen: list[str] = []
    output = client.subscribe(SCHNELL, {"prompt": "a fox"}, on_enqueue=seen.append)
    assert output.images
    assert len(seen) == 1 and seen[0]


async def test_async_on_enqueue_and_get(async_client: AsyncFalClient) -> None:
    seen: list[str] = []

    async def enqueued(request_id: str) -> None:
        seen.append(request_id)

    output = await async_client.subscribe(SCHNELL, prompt="a fox", on_enqueue=enqueued)
    assert output.images and len(seen) == 1
    handle = await async_client.submit(SCHNELL, arguments={"prompt": "a fox"})
    assert (await handle.get()).images


@pytest.mark.parametrize(
    ("call", "option", "hint"),
    [
        (lambda c: c.flux_schnell(prompt="x", headers={"X-A": "1"}), "headers", "extra_headers="),
        (lambda c: c.run(SCHNELL, {"prompt": "x", "headers": {}}), "headers", "extra_headers="),
        (lambda c: c.run(SCHNELL, prompt="x", webhook_url="http://h"), "webhook_url", "submit"),
        (lambda c: c.flux_schnell(prompt="x", on_enqueue=print), "on_enqueue", "subscribe"),
        (lambda c: c.submit(SCHNELL, prompt="x", on_enqueue=print), "on_enqueue", "subscribe"),
        (lambda c: c.submit(SCHNELL, prompt="x", timeout=3), "timeout", "client_timeout="),
        (lambda c: c.run(SCHNELL, prompt="x", priority="low"), "priority", "submit"),
    ],
)
def test_a_misplaced_call_option_names_the_option(
    client: FalClient, server: FakeFalServer, call: Any, option: str, hint: str
) -> None:
    with pytest.raises(InvalidArgumentsError) as caught:
        call(client)
    message = str(caught.value)
    assert f"`{option}` is not a parameter of {SCHNELL}" in message
    assert hint in message
    assert "unknown parameter" not in message
    assert caught.value.errors()[0]["loc"] == (option,)
    assert server.count() == 0  # refused before sending


def test_a_real_unknown_parameter_is_still_reported_as_one(client: FalClient) -> None:
    with pytest.raises(InvalidArgumentsError, match="unknown parameter 'promt'"):
        client.run(SCHNELL, promt="x")


def test_upload_file_and_download(client: FalClient, tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_bytes(b"hello fal")
    url = client.upload_file(path)
    assert url.endswith("/note.txt")
    assert client.download(url) == b"hello fal"


def _image() -> Any:
    from PIL import Image

    return Image.new("RGB", (4, 3), (255, 0, 0))


def test_upload_image_sends_the_encoded_image(client: FalClient) -> None:
    url = client.upload_image(_image(), format="png")
    data = client.download(url, expected_type="image/png")
    from PIL import Image

    assert Image.open(io.BytesIO(data)).size == (4, 3)


async def test_async_upload_file_and_image(async_client: AsyncFalClient, tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text("{}")
    assert (await async_client.download(await async_client.upload_file(path))) == b"{}"
    url = await async_client.upload_image(_image())
    assert (await async_client.download(url, expected_type="image/jpeg"))[:2] == b"\xff\xd8"


def test_encode_file_and_encode_image_are_data_uris(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nrest")
    assert falbind.encode_file(path) == (
        "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    )
    uri = falbind.encode_image(_image())
    data, content_type = falbind.decode_data_uri(uri)
    assert content_type == "image/jpeg" and data[:2] == b"\xff\xd8"


def test_encode_image_without_pillow_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pil(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    with pytest.raises(ImportError, match="pip install pillow"):
        falbind.encode_image(object())


def test_encode_image_refuses_what_is_not_an_image() -> None:
    with pytest.raises(InvalidArgumentsError, match=r"PIL\.Image\.Image"):
        falbind.encode_image(b"bytes")


def test_arguments_keyword_reaches_the_wire_untouched(
    client: FalClient, server: FakeFalServer
) -> None:
    server.add_endpoint("fal-ai/anything", lambda body: {"echo": body})
    client.run("fal-ai/anything", arguments={"x": 1}, untyped=True, extra_body={"y": 2})
    assert json.loads(server.requests[-1].body) == {"x": 1, "y": 2}
