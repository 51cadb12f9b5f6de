"""What the sync and async clients share: endpoint resolution, request building, decoding and
the retry bookkeeping. Nothing here does I/O; the clients only send what this builds.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import quote

import httpx
import pydantic_core
from pydantic import BaseModel, ValidationError

from falbind.models.base import RequestModel, to_request_body, validate_leniently
from falbind.models.bindings import ENDPOINTS
from falbind.models.index import EndpointSpec

from .auth import Secret
from .errors import (
    REQUEST_ID_HEADER,
    FalConnectionError,
    FalDecodeError,
    FalError,
    FalTimeoutError,
    InvalidArgumentsError,
    InvalidArgumentTypeError,
    MissingKeyError,
    OutputSchemaWarning,
    UntrustedURLError,
    error_from_response,
)
from .files import Upload
from .retry import (
    RetryPolicy,
    describe_transport_error,
    is_timeout,
    retry_delay,
    scrub_tracebacks,
)

__all__ = [
    "DEFAULT_QUEUE_URL",
    "DEFAULT_RUN_URL",
    "DEFAULT_STORAGE_URL",
    "DEFAULT_TIMEOUT",
    "Attempts",
    "Call",
    "ClientConfig",
    "Endpoint",
    "Priority",
    "QueueURLs",
    "SharedHeaders",
    "UploadTarget",
    "decode_output",
    "decode_upload_target",
    "is_loopback",
    "origin",
    "resolve_endpoint",
]

DEFAULT_RUN_URL: Final = "https://fal.run"
DEFAULT_QUEUE_URL: Final = "https://queue.fal.run"
DEFAULT_STORAGE_URL: Final = "https://rest.alpha.fal.ai"
"""fal's REST API, where uploads to fal storage (its CDN) are initiated."""
DEFAULT_TIMEOUT: Final = httpx.Timeout(120.0, connect=10.0)
"""``run`` waits up to 2 minutes for each read by default (fal-client never times out)."""

Priority = Literal["normal", "low"]

