"""Bodies read under hard caps and headers refused when too large (falbind/serve/body.py).

A small Starlette app of these tests calls read_json/read_form the way the gateway's routes
do, under uvicorn on a real 127.0.0.1 socket (in a thread, or as a child process where its
memory is measured); clients are raw sockets (to stream a body and stop when the answer
comes), httpx, and the real OpenAI SDK.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from falbind.serve.body import HeaderLimits, read_form, read_json, sniff_image
from falbind.serve.errors import GatewayError

from serve_support import ThreadedApp, free_port, png_bytes

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

MiB = 1024 * 1024
JSON_CAP = 1 * MiB
FORM_CAP = 4 * MiB
FILE_CAP = 1 * MiB
CONSUMED: dict[str, int] = {}
"""Body bytes each path's handler received from the server (the thread-run app only)."""
GENERATIONS: list[int] = []


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88"


# -- the app under test ----------------------------------------------------------------------


def _answer(error: GatewayError) -> Response:
    return error.response()


async def json_route(request: Request) -> Response:
    try:
        value = await read_json(request, max_bytes=JSON_CAP)
    except GatewayError as error:
        return _answer(error)
    return JSONResponse({"type": type(value).__name__})


async def form_route(request: Request) -> Response:
    try:
        form = await read_form(request, max_bytes=FORM_CAP, max_file_bytes=FILE_CAP, max_files=3)
    except GatewayError as error:
        return _answer(error)
    return JSONResponse(
        {
            "fields": form.fields,
            "mapping": dict(form),
            "images": [[len(data), kind, name] for data, kind, name in form.images],
            "mask": None if form.mask is None else [len(form.mask[0]), form.mask[1]],
            "first": form.images[0][0].hex() if form.images else None,
        }
    )


async def generations_route(request: Request) -> Response:
    GENERATIONS.append(1)
    return await json_route(request)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "healthy"})


class CountBody:
    """Counts the body bytes the app takes from the server, per path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        CONSUMED[path] = 0

        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                CONSUMED[path] += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


def limits_app() -> ASGIApp:
    """The app (a factory, so a child process can serve it too)."""
    app = Starlette(
        routes=[
            Route("/json", json_route, methods=["POST"]),
            Route("/form", form_route, methods=["POST"]),
            Route("/v1/images/generations", generations_route, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
    return HeaderLimits(CountBody(app))


@pytest.fixture(scope="module")
def served() -> Iterator[ThreadedApp]:
    with ThreadedApp(limits_app()) as running:
        yield running


def assert_openai_error(body: Any, status_code: str, param: str | None = None) -> None:
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == status_code
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str) and error["message"]


# -- a streaming client that stops when the answer comes -------------------------------------


def stream_until_answered(
    port: int,
    path: str,
    *,
    total: int,
    head: bytes = b"",
    headers: Mapping[str, str] | None = None,
    piece: int = MiB,
    declared_length: int | None = None,
) -> tuple[int, Any, int]:
    """POST ``head`` and then zeros up to ``total`` bytes, chunked (or with a declared
    Content-Length), checking before each piece whether the server has answered; stops
    sending as soon as it has. Returns (status, JSON body, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        chunked = declared_length is None
        lines.append(
            "Transfer-Encoding: chunked" if chunked else f"Content-Length: {declared_length}"
        )
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        sent = 0
        zeros = b"\x00" * piece
        while sent < total:
            data = head if sent == 0 and head else zeros[: min(piece, total - sent)]
            if select.select([sock], [], [], 0)[0]:
                break  # the answer is here
            frame = f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(data)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read()), sent
    finally:
        sock.close()


# -- JSON ------------------------------------------------------------------------------------


def test_a_200_mb_chunked_body_is_cut_off_at_the_cap(served: ThreadedApp) -> None:
    status, body, sent = stream_until_answered(
        served.port, "/json", total=200 * MiB, head=b'{"prompt": "' + b"a" * 1000
    )
    assert status == 413
    assert_openai_error(body, "request_too_large")
    assert str(JSON_CAP) in body["error"]["message"]
    # The handler took no more than the cap and one transport chunk, and stopped reading.
    assert JSON_CAP < CONSUMED["/json"] <= JSON_CAP + MiB
    assert sent < 100 * MiB


def test_a_declared_length_over_the_cap_is_refused_before_reading(served: ThreadedApp) -> None:
    status, body, _ = stream_until_answered(
        served.port, "/json", total=10 * MiB, declared_length=10 * 1024 * MiB
    )
    assert status == 413
    assert_openai_error(body, "request_too_large")
    assert CONSUMED["/json"] == 0


