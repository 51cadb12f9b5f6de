"""A fake fal catalogue on a loopback socket, for tests.

Serves, from a ``catalogue.json`` (``{"models": [{endpoint_id, metadata}]}``) and a
folder of per-endpoint OpenAPI documents (``<id with / as __>.json``):

- ``GET /v1/models`` with ``limit``, opaque ``cursor``, ``category``, up to 50 repeated
  ``endpoint_id`` (400 above that) and ``expand=openapi-3.0`` (inlines each document
  under ``openapi``; pages are smaller then, as on fal);
- ``GET /api/openapi/queue/openapi.json?endpoint_id=<id>`` (404 ``{"detail": ...}`` for
  an unknown id).

Fault injection: ``fail_first_with_429`` answers the very first request with 429 and
``Retry-After: 0``; ``malformed_page=N`` answers the N-th listing page (1-based) with a
body that is not JSON. ``overrides`` replaces an endpoint's document (for instance with
an older version from ``history/``); ``removed`` hides endpoints entirely.

The server binds 127.0.0.1 on a free port and runs in a daemon thread; it starts on
construction and stops on ``stop()`` or when the ``with`` block ends.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeCatalogue"]

MODELS_PATH = "/v1/models"
OPENAPI_PATH = "/api/openapi/queue/openapi.json"
MAX_IDS_PER_REQUEST = 50
EXPAND_OPENAPI = "openapi-3.0"


class _HTTPError(Exception):
    """An error response: status code and ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class FakeCatalogue:
    """A fake of fal's catalogue and per-endpoint OpenAPI URL on ``127.0.0.1``."""

    def __init__(
        self,
        catalogue_path: str | Path,
        endpoints_dir: str | Path,
        *,
        page_size: int = 100,
        expanded_page_size: int = 20,
        fail_first_with_429: bool = False,
        malformed_page: int | None = None,
        overrides: Mapping[str, dict[str, Any]] | None = None,
        removed: set[str] | None = None,
    ) -> None:
        if page_size < 1 or expanded_page_size < 1:
            raise ValueError("page sizes must be at least 1")
        catalogue = json.loads(Path(catalogue_path).read_text(encoding="utf-8"))
        hidden = removed or set()
        self.models: list[dict[str, Any]] = [
            model for model in catalogue["models"] if model["endpoint_id"] not in hidden
        ]
        self.endpoints_dir = Path(endpoints_dir)
        self.page_size = page_size
        self.expanded_page_size = expanded_page_size
        self.malformed_page = malformed_page
        self.overrides = dict(overrides or {})
        self.requests: list[str] = []
        self._known = {model["endpoint_id"] for model in self.models}
        self._fail_next_with_429 = fail_first_with_429
        self._pages_served = 0
        self._lock = threading.Lock()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how quickly stop() takes effect
            name="fake-fal-catalogue",
            daemon=True,
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    @property
    def openapi_url(self) -> str:
        """The per-endpoint OpenAPI URL, for ``CatalogueClient(openapi_url=...)``."""
        return self.url + OPENAPI_PATH

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving and join the server thread (safe to call twice)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()

    # -- request handling (called from server threads) -------------------------------

    def respond(self, target: str) -> tuple[int, dict[str, str], bytes]:
        """Answer one GET for ``target`` (path and query): status, headers, body."""
        with self._lock:
            self.requests.append(target)
            if self._fail_next_with_429:
                self._fail_next_with_429 = False
                return _json_response(429, {"detail": "rate limited"}, {"Retry-After": "0"})
        url = urlsplit(target)
        query = parse_qs(url.query, keep_blank_values=True)
        try:
            if url.path == MODELS_PATH:
                return self._models(query)
            if url.path == OPENAPI_PATH:
                return _json_response(200, self._openapi(_single(query, "endpoint_id")))
            raise _HTTPError(404, f"no route for {url.path}")
        except _HTTPError as error:
            return _json_response(error.status, {"detail": error.detail})

    def _models(self, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        expand = "expand" in query
        if expand and query["expand"] != [EXPAND_OPENAPI]:
            raise _HTTPError(400, f"unsupported expand {query['expand']!r}")
        cap = self.expanded_page_size if expand else self.page_size
        limit = min(_int(query, "limit", cap), cap)
        offset = _decode_cursor(query["cursor"][-1]) if "cursor" in query else 0
        selected = self._select(query)
        page = selected[offset : offset + limit]
        has_more = offset + limit < len(selected)
        with self._lock:
            self._pages_served += 1
            if self._pages_served == self.malformed_page:
                return 200, {"Content-Type": "text/html"}, b"<html>upstream hiccup</html>"
        body = {
            "models": [self._entry(model, expand) for model in page],
            "has_more": has_more,
            "next_cursor": _encode_cursor(offset + limit) if has_more else None,
        }
        return _json_response(200, body)

    def _select(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        models = self.models
        ids = query.get("endpoint_id")
        if ids is not None:
            if len(ids) > MAX_IDS_PER_REQUEST:
                raise _HTTPError(400, f"at most {MAX_IDS_PER_REQUEST} endpoint_id values")
            wanted = set(ids)
            models = [model for model in models if model["endpoint_id"] in wanted]
        if "category" in query:
            category = query["category"][-1]
            models = [m for m in models if m.get("metadata", {}).get("category") == category]
        return models

    def _entry(self, model: dict[str, Any], expand: bool) -> dict[str, Any]:
        if not expand:
            return model
        return {**model, "openapi": self._document(model["endpoint_id"])}

    def _openapi(self, endpoint_id: str) -> dict[str, Any]:
        if endpoint_id not in self._known:
            raise _HTTPError(404, f"endpoint {endpoint_id!r} not found")
        return self._document(endpoint_id)

    def _document(self, endpoint_id: str) -> dict[str, Any]:
        if endpoint_id in self.overrides:
            return self.overrides[endpoint_id]
        path = self.endpoints_dir / (endpoint_id.replace("/", "__") + ".json")
        try:
            return cast(dict[str, Any], json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise _HTTPError(404, f"no OpenAPI document for {endpoint_id!r}") from None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeCatalogue) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5.0  # closes idle keep-alive connections, so handler threads end

    def do_GET(self) -> None:
        status, headers, body = cast(_Server, self.server).fake.respond(self.path)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


def _json_response(
    status: int, body: Any, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(body).encode(),
    )


def _single(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    if not values or len(values) != 1:
        raise _HTTPError(400, f"exactly one {name} is required")
    return values[0]


def _int(query: dict[str, list[str]], name: str, default: int) -> int:
    if name not in query:
        return default
    try:
        value = int(query[name][-1])
    except ValueError:
        raise _HTTPError(400, f"{name} must be an integer") from None
    if value < 1:
        raise _HTTPError(400, f"{name} must be at least 1")
    return value


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        offset = int(number)
        if prefix != "offset" or offset < 0:
            raise ValueError(text)
        return offset
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _HTTPError(400, "invalid cursor") from None
