"""``falbind refresh`` never destroys the registry on a bad catalogue answer, and reads the
catalogue safely (no retries of permanent errors, a bounded read, no password in messages).
FakeCatalogue and purpose-built servers on 127.0.0.1, the CLI through the installed entry point."""

from __future__ import annotations

import base64
import json
import logging
import re
import subprocess
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from workspace import (
    CATALOGUE,
    ENDPOINT_DOCS,
    Workspace,
    assert_one_line_failure,
    fixture_workspace,
    load_json,
)

from falbind.testing import FakeCatalogue
from falbind_codegen.catalogue import CatalogueClient, CatalogueError
from falbind_codegen.refresh import RefreshItem, removal_guard, removal_limit
from falbind_codegen.registry import load_registry

from support import run_cli

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

LISTED = ("fal-ai/flux-pro/v1.1-ultra", "fal-ai/flux/schnell", "fal-ai/wan-ati")
EXTRA = (
    "fal-ai/flux/dev",
    "fal-ai/recraft/v3/text-to-image",
    "fal-ai/dia-tts/voice-clone",
    "fal-ai/flux-2-lora-gallery/ballpoint-pen-sketch",
    "fal-ai/pixverse/v5/transition",
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The fixture registry (4 endpoints, generated) plus 5 more in the registry: 9 entries."""
    workspace = fixture_workspace(tmp_path_factory.mktemp("guard") / "base")
    docs = [ENDPOINT_DOCS / (e.replace("/", "__") + ".json") for e in EXTRA]
    result = run_cli("vendor", *docs, *workspace.paths())
    assert result.returncode == 0, result.stderr
    return workspace


@pytest.fixture
def ws(base: Workspace, tmp_path: Path) -> Workspace:
    return base.copy_to(tmp_path / "ws")


def _listing(tmp_path: Path, ids: tuple[str, ...]) -> Path:
    models = [m for m in load_json(CATALOGUE)["models"] if m["endpoint_id"] in ids]
    assert len(models) == len(ids)
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps({"models": models}), encoding="utf-8")
    return path


def _refresh(ws: Workspace, fake: FakeCatalogue, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("refresh", "--catalogue-url", fake.url, *ws.paths(), *args)


def _ids(ws: Workspace) -> list[str]:
    return [e["id"] for e in yaml.safe_load((ws.registry / "models.yaml").read_text())["endpoints"]]


def test_an_empty_catalogue_removes_nothing_unless_allowed(ws: Workspace, tmp_path: Path) -> None:
    before = ws.digest()
    with FakeCatalogue(_listing(tmp_path, ()), ENDPOINT_DOCS) as fake:
        for mode in ("--yes", "--dry-run"):
            result = _refresh(ws, fake, mode)
            assert_one_line_failure(
                result,
                "refusing to remove 9 of 9 registry endpoint(s)",
                "the catalogue lists no endpoint",
                "--allow-removals",
            )
            assert result.returncode == 2
            assert "catalogue: 0 endpoint(s); 0 new, 0 changed, 0 deprecated, 9 removed" in (
                result.stdout
            )
        as_json = _refresh(ws, fake, "--yes", "--format", "json")
        assert as_json.returncode == 2
        assert json.loads(as_json.stdout)["refused"].startswith("refusing to remove 9")
        assert ws.digest() == before
        # A category fal lists nothing of is refused too, even for one entry in scope.
        videos = _refresh(ws, fake, "--yes", "--category", "image-to-video")
        assert_one_line_failure(videos, "lists no endpoint of category image-to-video")
        assert ws.digest() == before


def test_far_fewer_listed_is_refused_and_allow_removals_proceeds(
    ws: Workspace, tmp_path: Path
) -> None:
    before = ws.digest()
    with FakeCatalogue(_listing(tmp_path, LISTED[:2]), ENDPOINT_DOCS) as fake:
        refused = _refresh(ws, fake, "--yes")
        assert_one_line_failure(
            refused,
            "refusing to remove 7 of 9",
            "the catalogue lists 2 endpoint(s) and would remove more than 3",
        )
        assert ws.digest() == before
        allowed = _refresh(ws, fake, "--yes", "--allow-removals")
    assert allowed.returncode == 0, allowed.stderr
    assert _ids(ws) == sorted(LISTED[:2])
    assert run_cli("check", *ws.paths()).returncode == 0


def test_the_removal_limit() -> None:
    assert [removal_limit(n) for n in (0, 4, 9, 30, 40, 100, 200, 936)] == [
        3, 3, 3, 3, 4, 10, 20, 20,
    ]  # fmt: skip


def test_the_guard_counts_only_the_categories_asked_for(base: Workspace) -> None:
    registry = load_registry(base.registry)
    removed = [RefreshItem("removed", e.id, e.category) for e in registry.entries[:4]]
    assert removal_guard(registry, removed[:3], listed=5) is None
    assert "more than 3" in (removal_guard(registry, removed, listed=5) or "")
    assert "lists no endpoint" in (removal_guard(registry, removed[:1], listed=0) or "")
    assert removal_guard(registry, [], listed=0) is None


# --------------------------------------------------------------------------- network hygiene


class ScriptedServer:
    """A loopback HTTP server answering each GET with the next scripted status (the last one
    repeats), or with an endless chunked body for ``"endless"``; records the requests."""

    def __init__(self, *script: int | str) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.requests.append((self.path, self.headers.get("Authorization")))
                step = outer.script[min(len(outer.requests), len(outer.script)) - 1]
                if step == "endless":
                    self._endless()
                    return
                body = json.dumps({"detail": f"status {step}"}).encode()
                self.send_response(int(step))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(body)

            def _endless(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b'{"models": [' + b" " * 65_000
                try:
                    for _ in range(10_000):  # bounded: at most ~650 MB if nobody stops reading
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except OSError:
                    pass  # the client stopped reading and closed the connection
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _client(url: str, sleeps: list[float], **kwargs: Any) -> CatalogueClient:
    return CatalogueClient(url, key="", sleep=sleeps.append, **kwargs)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "must be an http(s) URL; file:///etc/passwd is a file: URL"),
        ("ftp://127.0.0.1/models", "is a ftp: URL"),
        ("127.0.0.1:8080", "must be an http(s) URL"),
        ("http://[::1", "is malformed"),
        ("http://127.0.0.1:99999", "is malformed"),
        ("http:///v1", "has no host"),
    ],
)
def test_permanent_url_errors_fail_before_any_request(url: str, reason: str) -> None:
    sleeps: list[float] = []
    with pytest.raises(CatalogueError, match=re.escape(reason)):
        _client(url, sleeps)
    assert sleeps == []


def test_4xx_is_not_retried_and_429_and_5xx_are() -> None:
    for status in (400, 401, 403, 404, 410):
        sleeps: list[float] = []
        with ScriptedServer(status) as server, _client(server.url, sleeps) as client:
            with pytest.raises(CatalogueError, match=f"HTTP {status}: status {status}"):
                list(client.iter_models())
            assert len(server.requests) == 1 and sleeps == []
    sleeps = []
    with (
        ScriptedServer(429, 503, 200) as server,
        _client(server.url, sleeps) as client,
        pytest.raises(CatalogueError, match="catalogue page has no 'models' list"),
    ):
        list(client.iter_models())  # retried twice, then the 200 body is not a page
    assert len(server.requests) == 3 and len(sleeps) == 2


def test_an_endless_answer_is_cut_at_the_size_limit() -> None:
    sleeps: list[float] = []
    with (
        ScriptedServer("endless") as server,
        _client(server.url, sleeps, max_response_bytes=2_000_000) as client,
    ):
        with pytest.raises(CatalogueError, match="larger than 2000000 bytes; refused"):
            list(client.iter_models())
        assert len(server.requests) == 1 and sleeps == []  # not retried


def test_a_password_in_the_url_is_sent_as_basic_auth_and_never_shown(
    caplog: pytest.LogCaptureFixture, ws: Workspace
) -> None:
    caplog.set_level(logging.DEBUG)
    sleeps: list[float] = []
    with ScriptedServer(503, 404) as server:
        url = f"http://admin:hunter2@127.0.0.1:{server.port}"
        with _client(url, sleeps) as client:
            assert "hunter2" not in repr(client)
            with pytest.raises(CatalogueError) as caught:
                list(client.iter_models())
        expected = "Basic " + base64.b64encode(b"admin:hunter2").decode()
        assert [auth for _, auth in server.requests] == [expected, expected]
        rendered = "".join(traceback.format_exception(caught.value))
        assert "hunter2" not in rendered and "hunter2" not in caplog.text
        assert f"GET http://127.0.0.1:{server.port}/v1/models failed" in str(caught.value)
        # Through the CLI: the one-line error names the host, never the password.
        before = ws.digest()
        for catalogue_url in (url, url + "/wrong"):
            result = run_cli("refresh", "--catalogue-url", catalogue_url, "--yes", *ws.paths())
            assert_one_line_failure(result, "cannot read the catalogue", "HTTP 404")
            assert "hunter2" not in result.stderr + result.stdout
        file_url = run_cli("refresh", "--catalogue-url", "file://admin:hunter2@x/", *ws.paths())
        assert_one_line_failure(file_url, "must be an http(s) URL; file://x/ is a file: URL")
        assert "hunter2" not in file_url.stderr
        assert ws.digest() == before