def test_a_body_under_the_cap_is_read_whole(served: ThreadedApp) -> None:
    items = ["x" * 100] * 5000  # ~0.5 MiB, many transport chunks
    response = httpx.post(f"{served.url}/json", json={"items": items})
    assert response.status_code == 200, response.text
    assert response.json() == {"type": "dict"}


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [65, 100_000])
def test_deep_json_is_a_400_in_openai_shape(served: ThreadedApp, depth: int) -> None:
    response = httpx.post(
        f"{served.url}/json", content=nested(depth), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert_openai_error(response.json(), "invalid_json")
    assert "deeper than 64" in response.json()["error"]["message"]


def test_json_at_the_depth_limit_is_accepted(served: ThreadedApp) -> None:
    response = httpx.post(f"{served.url}/json", content=b'{"a": ' + nested(63) + b"}")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"prompt": "a fox"',
        b'{"prompt": "\xff\xfe"}',
        b'{"n": NaN}',
        b'{"n": ' + b"9" * 5000 + b"}",
    ],
    ids=["empty", "truncated", "not-utf8", "nan", "huge-int"],
)
def test_invalid_json_is_a_400(served: ThreadedApp, content: bytes) -> None:
    response = httpx.post(f"{served.url}/json", content=content)
    assert response.status_code == 400
    assert_openai_error(response.json(), "invalid_json")


def test_the_openai_sdk_gets_a_400_for_deep_json_and_does_not_retry(served: ThreadedApp) -> None:
    import openai  # here: the module is also imported by a child process, which needs no SDK

    value: Any = "fox"
    for _ in range(100):
        value = [value]
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="sk-test", max_retries=2)
    GENERATIONS.clear()
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="m", prompt="a fox", extra_body={"style": value})
    assert caught.value.code == "invalid_json"
    assert len(GENERATIONS) == 1


# -- forms -----------------------------------------------------------------------------------


def post_form(
    served: ThreadedApp, files: Any, data: Mapping[str, str] | None = None
) -> httpx.Response:
    return httpx.post(f"{served.url}/form", files=files, data=dict(data or {}), timeout=30)


def test_a_form_reads_fields_images_and_mask_with_sniffed_types(served: ThreadedApp) -> None:
    png = png_bytes()
    response = post_form(
        served,
        files=[
            ("image[]", ("a.png", png, "application/octet-stream")),
            ("image[]", ("b.jpg", JPEG, "image/jpeg")),
            ("mask", ("m.webp", WEBP, "image/png")),
        ],
        data={"model": "klein-edit", "prompt": "a fox, ünïcode", "n": "2"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    fields = {"model": "klein-edit", "prompt": "a fox, ünïcode", "n": "2"}
    assert body["fields"] == fields and body["mapping"] == fields
    assert body["images"] == [[len(png), "image/png", "a.png"], [len(JPEG), "image/jpeg", "b.jpg"]]
    assert body["mask"] == [len(WEBP), "image/webp"]
    assert bytes.fromhex(body["first"]) == png


def test_a_form_split_into_tiny_chunks_parses_the_same(served: ThreadedApp) -> None:
    png = png_bytes()
    request = httpx.Request(
        "POST",
        f"{served.url}/form",
        files={"image": ("a.png", png)},
        data={"prompt": "a fox"},
    )
    body = request.read()

    def tiny_chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 7):  # boundaries and headers split across chunks
            yield body[start : start + 7]

    response = httpx.post(
        f"{served.url}/form",
        content=tiny_chunks(),
        headers={"content-type": request.headers["content-type"]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["fields"] == {"prompt": "a fox"}
    assert bytes.fromhex(response.json()["first"]) == png


def test_a_file_over_its_cap_is_a_413_naming_the_field(served: ThreadedApp) -> None:
    response = post_form(served, files={"image": ("big.png", png_bytes() + b"\0" * FILE_CAP)})
    assert response.status_code == 413
    assert_openai_error(response.json(), "request_too_large", param="image")
    assert "'image'" in response.json()["error"]["message"]


def multipart_head(field: str, file_name: str, boundary: str = "b0undary") -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{file_name}"\r\nContent-Type: image/png\r\n\r\n'
    ).encode() + png_bytes()


FORM_HEADERS = {"Content-Type": "multipart/form-data; boundary=b0undary"}


def test_a_streamed_file_stops_being_read_at_the_file_cap(served: ThreadedApp) -> None:
    status, body, sent = stream_until_answered(
        served.port,
        "/form",
        total=100 * MiB,
        head=multipart_head("image", "huge.png"),
        headers=FORM_HEADERS,
    )
    assert status == 413
    assert_openai_error(body, "request_too_large", param="image")
    assert FILE_CAP < CONSUMED["/form"] <= FILE_CAP + MiB
    assert sent < 50 * MiB


def test_a_form_over_the_total_cap_is_a_413(served: ThreadedApp) -> None:
    files = [("image[]", (f"{i}.png", png_bytes() + b"\0" * (FILE_CAP - 100))) for i in range(3)]
    files.append(("mask", ("m.png", png_bytes() + b"\0" * (FILE_CAP - 100))))
    response = post_form(served, files=files)
    assert response.status_code == 413
    assert_openai_error(response.json(), "request_too_large")
    assert str(FORM_CAP) in response.json()["error"]["message"]


def test_a_declared_form_length_over_the_cap_is_refused_before_reading(served: ThreadedApp) -> None:
    status, body, _ = stream_until_answered(
        served.port,
        "/form",
        total=8 * MiB,
        head=multipart_head("image", "x.png"),
        headers=FORM_HEADERS,
        declared_length=500 * MiB,
    )
    assert status == 413
    assert_openai_error(body, "request_too_large")
    assert CONSUMED["/form"] == 0


@pytest.mark.parametrize("field", ["image", "image[]", "mask"])
def test_a_file_that_is_not_an_image_is_a_400(served: ThreadedApp, field: str) -> None:
    files = [(field, ("notes.png", b"%PDF-1.7 not an image at all", "image/png"))]
    if field == "mask":
        files.insert(0, ("image", ("a.png", png_bytes(), "image/png")))
    response = post_form(served, files=files)
    assert response.status_code == 400
    assert_openai_error(response.json(), "invalid_image", param=field)


def test_a_tiny_non_image_file_is_a_400(served: ThreadedApp) -> None:
    response = post_form(served, files={"image": ("a.png", b"\x89PN")})
    assert response.status_code == 400
    assert_openai_error(response.json(), "invalid_image", param="image")


def test_another_file_field_is_an_unknown_parameter(served: ThreadedApp) -> None:
    response = post_form(served, files={"photo": ("a.png", png_bytes())})
    assert response.status_code == 400
    assert_openai_error(response.json(), "unknown_parameter", param="photo")


def test_too_many_files_is_a_400(served: ThreadedApp) -> None:
    files = [("image[]", (f"{i}.png", png_bytes())) for i in range(4)]
    response = post_form(served, files=files)
    assert response.status_code == 400
    assert_openai_error(response.json(), "invalid_request")


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("application/json", b'{"model": "m"}'),
        ("multipart/form-data", b"--x\r\n"),
        ("multipart/form-data; boundary=b0undary", multipart_head("image", "cut.png")),
    ],
    ids=["json", "no-boundary", "truncated"],
)
def test_a_body_that_is_not_a_whole_form_is_a_400(
    served: ThreadedApp, content_type: str, content: bytes
) -> None:
    response = httpx.post(
        f"{served.url}/form", content=content, headers={"content-type": content_type}
    )
    assert response.status_code == 400
    assert_openai_error(response.json(), "invalid_request")


