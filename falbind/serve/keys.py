"""Virtual keys over HTTP, with LiteLLM Proxy's routes and fields.

``POST /key/generate`` (``models``, ``max_budget``, ``rpm_limit``, ``duration``, ``metadata``,
``key_alias``) → the key, shown this once; ``GET /key/info?key=`` → ``{key, info}``;
``GET /key/list`` → the live keys; ``POST /key/delete`` (``keys`` and/or ``key_aliases``) →
``{deleted_keys}``. All need the master key, except that a virtual key may ask ``/key/info``
about itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .auth import authenticate, bearer_key, require_master
from .config import GatewayConfig
from .errors import GatewayError
from .store import LogWriter, Store, hash_key

__all__ = ["KeySpec", "key_routes", "parse_duration", "parse_key_spec"]

_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w|mo|y)?\s*$")
_UNIT_SECONDS: Final = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "mo": 30 * 86400,
    "y": 365 * 86400,
}
GENERATE_FIELDS: Final = ("models", "max_budget", "rpm_limit", "duration", "metadata", "key_alias")

KeySpec = dict[str, Any]


def parse_duration(value: Any) -> float | None:
    """LiteLLM's ``duration``: ``"30s"``, ``"10m"``, ``"1h"``, ``"30d"``, ``"2w"``, ``"1mo"``,
    ``"1y"`` or seconds; ``None`` for no expiry."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = _DURATION.match(str(value))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"duration {value!r} is not like '30s', '10m', '1h', '30d' or '1mo'")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]


def parse_key_spec(body: Mapping[str, Any]) -> KeySpec:
    """The keyword arguments of :meth:`Store.create_key` from a ``/key/generate`` body;
    ``ValueError`` (naming the field) for anything wrong or unknown."""
    import difflib

    for name in body:
        if name not in GENERATE_FIELDS:
            close = difflib.get_close_matches(name, GENERATE_FIELDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise _FieldError(
                name, f"unknown field {name!r}{hint} (known: {', '.join(GENERATE_FIELDS)})"
            )
    models = body.get("models") or []
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise _FieldError("models", "models must be a list of model names")
    max_budget = body.get("max_budget")
    if max_budget is not None and (
        isinstance(max_budget, bool) or not isinstance(max_budget, int | float) or max_budget < 0
    ):
        raise _FieldError("max_budget", "max_budget must be a number >= 0")
    rpm_limit = body.get("rpm_limit")
    if rpm_limit is not None and (
        isinstance(rpm_limit, bool) or not isinstance(rpm_limit, int) or rpm_limit < 1
    ):
        raise _FieldError("rpm_limit", "rpm_limit must be an integer >= 1")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _FieldError("metadata", "metadata must be an object")
    alias = body.get("key_alias")
    if alias is not None and not isinstance(alias, str):
        raise _FieldError("key_alias", "key_alias must be a string")
    try:
        duration = parse_duration(body.get("duration"))
    except ValueError as exc:
        raise _FieldError("duration", str(exc)) from None
    return {
        "models": models,
        "max_budget": float(max_budget) if max_budget is not None else None,
        "rpm_limit": rpm_limit,
        "duration_seconds": duration,
        "metadata": metadata,
        "key_alias": alias,
    }


class _FieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


async def _body(request: Request) -> Mapping[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GatewayError(400, "the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, Mapping):
        raise GatewayError(400, "the request body must be a JSON object", code="invalid_json")
    return body


class KeysHost(Protocol):
    """What the key routes need of the app's :class:`~.app.Gateway` (a protocol, so this module
    does not import the app that mounts it)."""

    config: GatewayConfig
    store: Store
    log_writer: LogWriter


def key_routes(
    gateway: KeysHost,
) -> list[tuple[str, Callable[[Request], Awaitable[Response]], str]]:
    """The key-management routes of ``gateway``: (path, handler, method)."""
    master_key = gateway.config.master_key
    store = gateway.store

    async def generate(request: Request) -> Response:
        await require_master(request, master_key, store)
        body = await _body(request)
        try:
            spec = parse_key_spec(body)
        except _FieldError as exc:
            raise GatewayError(400, str(exc), code="invalid_value", param=exc.field) from None
        unknown = [m for m in spec["models"] if "*" not in m and gateway.config.entry(m) is None]
        if unknown:
            raise GatewayError(
                400,
                f"models not served by this gateway: {', '.join(unknown)} "
                f"(served: {', '.join(gateway.config.public_names())})",
                code="invalid_value",
                param="models",
            )
        key, record = await store.create_key(**spec)
        return JSONResponse({"key": key, **record.info()})

    async def info(request: Request) -> Response:
        caller = await authenticate(request, master_key, store)
        await gateway.log_writer.flush()  # settle this process's spend first
        reference = request.query_params.get("key")
        if reference is None:
            if caller.record is None:
                raise GatewayError(400, "pass ?key=<key or token>", param="key")
            token = caller.record.token
        else:
            tokens = await store.find_tokens(reference)
            token = tokens[0] if tokens else hash_key(reference)
            own = bearer_key(request)
            if not caller.is_master and (own is None or hash_key(own) != token):
                raise GatewayError(
                    403,
                    "only the master key may read other keys",
                    type="permission_error",
                    code="master_key_required",
                )
        record = await store.get_key(token)
        if record is None:
            raise GatewayError(404, "no such key", code="key_not_found", param="key")
        return JSONResponse({"key": record.token, "info": record.info()})

    async def list_keys(request: Request) -> Response:
        await require_master(request, master_key, store)
        await gateway.log_writer.flush()
        revoked = request.query_params.get("include_revoked", "").lower() in ("1", "true")
        records = await store.list_keys(include_revoked=revoked)
        return JSONResponse({"keys": [r.info() for r in records]})

    async def delete(request: Request) -> Response:
        await require_master(request, master_key, store)
        body = await _body(request)
        references = [*(body.get("keys") or []), *(body.get("key_aliases") or [])]
        if not references or not all(isinstance(r, str) for r in references):
            raise GatewayError(
                400,
                'pass {"keys": [...]} (keys or tokens) or {"key_aliases": [...]}',
                param="keys",
            )
        tokens, missing = await store.tokens_for(references)
        if missing:
            raise GatewayError(
                404, f"no such key: {', '.join(missing)}", code="key_not_found", param="keys"
            )
        await store.revoke(tokens)
        return JSONResponse({"deleted_keys": tokens})

    return [
        ("/key/generate", generate, "POST"),
        ("/key/info", info, "GET"),
        ("/key/list", list_keys, "GET"),
        ("/key/delete", delete, "POST"),
    ]
