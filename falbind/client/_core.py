"""What the sync and async clients share: endpoint resolution, request building, decoding and
the retry bookkeeping. Nothing here does I/O; the clients only send what this builds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import quote

import httpx
import pydantic_core
from pydantic import BaseModel, ValidationError

from falbind.models.base import RequestModel, to_request_body
from falbind.models.bindings import ENDPOINTS
from falbind.models.index import EndpointSpec

from .auth import Secret
from .errors import (
    REQUEST_ID_HEADER,
    FalConnectionError,
    FalDecodeError,
    FalError,
    FalTimeoutError,
    error_from_response,
)
from .files import Upload
from .retry import RetryPolicy, is_timeout, retry_delay

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
    "UploadTarget",
    "decode_upload_target",
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
        """The validated JSON body: only the fields the caller set, then ``extra_body``."""
        body: dict[str, Any]
        if self.spec is None:
            if isinstance(arguments, BaseModel):
                raise TypeError(f"untyped call to {self.id!r} takes a mapping, not a model")
            body = _merge(arguments or {}, params)
        else:
            model = self.spec.input_model
            if isinstance(arguments, BaseModel):
                if not isinstance(arguments, model):
                    raise TypeError(
                        f"{self.id} takes {model.__name__}, not {type(arguments).__name__}"
                    )
                validated = (
                    model.model_validate(_merge(to_request_body(arguments), params))
                    if params
                    else arguments
                )
                body = to_request_body(validated)
            else:
                body = to_request_body(model.model_validate(_merge(arguments or {}, params)))
        if extra_body:
            body.update(extra_body)
        return pydantic_core.to_json(body)

    def decode_output(self, response: httpx.Response) -> Any:
        """The endpoint's Output model (a dict when untyped) from a 2xx answer."""
        if self.spec is None:
            return decode_json(response)
        model = self.spec.output_model
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            request_id = response.headers.get(REQUEST_ID_HEADER)
            if any(error["type"] == "json_invalid" for error in exc.errors()):
                raise _malformed(response) from exc
            raise FalDecodeError(
                f"the answer from {self.id} does not match {model.__name__}: {exc}",
                status_code=response.status_code,
                request_id=request_id,
            ) from exc