# -- headers ---------------------------------------------------------------------------------


def test_huge_headers_are_a_431_before_the_app_runs(served: ThreadedApp) -> None:
    CONSUMED.pop("/json", None)
    headers = {f"x-padding-{i}": "p" * 4000 for i in range(10)}  # 40 KB > 32 KiB
    response = httpx.post(f"{served.url}/json", json={"a": 1}, headers=headers)
    assert response.status_code == 431
    assert_openai_error(response.json(), "request_header_fields_too_large")
    assert "/json" not in CONSUMED  # the app never saw the request


def test_a_huge_query_string_is_a_414(served: ThreadedApp) -> None:
    response = httpx.post(f"{served.url}/json?q={'x' * 9000}", json={"a": 1})
    assert response.status_code == 414
    assert_openai_error(response.json(), "uri_too_long")


def test_headers_and_query_under_the_limits_pass(served: ThreadedApp) -> None:
    headers = {f"x-padding-{i}": "p" * 4000 for i in range(7)}
    response = httpx.post(f"{served.url}/json?q={'x' * 8000}", json={"a": 1}, headers=headers)
    assert response.status_code == 200, response.text


# -- memory of a real server process ---------------------------------------------------------


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_a_server_process_stays_small_under_200_mb_bodies(tmp_path: Path) -> None:
    """The app under uvicorn in a child process: its peak RSS (VmHWM) hardly moves while a
    200 MB chunked JSON body and a 200 MB chunked upload are refused."""
    port = free_port()
    tests = str(Path(__file__).parent)
    script = (
        "import sys, uvicorn; from test_serve_limits import limits_app; "
        "uvicorn.run(limits_app(), host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the child server did not start"
            time.sleep(0.05)
        before = vm_kib(child.pid, "VmHWM")
        status, _, _ = stream_until_answered(port, "/json", total=200 * MiB, head=b"[")
        assert status == 413
        status, _, _ = stream_until_answered(
            port,
            "/form",
            total=200 * MiB,
            head=multipart_head("image", "huge.png"),
            headers=FORM_HEADERS,
        )
        assert status == 413
        grown_mib = (vm_kib(child.pid, "VmHWM") - before) / 1024
        assert grown_mib < 40, f"peak RSS grew by {grown_mib:.0f} MiB"
    finally:
        child.terminate()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)
        if child.stderr:
            child.stderr.close()


# -- sniffing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (png_bytes(), "image/png"),
        (JPEG, "image/jpeg"),
        (GIF, "image/gif"),
        (b"GIF87a" + b"\0" * 8, "image/gif"),
        (WEBP, "image/webp"),
        (b"RIFF\0\0\0\0WAVEfmt ", None),
        (b"RIFF", None),
        (b"%PDF-1.7", None),
        (b"", None),
        (b"\x89PNG\r\n", None),
    ],
)
def test_sniff_image(data: bytes, expected: str | None) -> None:
    assert sniff_image(data) == expected
