"""Files in and out of fal: data URIs for inputs, and what a download checks.

fal outputs reference files by URL (``{url, content_type, file_name, ...}``); with
``sync_mode: true`` the URL is a ``data:`` URI, decoded here without any HTTP. Inputs that take
a file URL also accept a data URI: :func:`to_data_uri` builds one from bytes or a path.
Downloads (``FalClient.download``) send no fal key, since file URLs point at other hosts.
Uploads (``FalClient.upload``) put bytes on fal storage and return their URL: :class:`Upload`
is what is sent.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote_to_bytes

from .errors import InvalidArgumentsError, InvalidArgumentTypeError, UnexpectedContentTypeError

__all__ = [
    "Upload",
    "decode_data_uri",
    "file_url",
    "finish_download",
    "sniff_content_type",
    "to_data_uri",
]


_OCTET_STREAM: Final = "application/octet-stream"

_SIGNATURES: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)


def sniff_content_type(data: bytes) -> str:
    """The content type told by ``data``'s first bytes, else ``application/octet-stream``."""
    for signature, content_type in _SIGNATURES:
        if data.startswith(signature):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    return "application/octet-stream"


def to_data_uri(data: bytes | str | os.PathLike[str], content_type: str | None = None) -> str:
    """A base64 ``data:`` URI of ``data`` (bytes, or a path to read), for a file input.

    The content type is ``content_type`` if given, else guessed from the path's suffix, else
    sniffed from the bytes.
    """
    if isinstance(data, bytes):
        raw = data
    else:
        path = Path(data)
        raw = path.read_bytes()
        content_type = content_type or mimetypes.guess_type(path.name)[0]
    content_type = content_type or sniff_content_type(raw)
    return f"data:{content_type};base64,{base64.b64encode(raw).decode('ascii')}"


def decode_data_uri(uri: str) -> tuple[bytes, str]:
    """The bytes and content type of a ``data:`` URI (base64 or percent-encoded)."""
    if not uri.startswith("data:") or "," not in uri:
        raise InvalidArgumentsError.because("uri", "not a data URI")
    header, _, payload = uri[5:].partition(",")
    parts = header.split(";")
    content_type = parts[0] or "text/plain"
    if "base64" in parts[1:]:
        try:
            return base64.b64decode(payload, validate=True), content_type
        except binascii.Error as exc:
            raise InvalidArgumentsError.because(
                "uri", f"invalid base64 in data URI: {exc}"
            ) from None
    return unquote_to_bytes(payload), content_type


def file_url(source: object) -> str:
    """The URL of ``source``: a URL or data URI, a mapping's ``url``, or the ``url`` attribute
    of an output File/Image model."""
    url = source if isinstance(source, str) else None
    if url is None and isinstance(source, Mapping):
        url = source.get("url")
    if url is None:
        url = getattr(source, "url", None)
    if not isinstance(url, str) or not url:
        raise InvalidArgumentTypeError.because(
            "source", f"cannot find a file URL in {type(source).__name__}"
        )
    return url


def finish_download(
    data: bytes,
    content_type: str,
    url: str,
    expected_type: str | None,
    path: str | os.PathLike[str] | None,
) -> bytes | Path:
    """Check the content type, then return the bytes or write them to ``path`` (returned)."""
    if expected_type is not None and not content_type.lower().startswith(expected_type.lower()):
        shown = url if not url.startswith("data:") else url[:40] + "…"
        raise UnexpectedContentTypeError(
            f"expected {expected_type!r} content from {shown}, got {content_type or 'none'!r}",
            expected=expected_type,
            actual=content_type,
        )
    if path is None:
        return data
    target = Path(path)
    target.write_bytes(data)
    return target


@dataclass(frozen=True, slots=True, repr=False)
class Upload:
    """The bytes of one upload to fal storage, with their content type and file name."""

    data: bytes
    content_type: str
    file_name: str

    @classmethod
    def of(
        cls,
        data: bytes | str | os.PathLike[str],
        *,
        content_type: str | None = None,
        file_name: str | None = None,
    ) -> Upload:
        """``data`` (bytes, or a path to read) ready to upload.

        For a path, the content type is guessed from its suffix and the file name is its name;
        for bytes, the content type is ``application/octet-stream`` and the file name
        ``upload`` plus the content type's usual suffix. ``content_type`` and ``file_name``
        override both.
        """
        if isinstance(data, bytes):
            raw = data
        elif isinstance(data, str | os.PathLike):
            path = Path(data)
            raw = path.read_bytes()
            content_type = content_type or mimetypes.guess_type(path.name)[0]
            file_name = file_name or path.name
        else:
            raise InvalidArgumentTypeError.because(
                "data", f"upload takes bytes or a path, not {type(data).__name__}"
            )
        content_type = content_type or _OCTET_STREAM
        if not file_name:
            file_name = "upload" + (mimetypes.guess_extension(content_type) or ".bin")
        return cls(raw, content_type, file_name)

    def __repr__(self) -> str:
        return (
            f"Upload(<{len(self.data)} bytes>, content_type={self.content_type!r}, "
            f"file_name={self.file_name!r})"
        )
