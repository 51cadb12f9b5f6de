"""Reading request bodies under hard caps, and refusing oversized headers before the app runs.

The gateway authenticates from the headers first and only then reads a body, through these
functions: :func:`read_json` for JSON, :func:`read_form` for multipart forms (image edits).
Both stream ``request.stream()`` and stop the moment a cap is passed, so a client can make the
process hold at most the cap plus one chunk of the transport, never the body it claims to send.
Every refusal is a :class:`~falbind.serve.errors.GatewayError` (OpenAI's error shape, a 4xx the
OpenAI SDKs do not retry), never a plain-text 500.

:class:`HeaderLimits` is a pure ASGI middleware that answers 431 or 414 before the app sees a
request whose headers or query string are too large.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Final

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import GatewayError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = [
    "EditForm",
    "HeaderLimits",
    "read_form",
    "read_json",
    "sniff_image",
]

Upload = tuple[bytes, str | None, str | None]
"""A file from a form: its bytes, its content type, its file name."""

FORM_IMAGE_FIELDS: Final = ("image", "image[]")
"""Multipart form fields that carry image files (OpenAI's edits and variations)."""
FORM_MASK_FIELD: Final = "mask"
"""The multipart form field that carries the mask file."""
MAX_FIELD_BYTES: Final = 1024 * 1024
"""A text field's cap (Starlette's default for form fields): a prompt is far shorter."""
DEFAULT_MAX_HEADER_BYTES: Final = 32 * 1024
DEFAULT_MAX_QUERY_BYTES: Final = 8 * 1024

_IMAGE_SIGNATURES: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_SNIFF_BYTES: Final = 12
"""Enough bytes to tell every type above and WebP (``RIFF`` + size + ``WEBP``)."""


class EditForm(dict[str, Any]):
    """An edit's multipart form: its text fields (also readable as a mapping, like a JSON
    body), the ``image``/``image[]`` files and the ``mask``, each as (bytes, type, name)."""

    def __init__(
        self,
        fields: dict[str, str],
        images: list[tuple[bytes, str | None, str | None]],
        mask: tuple[bytes, str | None, str | None] | None,
    ) -> None:
        super().__init__(fields)
        self.fields = fields
        self.images = images
        self.mask = mask


def sniff_image(data: bytes) -> str | None:
    """The image MIME type ``data`` starts with (PNG, JPEG, WebP, GIF), else ``None``.

    Written by hand: four fixed signatures are shorter than a dependency (``imghdr`` left the
    standard library in 3.13), and fal decodes the image itself anyway; this only keeps a
    file that is plainly not an image from being uploaded to fal and billed for.
    """
    for signature, mime in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return mime
    if len(data) >= _SNIFF_BYTES and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


# -- the body stream -------------------------------------------------------------------------


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"the request body is larger than this gateway's limit of {limit} bytes",
        code="request_too_large",
    )


def _refuse_declared_length(request: Request, limit: int) -> None:
    """413 before reading anything when the client announces a body over the cap."""
    length = request.headers.get("content-length")
    if length is None:
        return
    try:
        declared = int(length)
    except ValueError:  # the server refuses a malformed length itself
        return
    if declared > limit:
        raise _too_large(limit)


