"""fal's webhook signatures: ED25519 over request id, user id, timestamp and sha256(body),
checked against a JWKS passed in or fetched (once, then cached) over a real loopback socket."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import falbind
from falbind.client import webhooks

BODY = json.dumps({"request_id": "req-1", "status": "OK", "payload": {"seed": 7}}).encode()
NOW = 1_800_000_000


def _jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "test"}


def _headers(key: Ed25519PrivateKey, body: bytes, timestamp: int = NOW) -> dict[str, str]:
    """The headers fal would send with ``body``, signed with ``key``."""
    request_id, user_id = "req-1", "user-42"
    digest = hashlib.sha256(body).hexdigest()
    message = "\n".join((request_id, user_id, str(timestamp), digest)).encode()
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": str(timestamp),
        "X-Fal-Webhook-Signature": key.sign(message).hex(),
    }


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    webhooks._JWKS_CACHE.clear()
    yield
    webhooks._JWKS_CACHE.clear()


class JwksServer:
    """A loopback server that serves a JWKS document and counts the requests it got."""

    def __init__(self, document: Any, status: int = 200) -> None:
        self.document, self.status, self.requests = document, status, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = json.dumps(outer.document).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def jwks_server(key: Ed25519PrivateKey) -> Iterator[JwksServer]:
    server = JwksServer({"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}, _jwk(key)]})
    yield server
    server.close()


def _refused(check: str, **kwargs: Any) -> falbind.WebhookVerificationError:
    with pytest.raises(falbind.WebhookVerificationError) as info:
        falbind.verify_webhook(**kwargs)
    assert info.value.check == check
    return info.value


def test_a_signed_delivery_verifies_offline_then_parses(key: Ed25519PrivateKey) -> None:
    jwks = {"keys": [_jwk(Ed25519PrivateKey.generate()), _jwk(key)]}  # any key may match
    headers = {k.lower(): v for k, v in _headers(key, BODY).items()}  # case-insensitive
    falbind.verify_webhook(headers, BODY, jwks=jwks, now=NOW + 10)  # raises if refused
    falbind.verify_webhook(headers, BODY.decode(), jwks=jwks, now=NOW - 10)  # text body too
    assert falbind.parse_webhook(BODY, "x/y", untyped=True).output == {"seed": 7}


def test_tampering_a_wrong_key_an_old_timestamp_and_a_missing_header_are_refused(
    key: Ed25519PrivateKey,
) -> None:
    jwks = {"keys": [_jwk(key)]}
    headers = _headers(key, BODY)
    tampered = BODY.replace(b'"seed": 7', b'"seed": 8')
    err = _refused("signature", headers=headers, raw_body=tampered, jwks=jwks, now=NOW)
    assert "bad signature" in str(err)
    wrong_key = {"keys": [_jwk(Ed25519PrivateKey.generate())]}
    _refused("signature", headers=headers, raw_body=BODY, jwks=wrong_key, now=NOW)
    other_user = {**headers, "X-Fal-Webhook-User-Id": "user-43"}
    _refused("signature", headers=other_user, raw_body=BODY, jwks=jwks, now=NOW)
    err = _refused("timestamp", headers=headers, raw_body=BODY, jwks=jwks, now=NOW + 301)
    assert "301 s old" in str(err)
    _refused("timestamp", headers=headers, raw_body=BODY, jwks=jwks, now=NOW - 301)
    falbind.verify_webhook(headers, BODY, jwks=jwks, now=NOW + 3000, tolerance=3600)
    not_a_time = {**headers, "X-Fal-Webhook-Timestamp": "soon"}
    _refused("timestamp", headers=not_a_time, raw_body=BODY, jwks=jwks, now=NOW)
    not_hex = {**headers, "X-Fal-Webhook-Signature": "zz" * 64}
    _refused("signature", headers=not_hex, raw_body=BODY, jwks=jwks, now=NOW)
    for name in headers:
        partial = {k: v for k, v in headers.items() if k != name}
        err = _refused("missing_header", headers=partial, raw_body=BODY, jwks=jwks, now=NOW)
        assert str(err) == f"missing header: {name}"
    # Messages never echo header values (the signature, ids) or the body.
    for value in headers.values():
        assert value not in str(err)


def test_a_jwks_without_ed25519_keys_is_refused(key: Ed25519PrivateKey) -> None:
    rsa_only = {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}, {"kty": "OKP", "x": "!!"}]}
    err = _refused("jwks", headers=_headers(key, BODY), raw_body=BODY, jwks=rsa_only, now=NOW)
    assert "no Ed25519 key" in str(err)


def test_the_jwks_is_fetched_once_over_loopback_and_cached(
    key: Ed25519PrivateKey, jwks_server: JwksServer
) -> None:
    now = time.time()
    headers = _headers(key, BODY, int(now))

    def verify(_: int) -> None:
        falbind.verify_webhook(headers, BODY, jwks_url=jwks_server.url)

    with ThreadPoolExecutor(8) as pool:  # concurrent first use: still one fetch
        list(pool.map(verify, range(32)))
    assert jwks_server.requests == 1
    tampered = BODY + b" "
    # A recent cache is not refetched for a bad signature (forgeries cannot force fetches).
    _refused("signature", headers=headers, raw_body=tampered, jwks_url=jwks_server.url)
    assert jwks_server.requests == 1


async def test_async_verification_shares_the_cache(
    key: Ed25519PrivateKey, jwks_server: JwksServer
) -> None:
    headers = _headers(key, BODY, int(time.time()))
    for _ in range(3):
        await falbind.averify_webhook(headers, BODY, jwks_url=jwks_server.url)
    falbind.verify_webhook(headers, BODY, jwks_url=jwks_server.url)
    assert jwks_server.requests == 1
    with pytest.raises(falbind.WebhookVerificationError, match="bad signature"):
        await falbind.averify_webhook(headers, b"{}", jwks_url=jwks_server.url)


def test_a_rotated_key_is_found_by_refetching_a_stale_cache(
    key: Ed25519PrivateKey, jwks_server: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = _headers(key, BODY, int(time.time()))
    falbind.verify_webhook(headers, BODY, jwks_url=jwks_server.url)
    rotated = Ed25519PrivateKey.generate()
    jwks_server.document = {"keys": [_jwk(rotated)]}
    fetched_at = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: fetched_at + webhooks.JWKS_RECHECK_AFTER + 1)
    falbind.verify_webhook(
        _headers(rotated, BODY, int(time.time())), BODY, jwks_url=jwks_server.url
    )
    assert jwks_server.requests == 2


def test_a_failed_fetch_says_so_without_the_password(key: Ed25519PrivateKey) -> None:
    server = JwksServer({"error": "down"}, status=503)
    headers = _headers(key, BODY, int(time.time()))
    try:
        url = server.url.replace("http://", "http://admin:hunter2@")
        err = _refused("jwks", headers=headers, raw_body=BODY, jwks_url=url)
        assert "JWKS fetch failed: HTTP 503" in str(err) and "hunter2" not in str(err)
        server.document = {"keys": []}
        server.status = 200
        err = _refused("jwks", headers=headers, raw_body=BODY, jwks_url=url)
        assert "no Ed25519 key" in str(err) and "hunter2" not in str(err)
    finally:
        server.close()
    err = _refused("jwks", headers=headers, raw_body=BODY, jwks_url=server.url)  # closed port
    assert "ConnectError" in str(err)
    _refused("jwks", headers=headers, raw_body=BODY, jwks_url="file:///etc/passwd")


def test_the_error_is_a_fal_error_that_pickles() -> None:
    err = falbind.WebhookVerificationError("missing header: X", "missing_header")
    copy = pickle.loads(pickle.dumps(err))
    assert isinstance(copy, falbind.WebhookVerificationError)
    assert isinstance(copy, falbind.FalError)
    assert (str(copy), copy.check) == ("missing header: X", "missing_header")
