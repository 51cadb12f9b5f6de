"""fal's webhook deliveries: a typed payload model and a parser to the endpoint's Output model.

fal POSTs ``{request_id, gateway_request_id, status: "OK" | "ERROR", payload, error?,
payload_error?}`` to the ``webhook_url`` of a queued request, and retries delivery, so a
receiver should be idempotent on ``request_id``.

:func:`verify_webhook` (and :func:`averify_webhook` for async apps) checks fal's signature of a
delivery before :func:`parse_webhook` decodes it: fal signs ``request id, user id, timestamp,
sha256(raw body)`` (one per line) with an ED25519 key published in its JWKS, and sends the
parts in the ``X-Fal-Webhook-*`` headers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict

from ._core import decode_output, resolve_endpoint
from .errors import FalError, FalRequestFailedError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "FAL_JWKS_URL",
    "WebhookPayload",
    "WebhookResult",
    "WebhookVerificationError",
    "averify_webhook",
    "parse_webhook",
    "verify_webhook",
]

OutputT = TypeVar("OutputT")


class WebhookPayload(BaseModel):
    """The JSON body of a fal webhook delivery (unknown fields are kept)."""

    model_config = ConfigDict(extra="allow")

    request_id: str
    gateway_request_id: str | None = None
    status: Literal["OK", "ERROR"]
    payload: Any = None
    """The output (status OK) or fal's error body (status ERROR)."""
    error: str | None = None
    payload_error: str | None = None
    """Set when fal could not include the output; fetch it with ``get_handle(...).result()``."""


@dataclass(frozen=True, slots=True)
class WebhookResult(Generic[OutputT]):
    """A decoded delivery: ``output`` (the endpoint's Output model) or ``error``."""

    request_id: str
    gateway_request_id: str | None
    output: OutputT | None
    error: str | None
    payload_error: str | None
    raw: WebhookPayload

    @property
    def ok(self) -> bool:
        """True when the request succeeded and its output came with the delivery."""
        return self.output is not None

    def output_or_raise(self) -> OutputT:
        """The output; :class:`~falbind.FalRequestFailedError` when the request failed or the
        output was left out (``payload_error``)."""
        if self.output is not None:
            return self.output
        error = self.error or self.payload_error or "no output in the webhook delivery"
        raise FalRequestFailedError(
            f"request {self.request_id} failed: {error}", request_id=self.request_id, error=error
        )


def parse_webhook(
    body: bytes | str | Mapping[str, Any],
    endpoint_id: str,
    *,
    untyped: bool = False,
    strict_outputs: bool = False,
) -> WebhookResult[Any]:
    """Decode a webhook body (raw bytes/text or parsed JSON) sent for ``endpoint_id``.

    ``ValueError`` (a pydantic ``ValidationError``) when the body is not fal's webhook shape.
    An OK payload that does not match the Output model is still decoded as that model, with
    ``schema_mismatch`` and an :class:`~falbind.OutputSchemaWarning` (as every client call);
    ``strict_outputs=True`` raises :class:`~falbind.FalDecodeError` (with the payload) instead.
    ``untyped=True`` keeps the output a dict, for ids the registry does not bind.
    """
    endpoint = resolve_endpoint(endpoint_id, untyped=untyped)
    data = json.loads(body) if isinstance(body, bytes | str) else dict(body)
    delivery = WebhookPayload.model_validate(data)
    output: Any = None
    if delivery.status == "OK" and delivery.payload is not None and delivery.payload_error is None:
        if endpoint.spec is None:
            output = delivery.payload
        else:
            output = decode_output(
                endpoint.spec.output_model,
                delivery.payload,
                source=f"the webhook payload for {endpoint.id}",
                strict=strict_outputs,
                status_code=200,
                request_id=delivery.request_id,
            )
    error = delivery.error
    if delivery.status == "ERROR" and error is None:
        error = _error_text(delivery.payload)
    return WebhookResult(
        request_id=delivery.request_id,
        gateway_request_id=delivery.gateway_request_id,
        output=output,
        error=error,
        payload_error=delivery.payload_error,
        raw=delivery,
    )


def _error_text(payload: Any) -> str:
    detail = payload.get("detail") if isinstance(payload, Mapping) else payload
    return detail if isinstance(detail, str) else json.dumps(detail)


# --------------------------------------------------------------------------- signatures

FAL_JWKS_URL: Final = "https://rest.alpha.fal.ai/.well-known/jwks.json"
"""fal's JSON Web Key Set: the ED25519 public keys that sign webhook deliveries."""

REQUEST_ID_HEADER: Final = "X-Fal-Webhook-Request-Id"
USER_ID_HEADER: Final = "X-Fal-Webhook-User-Id"
TIMESTAMP_HEADER: Final = "X-Fal-Webhook-Timestamp"
SIGNATURE_HEADER: Final = "X-Fal-Webhook-Signature"