async def _capped_chunks(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The body's chunks as they arrive; 413 as soon as their total passes ``limit``, before
    the chunk that passes it is handed on (so nothing reads past the cap plus one chunk).

    A client that disconnects mid-body raises Starlette's ``ClientDisconnect``.
    """
    _refuse_declared_length(request, limit)
    size = 0
    async with aclosing(request.stream()) as stream:
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            if chunk:
                yield chunk


# -- JSON ------------------------------------------------------------------------------------


def _invalid_json(message: str = "the request body is not valid JSON") -> GatewayError:
    return GatewayError(400, message, code="invalid_json")


def _refuse_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON (Python's decoder accepts them by default)."""
    raise ValueError(f"{name} is not valid JSON")


def _deeper_than(value: Any, max_depth: int) -> bool:
    """Whether ``value`` nests containers deeper than ``max_depth`` (``[]`` is depth 1).

    Level by level rather than recursively, so no input can exhaust Python's stack; the
    list comprehension per container keeps the walk within about the cost of the parse.
    """
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            return True
        deeper: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            deeper.extend([child for child in children if isinstance(child, dict | list)])
        level = deeper
    return False


async def read_json(request: Request, *, max_bytes: int, max_depth: int = 64) -> Any:
    """The request's JSON body, read under a hard cap.

    Raises :class:`GatewayError`: 413 ``request_too_large`` when ``Content-Length`` says more
    than ``max_bytes`` (nothing is read) or the streamed body passes it (reading stops there);
    400 ``invalid_json`` for a body that is not UTF-8 JSON, or that nests deeper than
    ``max_depth``. Starlette's ``ClientDisconnect`` when the client goes away mid-body.
    """
    async with aclosing(_capped_chunks(request, max_bytes)) as stream:
        chunks = [chunk async for chunk in stream]
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid_json("the request body is not UTF-8") from None
    del chunks
    too_deep = _invalid_json(f"the request body nests deeper than {max_depth} levels")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        # The C decoder guards its own recursion: a 100,000-deep ``[[[...`` lands here.
        raise too_deep from None
    except ValueError:  # JSONDecodeError, NaN/Infinity, an integer over Python's digit limit
        raise _invalid_json() from None
    # Depth needs as many opening brackets (counted in C): most bodies skip the walk.
    if text.count("[") + text.count("{") > max_depth and _deeper_than(value, max_depth):
        raise too_deep
    return value


# -- multipart forms -------------------------------------------------------------------------


class _Part:
    """The part being parsed: its headers as they arrive, then its name and data."""

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.name = ""
        self.file_name: str | None = None
        self.is_file = False
        self.data = bytearray()
        self.image_type: str | None = None


class _FormCollector:
    """python-multipart's callbacks, collecting the parts of an edit form in memory under
    caps (the bytes are needed in memory anyway: they are uploaded to fal from there).

    Each refusal is raised from inside the callback, which python-multipart lets propagate
    out of ``parser.write``, so parsing stops at the offending byte.
    """

    def __init__(self, *, max_file_bytes: int, max_files: int, max_fields: int) -> None:
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.max_fields = max_fields
        self.fields: dict[str, str] = {}
        self.images: list[Upload] = []
        self.mask: Upload | None = None
        self.ended = False
        self._files = 0
        self._fields = 0
        self._part = _Part()
        self._header_name = bytearray()
        self._header_value = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }

    def _on_part_begin(self) -> None:
        self._part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._part.headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        part = self._part
        _, options = parse_options_header(part.headers.get(b"content-disposition"))
        if b"name" not in options:
            raise _bad_form("a form part has no name in its Content-Disposition")
        part.name = _decode(options[b"name"], "a field name")
        if b"filename" not in options:
            self._fields += 1
            if self._fields > self.max_fields:
                raise _bad_form(f"the form has more than {self.max_fields} fields")
            return
        part.is_file = True
        part.file_name = _decode(options[b"filename"], f"{part.name!r}'s file name")
        if part.name not in (*FORM_IMAGE_FIELDS, FORM_MASK_FIELD):
            raise GatewayError(
                400,
                f"unexpected file field {part.name!r}",
                code="unknown_parameter",
                param=part.name,
            )
        self._files += 1
        if self._files > self.max_files:
            raise _bad_form(f"the form has more than {self.max_files} files")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        limit = self.max_file_bytes if part.is_file else MAX_FIELD_BYTES
        if len(part.data) + (end - start) > limit:
            kind = "file" if part.is_file else "field"
            raise GatewayError(
                413,
                f"the {kind} {part.name!r} is larger than this gateway's limit of {limit} bytes",
                code="request_too_large",
                param=part.name,
            )
        part.data += data[start:end]
        if part.is_file and part.image_type is None and len(part.data) >= _SNIFF_BYTES:
            part.image_type = _image_type(part)  # refuse a non-image at its first bytes

    def _on_part_end(self) -> None:
        part = self._part
        if not part.is_file:
            self.fields[part.name] = _decode(bytes(part.data), f"the field {part.name!r}")
            return
        image_type = part.image_type or _image_type(part)
        upload = (bytes(part.data), image_type, part.file_name)
        if part.name == FORM_MASK_FIELD:
            self.mask = upload
        else:
            self.images.append(upload)

    def _on_end(self) -> None:
        self.ended = True


