"""Who is calling: the master key, or a virtual key read from the database on every request."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from starlette.requests import Request

from .errors import GatewayError
from .store import KeyRecord, Store, hash_key

__all__ = ["Caller", "authenticate", "require_master"]

MASTER_KEY_NAME = "master key"


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller: the master key (``record is None``) or a virtual key."""

    record: KeyRecord | None

    @property
    def is_master(self) -> bool:
        return self.record is None

    @property
    def token(self) -> str | None:
        return self.record.token if self.record else None

    @property
    def key_name(self) -> str:
        return self.record.key_name if self.record else MASTER_KEY_NAME

    @property
    def alias(self) -> str:
        """How logs and metrics name the caller: the key's alias, else its display name."""
        return self.record.display_name if self.record else MASTER_KEY_NAME

    def may_use(self, model_name: str) -> bool:
        """Whether the key's model list allows ``model_name`` (empty list: every model)."""
        return self.record is None or self.record.allows(model_name)


def bearer_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _invalid(message: str) -> GatewayError:
    return GatewayError(401, message, code="invalid_api_key")


async def authenticate(request: Request, master_key: str, store: Store) -> Caller:
    """The caller of ``request``; a 401 in OpenAI's shape for a missing, wrong, revoked or
    expired key (the key itself is never echoed)."""
    key = bearer_key(request)
    if key is None:
        raise _invalid("no API key: send 'Authorization: Bearer <key>'")
    if hmac.compare_digest(key.encode(), master_key.encode()):
        return Caller(None)
    record = await store.get_key(hash_key(key))
    if record is None:
        raise _invalid("invalid API key")
    if record.revoked_at is not None:
        raise _invalid(f"API key {record.key_name} has been revoked")
    if record.expires_at is not None and record.expires_at <= time.time():
        raise _invalid(f"API key {record.key_name} has expired")
    return Caller(record)


async def require_master(request: Request, master_key: str, store: Store) -> Caller:
    caller = await authenticate(request, master_key, store)
    if not caller.is_master:
        raise GatewayError(
            403,
            "this route needs the master key",
            type="permission_error",
            code="master_key_required",
        )
    return caller