JWKS_TTL: Final = 24 * 3600.0
"""How long a fetched JWKS is used (fal: cache it for no longer than 24 hours)."""
JWKS_RECHECK_AFTER: Final = 300.0
"""A signature no cached key verifies refetches the JWKS (fal rotated its keys) at most this
often, so forged deliveries cannot make every request fetch."""
JWKS_TIMEOUT: Final = 10.0
JWKS_MAX_BYTES: Final = 256 * 1024

Check = Literal["missing_header", "timestamp", "signature", "jwks"]


class WebhookVerificationError(FalError):
    """A webhook delivery failed signature verification; ``check`` names the failing step:
    ``missing_header``, ``timestamp``, ``signature`` or ``jwks`` (the JWKS could not be
    fetched or holds no usable key). Messages name headers and URLs, never header values."""

    def __init__(self, message: str, check: Check) -> None:
        super().__init__(message)
        self.check: Check = check

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.check))


def verify_webhook(
    headers: Mapping[str, str],
    raw_body: bytes | str,
    *,
    jwks: Mapping[str, Any] | None = None,
    jwks_url: str = FAL_JWKS_URL,
    tolerance: float = 300,
    now: float | None = None,
) -> None:
    """Check that fal sent this webhook delivery; raise :class:`WebhookVerificationError` if not.

    ``headers`` is the request's headers (any mapping; names are matched case-insensitively) and
    ``raw_body`` the body exactly as received (verify before parsing: re-serialised JSON does
    not verify). The ``X-Fal-Webhook-Timestamp`` must be within ``tolerance`` seconds of
    ``now`` (default: the clock). The signature must verify with an ED25519 key of fal's JWKS:
    ``jwks`` (a ``{"keys": [...]}`` document, for offline use) or the one at ``jwks_url``,
    fetched on first use and cached for :data:`JWKS_TTL` seconds (thread-safe). In async code
    use :func:`averify_webhook`, which fetches off the event loop.
    """
    message, signature = _signed_message(headers, raw_body, tolerance, now)
    if jwks is not None:
        _verify_or_raise(_keys_from_jwks(jwks, "the JWKS given"), message, signature)
        return
    keys, age = _JWKS_CACHE.keys(jwks_url)
    if _verifies(keys, message, signature):
        return
    if age >= JWKS_RECHECK_AFTER:
        keys, _ = _JWKS_CACHE.keys(jwks_url, refresh=True)
    _verify_or_raise(keys, message, signature)


async def averify_webhook(
    headers: Mapping[str, str],
    raw_body: bytes | str,
    *,
    jwks: Mapping[str, Any] | None = None,
    jwks_url: str = FAL_JWKS_URL,
    tolerance: float = 300,
    now: float | None = None,
) -> None:
    """:func:`verify_webhook` for async apps: a JWKS fetch runs in a worker thread, so the
    event loop never waits on the network. Same cache, same errors."""
    message, signature = _signed_message(headers, raw_body, tolerance, now)
    if jwks is not None:
        _verify_or_raise(_keys_from_jwks(jwks, "the JWKS given"), message, signature)
        return
    cached = _JWKS_CACHE.fresh(jwks_url)
    keys, age = (
        cached if cached is not None else await asyncio.to_thread(_JWKS_CACHE.keys, jwks_url)
    )
    if _verifies(keys, message, signature):
        return
    if age >= JWKS_RECHECK_AFTER:
        keys, _ = await asyncio.to_thread(_JWKS_CACHE.keys, jwks_url, True)
    _verify_or_raise(keys, message, signature)