log = logging.getLogger("falbind")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint id resolved for a call: typed (``spec`` set) or explicitly untyped."""

    id: str
    spec: EndpointSpec | None

    def build_body(
        self,
        arguments: Mapping[str, Any] | RequestModel | None,
        params: Mapping[str, Any],
        extra_body: Mapping[str, Any] | None,
    ) -> bytes:
        """The validated JSON body: only the fields the caller set, then ``extra_body``.
        :class:`~falbind.InvalidArgumentsError` when the arguments do not fit the Input model."""
        try:
            return self._build_body(arguments, params, extra_body)
        except InvalidArgumentsError:
            raise
        except ValidationError as exc:
            raise InvalidArgumentsError.of(exc, self.id) from exc

    def _build_body(
        self,
        arguments: Mapping[str, Any] | RequestModel | None,
        params: Mapping[str, Any],
        extra_body: Mapping[str, Any] | None,
    ) -> bytes:
        body: dict[str, Any]
        if self.spec is None:
            if isinstance(arguments, BaseModel):
                raise InvalidArgumentTypeError.because(
                    "arguments", f"untyped call to {self.id!r} takes a mapping, not a model"
                )
            body = _merge(arguments or {}, params)
        else:
            model = self.spec.input_model
            if type(arguments) is not dict and isinstance(arguments, BaseModel):
                if not isinstance(arguments, model):
                    raise InvalidArgumentTypeError.because(
                        "arguments",
                        f"{self.id} takes {model.__name__}, not {type(arguments).__name__}",
                    )
                validated = (
                    model.model_validate(_merge(to_request_body(arguments), params))
                    if params
                    else arguments
                )
            else:
                validated = model.model_validate(_merge(arguments or {}, params))
            if not extra_body:
                return request_json(validated)
            body = to_request_body(validated)
        if extra_body:
            body.update(extra_body)
        return pydantic_core.to_json(body)

    def decode_output(self, response: httpx.Response, *, strict: bool = False) -> Any:
        """The endpoint's Output model (a dict when untyped) from a 2xx answer.

        An answer that does not match the Output model is still returned as that model (see
        :func:`decode_output`), unless ``strict``.
        """
        if self.spec is None:
            return decode_json(response)
        model = self.spec.output_model
        try:
            # The common case, without building what only a failure needs (the request id,
            # the source's name): an answer that does not validate is decoded again below.
            return model.model_validate_json(response.content)
        except ValidationError:
            pass
        return decode_output(
            model,
            response.content,
            source=f"the answer from {self.id}",
            strict=strict,
            status_code=response.status_code,
            request_id=response.headers.get(REQUEST_ID_HEADER),
            headers=response.headers,
            malformed=lambda: _malformed(response),
        )


def request_json(model: BaseModel) -> bytes:
    """The JSON body of a validated request: exactly ``pydantic_core.to_json`` of
    :func:`~falbind.models.base.to_request_body` (the fields set, by alias), serialised in one
    step instead of two (~3 µs a request less).

    The two differ only on a float field holding infinity or NaN: the two-step path writes
    ``Infinity``/``NaN`` (a float kept as it is by the JSON-mode dump), the one-step path
    ``null`` (pydantic's ``ser_json_inf_nan``). So a one-step body holding ``null`` anywhere
    is written the two-step way, keeping every body byte for byte as before (checked for a
    synthesised request of every bound endpoint by tests/test_request_bodies.py)."""
    data = model.__pydantic_serializer__.to_json(model, by_alias=True, exclude_unset=True)
    if b"null" in data:
        return pydantic_core.to_json(to_request_body(model))
    return data


def decode_output(
    model: type[BaseModel],
    content: Any,
    *,
    source: str,
    strict: bool,
    status_code: int,
    request_id: str | None,
    headers: Mapping[str, str] | None = None,
    malformed: Callable[[], FalDecodeError] | None = None,
) -> Any:
    """``content`` (raw JSON, or JSON already decoded) as ``model``: the one place every answer
    fal paid for is decoded (run, subscribe, handles, webhooks, ``images.generate``).

    Lenient, like openai-python: an answer that does not match is still returned as ``model``,
    built from what arrived (``schema_mismatch`` lists the problems) with an
    :class:`~falbind.OutputSchemaWarning`, because a paid result must not be lost to schema
    drift. ``strict`` raises :class:`~falbind.FalDecodeError` (with the body) instead.
    """
    try:
        if isinstance(content, bytes):
            return model.model_validate_json(content)
        return model.model_validate(content)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            if malformed is not None:
                raise malformed() from exc
            raise  # pragma: no cover - only bytes can be invalid JSON
        data = json.loads(content) if isinstance(content, bytes) else content
        if strict or not isinstance(data, Mapping):
            raise FalDecodeError(
                f"{source} does not match {model.__name__}: {exc}",
                status_code=status_code,
                request_id=request_id,
                body=data,
                headers=headers,
            ) from exc
        output, problems = validate_leniently(model, data)
    warnings.warn(
        OutputSchemaWarning(
            f"{source} does not match {model.__name__} "
            f"({len(problems)} problem(s): {'; '.join(problems[:5])}); "
            "the output was kept as it arrived: see its schema_mismatch"
            + (f" [request_id={request_id}]" if request_id else "")
        ),
        stacklevel=2,
    )
    return output


def _merge(arguments: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    if not params:
        return dict(arguments)
    both = sorted(set(arguments) & set(params))
    if both:
        raise InvalidArgumentTypeError.because(
            "arguments", f"parameters given both in arguments and as keywords: {', '.join(both)}"
        )
    return {**arguments, **params}


_RESOLVED: dict[str, Endpoint] = {}
"""Typed endpoints by the name they were asked for (an id, alias or Python name: the index is
fixed, so the names are finite; an unknown one raises and is not kept)."""


def resolve_endpoint(endpoint_id: str, *, untyped: bool = False) -> Endpoint:
    """The endpoint for ``endpoint_id`` (or an alias or Python name). An id the registry does not bind raises
    :class:`~falbind.UnknownEndpointError` with a did-you-mean, unless ``untyped`` is true."""
    if untyped:
        return Endpoint(ENDPOINTS.canonical_id(endpoint_id), None)
    endpoint = _RESOLVED.get(endpoint_id)
    if endpoint is None:
        spec = ENDPOINTS.resolve(endpoint_id)
        endpoint = _RESOLVED[endpoint_id] = Endpoint(spec.id, spec)
    return endpoint


def _malformed(response: httpx.Response) -> FalDecodeError:
    text = response.content.decode("utf-8", "replace")
    return FalDecodeError.from_response(
        f"malformed JSON in the {response.status_code} answer from "
        f"{response.request.method} {response.request.url.copy_with(query=None)}: {text[:200]!r}",
        response,
        text,
    )


def decode_json(response: httpx.Response) -> Any:
    """The JSON of a 2xx answer, or :class:`FalDecodeError`."""
    try:
        return json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _malformed(response) from exc


def decode_object(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 2xx answer, or :class:`FalDecodeError`."""
    data = decode_json(response)
    if not isinstance(data, dict):
        raise FalDecodeError.from_response(
            f"expected a JSON object from {response.request.url}, got {type(data).__name__}",
            response,
            data,
        )
    return data


@dataclass(frozen=True, slots=True)
class UploadTarget:
    """fal's answer to an upload initiation: where to PUT the bytes, and the file's URL."""

    upload_url: str
    """A pre-signed URL: the PUT needs no key."""
    file_url: str
    """Where the uploaded file is served; usable as any ``*_url`` input."""


def decode_upload_target(response: httpx.Response) -> UploadTarget:
    """The :class:`UploadTarget` of a 2xx initiate answer, or :class:`FalDecodeError`."""
    data = decode_object(response)
    upload_url, file_url = data.get("upload_url"), data.get("file_url")
    if not (isinstance(upload_url, str) and upload_url and isinstance(file_url, str) and file_url):
        raise FalDecodeError.from_response(
            "fal's upload initiate answer lacks a string upload_url and file_url", response, data
        )
    return UploadTarget(upload_url=upload_url, file_url=file_url)


@dataclass(frozen=True, slots=True)
class QueueURLs:
    """Where a queued request is watched, fetched and cancelled."""

    status: str
    response: str
    cancel: str

    @classmethod
    def rebuilt(cls, queue_url: str, endpoint_id: str, request_id: str) -> QueueURLs:
        """fal's URLs for a stored request id: under ``{owner}/{app}`` (the id's first two
        segments), as fal drops the endpoint's sub-path (``fal-ai/flux/dev`` →
        ``fal-ai/flux/requests/…``). Used only when fal's own URLs are not at hand."""
        app = "/".join(endpoint_id.split("/")[:2])
        base = f"{queue_url.rstrip('/')}/{app}/requests/{quote(request_id, safe='')}"
        return cls(status=f"{base}/status", response=base, cancel=f"{base}/cancel")

    @classmethod
    def from_submit(cls, data: Mapping[str, Any], fallback: QueueURLs) -> QueueURLs:
        """The URLs fal returned on submit, each falling back to the rebuilt one if missing."""

        def pick(key: str, default: str) -> str:
            value = data.get(key)
            return value if isinstance(value, str) and value else default

        return cls(
            status=pick("status_url", fallback.status),
            response=pick("response_url", fallback.response),
            cancel=pick("cancel_url", fallback.cancel),
        )


class SharedHeaders(httpx.Headers):
    """Headers built once and shared by many :class:`Call` objects: read-only, so no call can
    change another's. (A copy, ``httpx.Headers(shared)``, is an ordinary one.)"""

    def __setitem__(self, key: str, value: str) -> None:
        raise TypeError("shared headers are read-only: copy them with httpx.Headers(...)")

    def __delitem__(self, key: str) -> None:
        raise TypeError("shared headers are read-only: copy them with httpx.Headers(...)")

    def update(self, headers: Any = None) -> None:  # type: ignore[override]
        raise TypeError("shared headers are read-only: copy them with httpx.Headers(...)")


@dataclass(slots=True)
class Call:
    """One HTTP request as the clients send it (and resend it, when retrying is safe)."""

    method: str
    url: str
    headers: httpx.Headers
    """httpx's headers: their ``repr`` hides ``Authorization``."""
    content: bytes | None = None
    params: dict[str, str] | None = None
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    idempotent: bool = True
    deadline: float | None = None
    """A ``time.monotonic()`` past which no retry starts (a queued request's client deadline)."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What a client was configured with. ``repr`` never shows the key."""

    run_url: str = DEFAULT_RUN_URL
    queue_url: str = DEFAULT_QUEUE_URL
    storage_url: str = DEFAULT_STORAGE_URL
    auth: Secret | None = None
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    strict_outputs: bool = False
    """Raise :class:`~falbind.FalDecodeError` for an answer that does not match its Output
    model, instead of returning it with ``schema_mismatch`` and a warning."""
    trusted_origins: frozenset[str] = frozenset()
    """Origins (``scheme://host:port``) besides the queue URL's that fal's submit answer may
    send the client to (status, response and cancel URLs)."""
    key_required: bool = True
    """Whether a call to a non-loopback fal URL without a key fails before sending (false when
    the caller passed ``key=""``: they send none on purpose)."""
    _auth_headers: httpx.Headers = field(init=False, repr=False, compare=False)
    """The ``Authorization`` header, built once: the headers of a queue poll, a result and a
    cancel, and the start of every other request's headers (copied)."""
    _json_headers: httpx.Headers = field(init=False, repr=False, compare=False)
    """``_auth_headers`` with ``Content-Type: application/json``: a run's or a submit's
    headers when the call sets no header option."""
    _event_stream_headers: httpx.Headers = field(init=False, repr=False, compare=False)
    """``_auth_headers`` with ``Accept: text/event-stream``: a status stream's headers."""

    def __post_init__(self) -> None:
        auth = {} if self.auth is None else {"Authorization": f"Key {self.auth.reveal()}"}
        shared = {
            "_auth_headers": auth,
            "_json_headers": {**auth, "Content-Type": "application/json"},
            "_event_stream_headers": {**auth, "Accept": "text/event-stream"},
        }
        for name, headers in shared.items():
            object.__setattr__(self, name, SharedHeaders(headers))

    def queue_urls(self, response: httpx.Response, fallback: QueueURLs) -> QueueURLs:
        """The queue URLs of fal's submit answer (``fallback`` for missing ones), each checked
        to be on the queue URL's origin or a trusted one: the key is only sent there."""
        data = decode_object(response)
        urls = QueueURLs.from_submit(data, fallback)
        trusted = {origin(self.queue_url), *self.trusted_origins}
        for url in (urls.status, urls.response, urls.cancel):
            if origin(url) not in trusted:
                raise UntrustedURLError(
                    f"fal's submit answer points at {_loggable(url)}, which is not on the queue's "
                    f"origin ({', '.join(sorted(trusted))}); the key was not sent there. "
                    "If this origin is fal's, pass it in trusted_origins=",
                    url=_loggable(url),
                    expected=tuple(sorted(trusted)),
                    status_code=response.status_code,
                    request_id=response.headers.get(REQUEST_ID_HEADER),
                    body=data,
                )
        return urls

    def _keyed(self, call: Call) -> Call:
        """``call``, unless it goes to fal without a key: then :class:`MissingKeyError` (a
        loopback URL, such as the fake server's, needs none)."""
        # With a key configured every call carries it (all headers start from _auth_headers),
        # so the headers are searched only when there is none.
        if (
            self.auth is None
            and self.key_required
            and "authorization" not in call.headers
            and not is_loopback(call.url)
        ):
            raise MissingKeyError(
                f"no fal key for {call.method} {_loggable(call.url)}: pass key=, or set FAL_KEY "
                "(or FAL_KEY_ID and FAL_KEY_SECRET, or FAL_AI_API_KEY) in the environment"
            )
        return call

    def headers(
        self,
        *,
        start_timeout: float | None = None,
        hint: str | None = None,
        priority: Priority | None = None,
        object_lifecycle_seconds: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        authenticated: bool = True,
    ) -> httpx.Headers:
        """Request headers: auth, fal's options, then the caller's ``extra_headers``.

        ``object_lifecycle_seconds`` asks fal to keep the output files that long
        (``X-Fal-Object-Lifecycle-Preference``); it must be a whole number of seconds > 0.
        """
        # httpx.Headers, not a dict: its repr hides Authorization, so neither a Call's repr nor
        # a traceback's frame locals show the key.
        headers = httpx.Headers(self._auth_headers if authenticated else None)
        if start_timeout is not None:
            if start_timeout <= 1:
                raise InvalidArgumentsError.because(
                    "start_timeout", "start_timeout must be more than 1 second", start_timeout
                )
            headers["X-Fal-Request-Timeout"] = _seconds(start_timeout)
        if hint is not None:
            headers["X-Fal-Runner-Hint"] = hint
        if priority is not None:
            if priority not in ("normal", "low"):
                raise InvalidArgumentsError.because(
                    "priority", f"priority must be 'normal' or 'low', not {priority!r}", priority
                )
            headers["X-Fal-Queue-Priority"] = priority
        if object_lifecycle_seconds is not None:
            headers["X-Fal-Object-Lifecycle-Preference"] = _lifecycle(object_lifecycle_seconds)
        if extra_headers:
            headers.update(checked_headers(extra_headers))
        return headers

    def option_headers(
        self,
        *,
        start_timeout: float | None = None,
        hint: str | None = None,
        priority: Priority | None = None,
        object_lifecycle_seconds: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> httpx.Headers | None:
        """:meth:`headers` for a call that sets one of these options; ``None`` for a call that
        sets none, which then sends the config's shared headers (see :meth:`run_call`)."""
        if (
            start_timeout is None
            and hint is None
            and priority is None
            and object_lifecycle_seconds is None
            and not extra_headers
        ):
            return None
        return self.headers(
            start_timeout=start_timeout,
            hint=hint,
            priority=priority,
            object_lifecycle_seconds=object_lifecycle_seconds,
            extra_headers=extra_headers,
        )

    def run_call(
        self, endpoint: Endpoint, body: bytes, headers: httpx.Headers | None, timeout: Timeout
    ) -> Call:
        """``POST {run_url}/{id}``; ``headers`` from :meth:`headers` (given a Content-Type
        here), or ``None`` for the shared ones of a call with no header option."""
        if headers is None:
            headers = self._json_headers
        else:
            headers["Content-Type"] = "application/json"
        return self._keyed(
            Call(
                "POST",
                f"{self.run_url.rstrip('/')}/{endpoint.id}",
                headers,
                content=body,
                timeout=as_timeout(timeout, self.timeout),
                idempotent=False,
            )
        )

    def submit_call(
        self,
        endpoint: Endpoint,
        body: bytes,
        headers: httpx.Headers | None,
        webhook_url: str | None,
    ) -> Call:
        """``POST {queue_url}/{id}``; ``headers`` as for :meth:`run_call`."""
        if headers is None:
            headers = self._json_headers
        else:
            headers["Content-Type"] = "application/json"
        return self._keyed(
            Call(
                "POST",
                f"{self.queue_url.rstrip('/')}/{endpoint.id}",
                headers,
                content=body,
                params={"fal_webhook": webhook_url} if webhook_url else None,
                timeout=self.timeout,
                idempotent=False,
            )
        )

    def status_call(
        self, urls: QueueURLs, *, with_logs: bool, read_timeout: float | None = None
    ) -> Call:
        """``GET {status_url}``; ``read_timeout`` (a client deadline's remaining time) caps
        the configured timeout."""
        timeout, deadline = self.timeout, None
        if read_timeout is not None:
            timeout = _capped(timeout, read_timeout)
            deadline = time.monotonic() + read_timeout
        return self._keyed(
            Call(
                "GET",
                urls.status,
                self._auth_headers,
                params={"logs": "1" if with_logs else "0"},
                timeout=timeout,
                deadline=deadline,
            )
        )

    def stream_call(self, urls: QueueURLs, *, with_logs: bool, read_timeout: float | None) -> Call:
        base = self.timeout
        timeout = httpx.Timeout(
            connect=base.connect, read=read_timeout, write=base.write, pool=base.pool
        )
        return self._keyed(
            Call(
                "GET",
                f"{urls.status}/stream",
                self._event_stream_headers,
                params={"logs": "1" if with_logs else "0"},
                timeout=timeout,
            )
        )

    def result_call(self, urls: QueueURLs) -> Call:
        return self._keyed(Call("GET", urls.response, self._auth_headers, timeout=self.timeout))

    def cancel_call(self, urls: QueueURLs, *, timeout: float | None = None) -> Call:
        # Cancelling twice is harmless, so a cancel is as safe to retry as a GET.
        limit = self.timeout if timeout is None else _capped(self.timeout, timeout)
        return self._keyed(Call("PUT", urls.cancel, self._auth_headers, timeout=limit))

    def upload_initiate_call(self, upload: Upload) -> Call:
        """``POST {storage_url}/storage/upload/initiate``: a POST, so retried only when it
        never reached fal (or on 429), like any POST."""
        body = {"content_type": upload.content_type, "file_name": upload.file_name}
        return self._keyed(
            Call(
                "POST",
                f"{self.storage_url.rstrip('/')}/storage/upload/initiate",
                self._json_headers,
                content=json.dumps(body).encode(),
                params={"storage_type": "fal-cdn-v3"},
                timeout=self.timeout,
                idempotent=False,
            )
        )

    def upload_put_call(self, upload: Upload, target: UploadTarget) -> Call:
        # No Authorization header: the URL is pre-signed. PUTting the same bytes again is
        # harmless, so it is retried like a GET.
        return Call(
            "PUT",
            target.upload_url,
            httpx.Headers({"Content-Type": upload.content_type}),
            content=upload.data,
            timeout=self.timeout,
        )

    def download_call(self, url: str, timeout: Timeout) -> Call:
        # No Authorization header: file URLs point at CDNs and other hosts.
        return Call("GET", url, httpx.Headers(), timeout=as_timeout(timeout, self.timeout))


Timeout = httpx.Timeout | float | None

_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_MAX_URL_LENGTH: Final = 65536
"""httpx refuses longer URLs."""


_HEAD: Final = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*")
"""A URL's ``scheme://authority``, as httpx's parser splits it (RFC 3986)."""


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url`` (the port made explicit), for origin checks.

    Parsed by httpx, as the request itself is. Only the ``scheme://authority`` head decides the
    origin, so the head is what is parsed (once per head: a queue's status, response and cancel
    URLs share it), unless the URL is one httpx refuses as a whole (too long, or holding an
    ASCII control character): that one is parsed whole, to raise as before."""
    head = _HEAD.match(url)
    if head is None or len(url) > _MAX_URL_LENGTH or not (url.isascii() and url.isprintable()):
        return _origin(url)
    return _origin(head.group())


@functools.lru_cache(maxsize=256)
def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    port = parsed.port or _DEFAULT_PORTS.get(parsed.scheme)
    host = parsed.host.lower()
    return f"{parsed.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def normalized_origins(origins: Iterable[str]) -> frozenset[str]:
    """Each of ``origins`` (a URL or ``scheme://host[:port]``) as :func:`origin` writes it."""
    return frozenset(origin(value) for value in origins)


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (127.0.0.1, ::1, localhost)."""
    return httpx.URL(url).host.lower() in _LOOPBACK_HOSTS


def checked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The caller's ``extra_headers``, refused before sending (never retried, never echoed)
    when a name or value is not a string of printable ASCII: httpx would fail on every try."""
    for name, value in headers.items():
        if not (isinstance(name, str) and isinstance(value, str)):
            raise InvalidArgumentTypeError.because(
                "extra_headers", f"header {name!r}: names and values must be strings"
            )
        if not _printable(name) or not name or ":" in name:
            raise InvalidArgumentsError.because(
                "extra_headers", f"header name {name!r} is not a valid HTTP header name"
            )
        if not _printable(value):
            raise InvalidArgumentsError.because(
                "extra_headers",
                f"the value of header {name!r} holds a control or non-ASCII character",
            )
    return dict(headers)


def _printable(text: str) -> bool:
    return all(" " <= char <= "~" for char in text)


def _capped(timeout: httpx.Timeout, seconds: float) -> httpx.Timeout:
    """``timeout`` with each phase at most ``seconds`` (at least a millisecond)."""
    seconds = max(seconds, 0.001)

    def cap(value: float | None) -> float:
        return seconds if value is None else min(value, seconds)

    return httpx.Timeout(
        connect=cap(timeout.connect),
        read=cap(timeout.read),
        write=cap(timeout.write),
        pool=cap(timeout.pool),
    )


def as_timeout(value: Timeout, default: httpx.Timeout) -> httpx.Timeout:
    """``value`` as an ``httpx.Timeout`` (a float sets every phase), else ``default``."""
    if value is None:
        return default
    if isinstance(value, httpx.Timeout):
        return value
    return httpx.Timeout(value)


def _lifecycle(seconds: int) -> str:
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise InvalidArgumentTypeError.because(
            "object_lifecycle_seconds",
            f"object_lifecycle_seconds must be an int, not {type(seconds).__name__}",
            seconds,
        )
    if seconds <= 0:
        raise InvalidArgumentsError.because(
            "object_lifecycle_seconds",
            f"object_lifecycle_seconds must be > 0, not {seconds}",
            seconds,
        )
    return json.dumps({"expiration_duration_seconds": seconds})


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class Attempts:
    """The retry bookkeeping of one call: decides, after each try, to return, wait or raise."""

    __slots__ = ("_call", "_policy", "_started", "retries")

    def __init__(self, policy: RetryPolicy, call: Call) -> None:
        self._policy = policy
        self._call = call
        self._started = time.monotonic()
        self.retries = 0

    def remaining(self) -> float | None:
        """Seconds left of the policy's ``total_timeout``, if it has one."""
        total = self._policy.total_timeout
        return None if total is None else total - (time.monotonic() - self._started)

    def after_error(self, error: httpx.TransportError) -> float:
        """The wait before retrying after a transport error; raises when not retrying."""
        delay = retry_delay(
            self._policy,
            idempotent=self._call.idempotent,
            attempt=self.retries,
            elapsed=time.monotonic() - self._started,
            error=error,
        )
        if delay is None or self._past_deadline(delay):
            raise transport_error(error, self._call) from scrub_tracebacks(error)
        self._note_retry(delay, type(error).__name__)
        return delay

    def after_response(self, response: httpx.Response) -> float | None:
        """``None`` for a 2xx answer, else the wait before retrying; raises when not retrying."""
        if response.is_success:
            return None
        delay = retry_delay(
            self._policy,
            idempotent=self._call.idempotent,
            attempt=self.retries,
            elapsed=time.monotonic() - self._started,
            response=response,
        )
        if delay is None or self._past_deadline(delay):
            raise error_from_response(response)
        self._note_retry(delay, str(response.status_code))
        return delay

    def _past_deadline(self, delay: float) -> bool:
        """Whether a retry after ``delay`` would start past the call's own deadline."""
        deadline = self._call.deadline
        return deadline is not None and time.monotonic() + delay >= deadline

    def _note_retry(self, delay: float, reason: str) -> None:
        self.retries += 1
        log.debug(
            "retrying %s %s after %s in %.3fs (retry %d of %d)",
            self._call.method,
            _loggable(self._call.url),
            reason,
            delay,
            self.retries,
            self._policy.max_retries,
        )


def _loggable(url: str) -> str:
    return url.split("?", 1)[0]


def transport_error(error: httpx.TransportError, call: Call) -> FalError:
    """The falbind error for a transport failure: says what happened and names the call
    ("connection reset by peer on POST https://…"), never its headers."""
    where = f"{call.method} {_loggable(call.url)}"
    cause = error.__cause__
    # The class that says most: httpx's own, or aiohttp's where the aiohttp transport wrapped
    # it (that transport reports a reset as "ConnectTimeout").
    kind = type(
        cause if cause is not None and type(cause).__module__.startswith("aiohttp") else error
    )
    message = f"{describe_transport_error(error)} on {where} ({kind.__name__})"
    if is_timeout(error):
        return FalTimeoutError(message)
    return FalConnectionError(message)