def _merge(arguments: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    both = sorted(set(arguments) & set(params))
    if both:
        raise TypeError(f"parameters given both in arguments and as keywords: {', '.join(both)}")
    return {**arguments, **params}


def resolve_endpoint(endpoint_id: str, *, untyped: bool = False) -> Endpoint:
    """The endpoint for ``endpoint_id`` (or an alias or Python name). An id the registry does not bind raises
    :class:`~falbind.UnknownEndpointError` with a did-you-mean, unless ``untyped`` is true."""
    if untyped:
        return Endpoint(ENDPOINTS.canonical_id(endpoint_id), None)
    spec = ENDPOINTS.resolve(endpoint_id)
    return Endpoint(spec.id, spec)


def _malformed(response: httpx.Response) -> FalDecodeError:
    excerpt = response.text[:200]
    return FalDecodeError(
        f"malformed JSON in the {response.status_code} answer from "
        f"{response.request.method} {response.request.url.copy_with(query=None)}: {excerpt!r}",
        status_code=response.status_code,
        request_id=response.headers.get(REQUEST_ID_HEADER),
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
        raise FalDecodeError(
            f"expected a JSON object from {response.request.url}, got {type(data).__name__}",
            status_code=response.status_code,
            request_id=response.headers.get(REQUEST_ID_HEADER),
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
        raise FalDecodeError(
            "fal's upload initiate answer lacks a string upload_url and file_url",
            status_code=response.status_code,
            request_id=response.headers.get(REQUEST_ID_HEADER),
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


@dataclass(slots=True)
class Call:
    """One HTTP request as the clients send it (and resend it, when retrying is safe)."""

    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None = None
    params: dict[str, str] | None = None
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    idempotent: bool = True


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What a client was configured with. ``repr`` never shows the key."""

    run_url: str = DEFAULT_RUN_URL
    queue_url: str = DEFAULT_QUEUE_URL
    storage_url: str = DEFAULT_STORAGE_URL
    auth: Secret | None = None
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def headers(
        self,
        *,
        start_timeout: float | None = None,
        hint: str | None = None,
        priority: Priority | None = None,
        object_lifecycle_seconds: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        authenticated: bool = True,
    ) -> dict[str, str]:
        """Request headers: auth, fal's options, then the caller's ``extra_headers``.

        ``object_lifecycle_seconds`` asks fal to keep the output files that long
        (``X-Fal-Object-Lifecycle-Preference``); it must be a whole number of seconds > 0.
        """
        headers: dict[str, str] = {}
        if authenticated and self.auth is not None:
            headers["Authorization"] = f"Key {self.auth.reveal()}"
        if start_timeout is not None:
            if start_timeout <= 1:
                raise ValueError("start_timeout must be more than 1 second")
            headers["X-Fal-Request-Timeout"] = _seconds(start_timeout)
        if hint is not None:
            headers["X-Fal-Runner-Hint"] = hint
        if priority is not None:
            if priority not in ("normal", "low"):
                raise ValueError(f"priority must be 'normal' or 'low', not {priority!r}")
            headers["X-Fal-Queue-Priority"] = priority
        if object_lifecycle_seconds is not None:
            headers["X-Fal-Object-Lifecycle-Preference"] = _lifecycle(object_lifecycle_seconds)
        if extra_headers:
            headers.update(extra_headers)
        return headers

    def run_call(
        self, endpoint: Endpoint, body: bytes, headers: dict[str, str], timeout: Timeout
    ) -> Call:
        headers["Content-Type"] = "application/json"
        return Call(
            "POST",
            f"{self.run_url.rstrip('/')}/{endpoint.id}",
            headers,
            content=body,
            timeout=as_timeout(timeout, self.timeout),
            idempotent=False,
        )

    def submit_call(
        self, endpoint: Endpoint, body: bytes, headers: dict[str, str], webhook_url: str | None
    ) -> Call:
        headers["Content-Type"] = "application/json"
        return Call(
            "POST",
            f"{self.queue_url.rstrip('/')}/{endpoint.id}",
            headers,
            content=body,
            params={"fal_webhook": webhook_url} if webhook_url else None,
            timeout=self.timeout,
            idempotent=False,
        )

    def status_call(self, urls: QueueURLs, *, with_logs: bool) -> Call:
        return Call(
            "GET",
            urls.status,
            self.headers(),
            params={"logs": "1" if with_logs else "0"},
            timeout=self.timeout,
        )

    def stream_call(self, urls: QueueURLs, *, with_logs: bool, read_timeout: float | None) -> Call:
        base = self.timeout
        timeout = httpx.Timeout(
            connect=base.connect, read=read_timeout, write=base.write, pool=base.pool
        )
        headers = self.headers()
        headers["Accept"] = "text/event-stream"
        return Call(
            "GET",
            f"{urls.status}/stream",
            headers,
            params={"logs": "1" if with_logs else "0"},
            timeout=timeout,
        )

    def result_call(self, urls: QueueURLs) -> Call:
        return Call("GET", urls.response, self.headers(), timeout=self.timeout)

    def cancel_call(self, urls: QueueURLs) -> Call:
        # Cancelling twice is harmless, so a cancel is as safe to retry as a GET.
        return Call("PUT", urls.cancel, self.headers(), timeout=self.timeout)

    def upload_initiate_call(self, upload: Upload) -> Call:
        """``POST {storage_url}/storage/upload/initiate``: a POST, so retried only when it
        never reached fal (or on 429), like any POST."""
        headers = self.headers()
        headers["Content-Type"] = "application/json"
        body = {"content_type": upload.content_type, "file_name": upload.file_name}
        return Call(
            "POST",
            f"{self.storage_url.rstrip('/')}/storage/upload/initiate",
            headers,
            content=json.dumps(body).encode(),
            params={"storage_type": "fal-cdn-v3"},
            timeout=self.timeout,
            idempotent=False,
        )

    def upload_put_call(self, upload: Upload, target: UploadTarget) -> Call:
        # No Authorization header: the URL is pre-signed. PUTting the same bytes again is
        # harmless, so it is retried like a GET.
        return Call(
            "PUT",
            target.upload_url,
            {"Content-Type": upload.content_type},
            content=upload.data,
            timeout=self.timeout,
        )

    def download_call(self, url: str, timeout: Timeout) -> Call:
        # No Authorization header: file URLs point at CDNs and other hosts.
        return Call("GET", url, {}, timeout=as_timeout(timeout, self.timeout))


Timeout = httpx.Timeout | float | None


def as_timeout(value: Timeout, default: httpx.Timeout) -> httpx.Timeout:
    """``value`` as an ``httpx.Timeout`` (a float sets every phase), else ``default``."""
    if value is None:
        return default
    if isinstance(value, httpx.Timeout):
        return value
    return httpx.Timeout(value)


def _lifecycle(seconds: int) -> str:
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise TypeError(f"object_lifecycle_seconds must be an int, not {type(seconds).__name__}")
    if seconds <= 0:
        raise ValueError(f"object_lifecycle_seconds must be > 0, not {seconds}")
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
        if delay is None:
            raise transport_error(error, self._call) from error
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
        if delay is None:
            raise error_from_response(response)
        self._note_retry(delay, str(response.status_code))
        return delay

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
    """The falbind error for a transport failure: names the call, never its headers."""
    where = f"{call.method} {_loggable(call.url)}"
    if is_timeout(error):
        return FalTimeoutError(f"{type(error).__name__} on {where}")
    return FalConnectionError(f"{type(error).__name__} on {where}: {error}")