def _header(headers: Mapping[str, Any], name: str) -> str:
    """The header's value, matched case-insensitively (plain dicts included)."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if str(k).lower() == lowered), None)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str) or not value.strip():
        raise WebhookVerificationError(f"missing header: {name}", "missing_header")
    return value.strip()


def _signed_message(
    headers: Mapping[str, Any], raw_body: bytes | str, tolerance: float, now: float | None
) -> tuple[bytes, bytes]:
    """The bytes fal signed and the signature, after the header and timestamp checks."""
    request_id = _header(headers, REQUEST_ID_HEADER)
    user_id = _header(headers, USER_ID_HEADER)
    timestamp = _header(headers, TIMESTAMP_HEADER)
    signature_hex = _header(headers, SIGNATURE_HEADER)
    if not timestamp.isascii() or not timestamp.isdigit():
        raise WebhookVerificationError(
            f"bad timestamp: {TIMESTAMP_HEADER} is not a unix time in seconds", "timestamp"
        )
    skew = (time.time() if now is None else now) - int(timestamp)
    if abs(skew) > tolerance:
        when = "old" if skew > 0 else "in the future"
        raise WebhookVerificationError(
            f"bad timestamp: the delivery is {abs(skew):.0f} s {when} "
            f"(tolerance {tolerance:g} s); refused as a possible replay",
            "timestamp",
        )
    try:
        signature = bytes.fromhex(signature_hex)
    except ValueError:
        signature = b""
    if len(signature) != 64:
        raise WebhookVerificationError(
            f"bad signature: {SIGNATURE_HEADER} is not 64 hex-encoded bytes", "signature"
        )
    body = raw_body.encode() if isinstance(raw_body, str) else bytes(raw_body)
    digest = hashlib.sha256(body).hexdigest()
    message = "\n".join((request_id, user_id, timestamp, digest)).encode()
    return message, signature


def _verifies(keys: Sequence[Ed25519PublicKey], message: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


def _verify_or_raise(keys: Sequence[Ed25519PublicKey], message: bytes, signature: bytes) -> None:
    if not _verifies(keys, message, signature):
        raise WebhookVerificationError(
            f"bad signature: no key of fal's JWKS ({len(keys)} key(s)) verifies this delivery "
            "(the body or headers were altered, or it was not sent by fal)",
            "signature",
        )


def _keys_from_jwks(jwks: Any, source: str) -> tuple[Ed25519PublicKey, ...]:
    """The ED25519 keys (``kty`` OKP, ``crv`` Ed25519, base64url ``x``) of a JWKS document;
    other keys are skipped. Raises when none is usable."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
    keys: list[Ed25519PublicKey] = []
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, Mapping):
            continue
        x = entry.get("x")
        if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519" or not isinstance(x, str):
            continue
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (binascii.Error, ValueError):
            continue
    if not keys:
        raise WebhookVerificationError(f"JWKS unusable: {source} holds no Ed25519 key", "jwks")
    return tuple(keys)


def _safe_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, for messages."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class _JwksCache:
    """Fetched key sets by URL, each used for :data:`JWKS_TTL` seconds. One fetch at a time
    per URL: threads that find the cache stale wait for the fetch in flight, not start theirs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fetch_locks: dict[str, threading.Lock] = {}
        self._entries: dict[str, tuple[float, tuple[Ed25519PublicKey, ...]]] = {}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def fresh(self, url: str) -> tuple[tuple[Ed25519PublicKey, ...], float] | None:
        """The cached keys and their age, if fetched less than :data:`JWKS_TTL` ago."""
        with self._lock:
            entry = self._entries.get(url)
        if entry is None:
            return None
        age = time.monotonic() - entry[0]
        return (entry[1], age) if age < JWKS_TTL else None

    def keys(self, url: str, refresh: bool = False) -> tuple[tuple[Ed25519PublicKey, ...], float]:
        """The keys at ``url`` and their age: cached, or fetched now (``refresh`` forces a
        fetch unless another thread fetched within :data:`JWKS_RECHECK_AFTER`)."""
        cached = self.fresh(url)
        if cached is not None and (not refresh or cached[1] < JWKS_RECHECK_AFTER):
            return cached
        with self._lock:
            fetch_lock = self._fetch_locks.setdefault(url, threading.Lock())
        with fetch_lock:
            cached = self.fresh(url)
            if cached is not None and (not refresh or cached[1] < JWKS_RECHECK_AFTER):
                return cached  # fetched by another thread while this one waited
            keys = _keys_from_jwks(_fetch_jwks(url), f"the JWKS at {_safe_url(url)}")
            with self._lock:
                self._entries[url] = (time.monotonic(), keys)
            return keys, 0.0


_JWKS_CACHE = _JwksCache()


def _fetch_jwks(url: str) -> Any:
    """GET the JWKS document (no redirects, a timeout, at most :data:`JWKS_MAX_BYTES`)."""
    where = _safe_url(url)
    try:
        scheme = urllib.parse.urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in ("https", "http"):
        raise WebhookVerificationError(f"JWKS fetch failed: {where} is not an http(s) URL", "jwks")
    try:
        with httpx.stream("GET", url, timeout=JWKS_TIMEOUT, follow_redirects=False) as response:
            if response.status_code != 200:
                raise WebhookVerificationError(
                    f"JWKS fetch failed: HTTP {response.status_code} from {where}", "jwks"
                )
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > JWKS_MAX_BYTES:
                    raise WebhookVerificationError(
                        f"JWKS fetch failed: {where} sent more than {JWKS_MAX_BYTES} bytes", "jwks"
                    )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise WebhookVerificationError(
            f"JWKS fetch failed: {type(exc).__name__} talking to {where}", "jwks"
        ) from None
    try:
        return json.loads(body)
    except ValueError:
        raise WebhookVerificationError(f"JWKS fetch failed: {where} sent no JSON", "jwks") from None