def _bad_form(message: str) -> GatewayError:
    return GatewayError(400, f"could not read the form: {message}", code="invalid_request")


def _decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad_form(f"{what} is not UTF-8") from None


def _image_type(part: _Part) -> str:
    """The sniffed type of an image or mask file (what fal is told it is), or a 400."""
    image_type = sniff_image(bytes(part.data[:_SNIFF_BYTES]))
    if image_type is None:
        raise GatewayError(
            400,
            f"the file in {part.name!r} is not a PNG, JPEG, WebP or GIF image",
            code="invalid_image",
            param=part.name,
        )
    return image_type


async def read_form(
    request: Request,
    *,
    max_bytes: int,
    max_file_bytes: int,
    max_files: int = 16,
    max_fields: int = 100,
) -> EditForm:
    """An images/edits form, streamed through python-multipart's parser under hard caps.

    The files' content types are the sniffed ones (the bytes are what fal will decode).

    Raises :class:`GatewayError`: 400 ``invalid_request`` when the body is not
    multipart/form-data, is malformed or truncated, or has more than ``max_files`` files or
    ``max_fields`` fields; 413 ``request_too_large`` when the body passes ``max_bytes`` (or
    ``Content-Length`` says it will), or one file passes ``max_file_bytes`` (``param``: its
    field); 400 ``invalid_image`` (``param``: the field) for an ``image``/``image[]``/``mask``
    file that is not a PNG, JPEG, WebP or GIF; 400 ``unknown_parameter`` for any other file
    field. Starlette's ``ClientDisconnect`` when the client goes away mid-body.
    """
    media_type, options = parse_options_header(request.headers.get("content-type"))
    if media_type != b"multipart/form-data":
        raise GatewayError(
            400,
            "images/edits takes multipart/form-data with 'image' (or 'image[]') files",
            code="invalid_request",
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise _bad_form("the Content-Type has no boundary")
    collector = _FormCollector(
        max_file_bytes=max_file_bytes, max_files=max_files, max_fields=max_fields
    )
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        async with aclosing(_capped_chunks(request, max_bytes)) as stream:
            async for chunk in stream:
                parser.write(chunk)  # a refusal raised in a callback stops it here
        parser.finalize()
    except FormParserError as exc:
        raise _bad_form(str(exc) or type(exc).__name__) from None
    if not collector.ended:
        raise _bad_form("the body ended before the form's closing boundary")
    return EditForm(collector.fields, collector.images, collector.mask)


# -- headers ---------------------------------------------------------------------------------


class HeaderLimits:
    """A pure ASGI middleware: 431 when a request's headers (names, values and the 4 bytes of
    ``": "`` and CRLF each, as on the wire) pass ``max_header_bytes``, 414 when its query
    string passes ``max_query_bytes``; in OpenAI's error shape, before the app runs.

    Pure ASGI (not Starlette's ``BaseHTTPMiddleware``) so it costs one check per request and
    wraps any ASGI app: ``HeaderLimits(app)`` or ``Middleware(HeaderLimits, ...)``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_query_bytes: int = DEFAULT_MAX_QUERY_BYTES,
    ) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_query_bytes = max_query_bytes

    def __repr__(self) -> str:
        return f"<HeaderLimits headers<={self.max_header_bytes} query<={self.max_query_bytes}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            error = self._refusal(scope)
            if error is not None:
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> GatewayError | None:
        header_bytes = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if header_bytes > self.max_header_bytes:
            return GatewayError(
                431,
                f"the request's headers are larger than this gateway's limit of "
                f"{self.max_header_bytes} bytes",
                code="request_header_fields_too_large",
            )
        query: bytes = scope.get("query_string", b"")
        if len(query) > self.max_query_bytes:
            return GatewayError(
                414,
                f"the request's query string is longer than this gateway's limit of "
                f"{self.max_query_bytes} bytes",
                code="uri_too_long",
            )
        return None
