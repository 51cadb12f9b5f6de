"""Virtual keys over HTTP, with LiteLLM Proxy's routes and fields.

The request fields are those of LiteLLM 1.110.2's ``GenerateKeyRequest`` and
``UpdateKeyRequest`` (``litellm/types/proxy/management_endpoints/key_requests.py``), so a
LiteLLM client or script works unchanged; every route needs the master key, except that a
virtual key may ask ``/key/info`` about itself.

- ``POST /key/generate`` → ``{"key": "sk-fb-…", "token", "token_id", …}``: the key, shown
  this once, and its record (:meth:`~.store.KeyRecord.info`).
- ``POST /key/update`` ``{"key": <key, token, display name or alias>, <fields>}`` →
  ``{"key": <token>, …}``. A merge patch, as in LiteLLM: a field left out keeps its value, an
  explicit ``null`` clears it (no budget, no limit, no expiry, every model, no alias); without
  ``key``, ``key_alias`` names the key to change. ``duration`` restarts the key's life from now
  (``null`` or ``"-1"``: never expires); ``budget_duration`` starts a new budget period now.
- ``GET /key/info?key=`` → ``{key, info}``.
- ``GET /key/list`` → ``{"keys": [record, …], "total_count", "current_page", "total_pages"}``
  with LiteLLM's ``page`` and ``size`` (1-100; without either, every key on one page, as
  before), its filters ``user_id``, ``team_id``, ``key_alias``, ``key_hash``, ``search``,
  ``status`` (``active``, ``expired``, ``revoked``/``deleted``), ``expires`` and its
  ``sort_by``/``sort_order``; plus ``include_revoked``. The keys are full records (LiteLLM's
  ``return_full_object=true``), never the keys themselves.
- ``POST /key/delete`` (``keys`` and/or ``key_aliases``) → ``{deleted_keys}``.

What each field of LiteLLM's requests does here:

- **Applied**: ``models``, ``max_budget``, ``spend`` (``/key/update``; at generation only 0),
  ``rpm_limit`` (a sliding minute, shared by replicas), ``max_parallel_requests`` (requests in
  flight), ``duration`` (the key's expiry), ``budget_duration`` (the spend returns to zero every
  period: ``"30s"``, ``"30m"``, ``"30h"``, ``"30d"``, ``"2w"``, ``"1mo"`` (30 days), or
  ``hourly``/``daily``/``weekly``/``monthly``), ``metadata``, ``key_alias`` (unique among
  live keys), ``user_id`` and ``team_id`` (written on each request's log row, so spend can be
  read per user and team). ``tpm_limit`` is stored and shown, but limits nothing: an image
  request has no tokens.
- **Accepted and ignored, whatever their value** (:data:`IGNORED_FIELDS`), because ignoring
  them neither loosens a limit nor loses a record: settings about tokens (``tpd_limit``,
  ``model_tpm_limit``, ``tpm_limit_type``, ``default_estimated_output_tokens[_per_model]``),
  prompt caching (``allowed_cache_controls``, ``enable_prompt_caching``), MCP servers
  (``mcp_rpm_limit``) and guardrails (``disable_global_guardrails``), none of which exist
  for images here; ``soft_budget`` and ``send_invite_email`` (alerts and e-mails LiteLLM
  sends); ``rpm_limit_type`` and ``throttle_on_budget_exceeded`` (the limits here are
  always strict: a request over them is refused, never let through).
- **Every other field** is accepted only unset (``null``, ``false`` or LiteLLM's empty
  default, ``key_type`` ``"default"`` or ``"llm_api"``), so a client sending LiteLLM's whole
  default request still works; any other value is refused with a 400 naming it: ignoring
  ``model_max_budget``, ``budget_limits``, ``allowed_routes``, ``guardrails``, ``blocked``
  and the like would hand out a key with fewer limits than asked for.
- An unknown field is refused with a did-you-mean.

Edge values are refused (400 in OpenAI's shape, ``param`` naming the field) before anything
is stored, so that no stored value can break a later read: budgets through
:func:`~.money.to_micros` (no NaN, infinity, negative or amount over a billion), integers
within a 32-bit column, durations up to :data:`MAX_DURATION_SECONDS`, model names and texts
bounded and storable (no NUL, no lone surrogate), metadata as strict JSON up to
:data:`MAX_METADATA_BYTES`, a body up to :data:`MAX_BODY_BYTES`.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .auth import authenticate, bearer_key, require_master
from .config import GatewayConfig
from .durations import MAX_DURATION_SECONDS, parse_duration, shown as _shown
from .errors import GatewayError
from .money import to_micros
from .store import DuplicateAliasError, KeyRecord, LogWriter, Store, hash_key

__all__ = [
    "GENERATE_FIELDS",
    "IGNORED_FIELDS",
    "MAX_BODY_BYTES",
    "MAX_DURATION_SECONDS",
    "MAX_METADATA_BYTES",
    "UPDATE_FIELDS",
    "KeyFieldError",
    "KeySpec",
    "KeyUpdate",
    "key_routes",
    "live_keys",
    "owner_filters",
    "parse_duration",
    "parse_key_spec",
    "parse_key_update",
    "unknown_models",
]

_REQUEST_BASE: Final = (
    "key_alias", "duration", "models", "spend", "max_budget", "user_id", "team_id", "agent_id",
    "max_parallel_requests", "metadata", "tpm_limit", "rpm_limit", "budget_duration",
    "budget_limits", "allowed_cache_controls", "config", "permissions", "model_max_budget",
    "budget_fallbacks", "model_rpm_limit", "model_tpm_limit", "mcp_rpm_limit", "tag_rpm_limit",
    "guardrails", "policies", "prompts", "blocked", "aliases", "object_permission",
)  # fmt: skip
"""LiteLLM's ``GenerateRequestBase``."""
_KEY_REQUEST_BASE: Final = (
    "key", "tpd_limit", "default_estimated_output_tokens",
    "default_estimated_output_tokens_per_model", "budget_id", "end_user_budget_id", "tags",
    "disable_global_guardrails", "enable_prompt_caching", "throttle_on_budget_exceeded",
    "enforced_params", "allowed_routes", "allowed_passthrough_routes",
    "denied_passthrough_routes", "allowed_vector_store_indexes", "rpm_limit_type",
    "tpm_limit_type", "router_settings", "access_group_ids",
)  # fmt: skip
"""LiteLLM's ``KeyRequestBase`` (adds to ``GenerateRequestBase``)."""
_GENERATE_ONLY: Final = (
    "soft_budget", "send_invite_email", "key_type", "auto_rotate", "rotation_interval",
    "organization_id", "project_id",
)  # fmt: skip
_UPDATE_ONLY: Final = (
    "soft_budget", "temp_budget_increase", "temp_budget_expiry", "auto_rotate",
    "rotation_interval", "organization_id", "project_id",
)  # fmt: skip
GENERATE_FIELDS: Final = tuple(sorted({*_REQUEST_BASE, *_KEY_REQUEST_BASE, *_GENERATE_ONLY}))
"""Every field of LiteLLM's ``GenerateKeyRequest``."""
UPDATE_FIELDS: Final = tuple(sorted({*_REQUEST_BASE, *_KEY_REQUEST_BASE, *_UPDATE_ONLY}))
"""Every field of LiteLLM's ``UpdateKeyRequest``."""
_IGNORED: Final = (
    "tpd_limit", "model_tpm_limit", "tpm_limit_type", "default_estimated_output_tokens",
    "default_estimated_output_tokens_per_model", "allowed_cache_controls",
    "enable_prompt_caching", "mcp_rpm_limit", "disable_global_guardrails", "soft_budget",
    "send_invite_email", "rpm_limit_type", "throttle_on_budget_exceeded",
)  # fmt: skip
IGNORED_FIELDS: Final = frozenset(_IGNORED)
"""Fields accepted with any value and ignored (see the module docstring for why each is
harmless)."""
_APPLIED: Final = (
    "models", "max_budget", "spend", "rpm_limit", "max_parallel_requests", "tpm_limit",
    "duration", "budget_duration", "metadata", "key_alias", "user_id", "team_id",
)  # fmt: skip
_UNSET_KEY_TYPES: Final = (None, "default", "llm_api")
"""``key_type`` values that give a key what a key here can do: call the model routes."""

MAX_INT32: Final = 2**31 - 1
"""Limits are 32-bit integer columns: a larger value fails the insert on PostgreSQL."""
MAX_TEXT: Final = 200
"""``key_alias``, ``user_id``, ``team_id``: the size of their columns."""
MAX_MODEL_NAME: Final = 300
MAX_MODELS: Final = 256
MAX_METADATA_BYTES: Final = 16 * 1024
"""Metadata is read back with every key (every request, every listing): kept small."""
MAX_BODY_BYTES: Final = 256 * 1024
MAX_PAGE_SIZE: Final = 100
DEFAULT_PAGE_SIZE: Final = 10
"""LiteLLM's ``/key/list`` page size: 10 by default, at most 100."""


KeySpec = dict[str, Any]
"""The keyword arguments of :meth:`Store.create_key`."""


class KeyFieldError(ValueError):
    """A field of a key request that cannot be accepted; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class KeyUpdate:
    """A ``/key/update``: which key (a key, token, display name or alias) and the columns to
    change (the arguments of :meth:`Store.update_key`)."""

    reference: str
    values: dict[str, Any]


def parse_key_spec(body: Mapping[str, Any], *, now: float | None = None) -> KeySpec:
    """The keyword arguments of :meth:`Store.create_key` for a ``/key/generate`` body (LiteLLM's
    ``GenerateKeyRequest``); :class:`KeyFieldError` for an unknown field, a field this gateway
    cannot honour, or a value it cannot store."""
    _check_names(body, GENERATE_FIELDS, skip=())
    stamp = time.time() if now is None else now
    spend = _money(body, "spend")
    if spend:
        raise KeyFieldError("spend", "a new key starts with spend 0 (set it with /key/update)")
    budget_duration, budget_reset_at = _budget_period(body, stamp)
    return {
        "models": _models(body),
        "max_budget": _budget_value(body),
        "rpm_limit": _integer(body, "rpm_limit", 1),
        "duration_seconds": _duration(body),
        "metadata": _metadata(body),
        "key_alias": _text(body, "key_alias"),
        "user_id": _text(body, "user_id"),
        "team_id": _text(body, "team_id"),
        "budget_duration": budget_duration,
        "budget_reset_at": budget_reset_at,
        "max_parallel_requests": _integer(body, "max_parallel_requests", 1),
        "tpm_limit": _integer(body, "tpm_limit", 0),
    }


def parse_key_update(body: Mapping[str, Any], *, now: float | None = None) -> KeyUpdate:
    """The key and the column changes of a ``/key/update`` body (LiteLLM's
    ``UpdateKeyRequest``; see the module docstring); :class:`KeyFieldError` as for
    :func:`parse_key_spec`."""
    reference = body.get("key")
    names_key = reference is not None
    if reference is None:
        reference = body.get("key_alias")
    if not isinstance(reference, str) or not reference.strip():
        raise KeyFieldError(
            "key", "pass key (the key, its token or its alias) or key_alias: the key to update"
        )
    _check_text("key", reference, MAX_MODEL_NAME)
    _check_names(body, UPDATE_FIELDS, skip=("key",) if names_key else ("key", "key_alias"))
    stamp = time.time() if now is None else now
    values: dict[str, Any] = {}
    if "models" in body:
        values["models"] = _models(body)
    if "max_budget" in body:
        values["max_budget_micros"] = _money(body, "max_budget")
    if "spend" in body:
        values["spend_micros"] = _money(body, "spend") or 0
    for name, minimum in (("rpm_limit", 1), ("max_parallel_requests", 1), ("tpm_limit", 0)):
        if name in body:
            values[name] = _integer(body, name, minimum)
    if "duration" in body:
        seconds = None if body["duration"] in ("-1", -1) else _duration(body)
        values["expires_at"] = stamp + seconds if seconds is not None else None
    if "budget_duration" in body:
        values["budget_duration"], values["budget_reset_at"] = _budget_period(body, stamp)
    if "metadata" in body:
        values["metadata"] = _metadata(body)
    for name in ("user_id", "team_id", *(("key_alias",) if names_key else ())):
        if name in body:
            values[name] = _text(body, name)
    return KeyUpdate(reference.strip(), values)


def unknown_models(config: GatewayConfig, models: Sequence[str]) -> list[str]:
    """The names in ``models`` that ``config`` does not serve (wildcard patterns pass)."""
    return [m for m in models if "*" not in m and config.entry(m) is None]


async def live_keys(store: Store, reference: str) -> list[KeyRecord]:
    """The live (not revoked) keys that ``reference`` names: a key, its token, its display name
    or its alias (an alias is unique among live keys, a display name nearly so)."""
    found = []
    for token in await store.find_tokens(reference):
        record = await store.get_key(token)
        if record is not None and record.revoked_at is None:
            found.append(record)
    return found


def owner_filters(params: Mapping[str, str]) -> dict[str, str]:
    """``user_id`` and ``team_id`` from a query string (``/spend/logs``), as keyword arguments
    for :meth:`Store.spend_totals` and :meth:`Store.logs`; a 400 :class:`GatewayError` for a
    value no key can have (too long, a NUL or a lone surrogate)."""
    found: dict[str, str] = {}
    for name in ("user_id", "team_id"):
        value = params.get(name)
        if not value:
            continue
        try:
            _check_text(name, value, MAX_TEXT)
        except KeyFieldError as exc:
            raise GatewayError(400, str(exc), code="invalid_value", param=name) from None
        found[name] = value
    return found


# -- field checks ------------------------------------------------------------------------------


def _check_names(body: Mapping[str, Any], known: Sequence[str], *, skip: Sequence[str]) -> None:
    for name in body:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyFieldError(
                str(name)[:100],
                f"unknown field {_shown(name)}{hint} (this gateway applies: {', '.join(_APPLIED)})",
            )
        if name in skip or name in _APPLIED or name in IGNORED_FIELDS:
            continue
        value = body[name]
        unset = (
            value in _UNSET_KEY_TYPES
            if name == "key_type"
            else value is None or value is False or value in ("", [], {})
        )
        if not unset:
            raise KeyFieldError(
                name,
                f"{name} is not supported by this gateway (ignoring it would give a key other "
                f"limits than asked for): leave it out or send null (applied: "
                f"{', '.join(_APPLIED)})",
            )


def _storable(value: str) -> bool:
    """Whether a database column can hold ``value``: no NUL (PostgreSQL refuses it in text)
    and valid UTF-8 (JSON may carry a lone surrogate, which cannot be encoded)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise KeyFieldError(name, f"{name} is longer than {limit} characters")
    if not _storable(value):
        raise KeyFieldError(name, f"{name} holds a NUL or a lone surrogate")


def _text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":  # LiteLLM: an empty id is no id
        return None
    if not isinstance(value, str):
        raise KeyFieldError(name, f"{name} must be a string")
    _check_text(name, value, MAX_TEXT)
    return value


def _integer(body: Mapping[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_INT32:
        raise KeyFieldError(name, f"{name} must be an integer from {minimum} to {MAX_INT32}")
    return value


def _money(body: Mapping[str, Any], name: str) -> int | None:
    """An amount in micro-units (a number, or its text as LiteLLM's pydantic also takes)."""
    value = body.get(name)
    if value is None or value == "":  # LiteLLM: an empty max_budget is none
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise KeyFieldError(name, f"{name} must be a number")
    try:
        return to_micros(value)
    except ValueError:  # NaN, infinity, negative, over a billion, not a number
        raise KeyFieldError(
            name, f"{name} must be a finite number from 0 to 1,000,000,000 (got {_shown(value)})"
        ) from None


def _budget_value(body: Mapping[str, Any]) -> Any:
    """``max_budget`` for :meth:`Store.create_key`, checked here (it converts it again)."""
    if _money(body, "max_budget") is None:
        return None
    return body["max_budget"]


def _duration(body: Mapping[str, Any]) -> float | None:
    try:
        return parse_duration(body.get("duration"))
    except ValueError as exc:
        raise KeyFieldError("duration", str(exc)) from None


def _budget_period(body: Mapping[str, Any], now: float) -> tuple[str | None, float | None]:
    """``budget_duration`` (stripped) and the end of its first period."""
    value = body.get("budget_duration")
    if value is None or value == "":
        return None, None
    if not isinstance(value, str):
        raise KeyFieldError("budget_duration", "budget_duration must be text such as '30d'")
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise KeyFieldError("budget_duration", "budget_" + str(exc)) from None
    assert seconds is not None
    return value.strip(), now + seconds


def _models(body: Mapping[str, Any]) -> list[str]:
    models = body.get("models")
    if models is None:
        return []
    if (
        not isinstance(models, list)
        or len(models) > MAX_MODELS
        or not all(isinstance(m, str) and m.strip() for m in models)
    ):
        raise KeyFieldError(
            "models", f"models must be a list of up to {MAX_MODELS} model names (strings)"
        )
    for model in models:
        _check_text("models", model, MAX_MODEL_NAME)
    return list(models)


def _metadata(body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise KeyFieldError("metadata", "metadata must be an object")
    try:
        encoded = json.dumps(metadata, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError):
        raise KeyFieldError(
            "metadata", "metadata must be plain JSON (no NaN, infinity or lone surrogate)"
        ) from None
    if len(encoded) > MAX_METADATA_BYTES:
        raise KeyFieldError("metadata", f"metadata is larger than {MAX_METADATA_BYTES} bytes")
    return metadata


# -- /key/list -------------------------------------------------------------------------------

_LIST_SORT_COLUMNS: Final = (
    "created_at", "spend", "max_budget", "token", "key_alias", "expires", "budget_reset_at",
    "tpm_limit", "rpm_limit",
)  # fmt: skip
"""LiteLLM's ``sort_by`` columns that a key has here."""
_LIST_FILTERS: Final = ("user_id", "team_id", "key_alias", "key_hash", "search")
_LIST_IGNORED: Final = ("return_full_object", "include_team_keys", "include_created_by_keys")
"""Harmless here: the records are always full, and the master key sees every key."""
_LIST_PARAMS: Final = (
    "page", "size", "sort_by", "sort_order", "status", "expires", "include_revoked", "expand",
    "substring_matching", *_LIST_FILTERS, *_LIST_IGNORED,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Listing:
    page: int
    size: int | None
    filters: dict[str, str]
    status: str | None
    expires: str | None
    include_revoked: bool
    sort_by: str
    descending: bool


def _flag(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name, "false").lower()
    if value not in ("1", "0", "true", "false"):
        raise GatewayError(400, f"{name} must be true or false", code="invalid_value", param=name)
    return value in ("1", "true")


def _listing(params: Mapping[str, str]) -> _Listing:
    """``/key/list``'s query: LiteLLM's parameters, checked (400 for a wrong one)."""
    for name in params:
        if name not in _LIST_PARAMS:
            close = difflib.get_close_matches(name, _LIST_PARAMS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise GatewayError(
                400,
                f"unknown parameter {_shown(name)}{hint}",
                code="unknown_parameter",
                param=name,
            )
    numbers: dict[str, int] = {}
    for name, low, high in (("page", 1, MAX_INT32), ("size", 1, MAX_PAGE_SIZE)):
        text = params.get(name)
        if text is None:
            continue
        if not (text.isascii() and text.isdigit() and len(text) <= 10 and low <= int(text) <= high):
            raise GatewayError(400, f"{name} must be an integer from {low} to {high}", param=name)
        numbers[name] = int(text)
    paged = "page" in numbers or "size" in numbers
    sort_by = params.get("sort_by") or "created_at"
    if sort_by not in _LIST_SORT_COLUMNS:
        raise GatewayError(
            400, f"sort_by must be one of {', '.join(_LIST_SORT_COLUMNS)}", param="sort_by"
        )
    # Today's order (oldest first) unless asked; LiteLLM's default is desc once sort_by is given.
    order = params.get("sort_order") or ("desc" if "sort_by" in params else "asc")
    if order.lower() not in ("asc", "desc"):
        raise GatewayError(400, "sort_order must be asc or desc", param="sort_order")
    status = params.get("status")
    if status is not None and status not in ("active", "expired", "revoked", "deleted"):
        raise GatewayError(
            400, "status must be active, expired, revoked or deleted", param="status"
        )
    expires = params.get("expires")
    if expires is not None and expires not in ("active", "expired"):
        raise GatewayError(400, "expires must be active or expired", param="expires")
    if _flag(params, "substring_matching"):
        raise GatewayError(
            400, "substring_matching is not supported (use search)", param="substring_matching"
        )
    if params.get("expand"):
        raise GatewayError(400, "expand is not supported (no users here)", param="expand")
    for name in _LIST_IGNORED:
        _flag(params, name)
    return _Listing(
        page=numbers.get("page", 1),
        size=numbers.get("size", DEFAULT_PAGE_SIZE) if paged else None,
        filters={name: params[name] for name in _LIST_FILTERS if params.get(name)},
        status=status,
        expires=expires,
        include_revoked=_flag(params, "include_revoked") or status in ("revoked", "deleted"),
        sort_by=sort_by,
        descending=order.lower() == "desc",
    )


def _matches(record: KeyRecord, listing: _Listing, now: float) -> bool:
    filters = listing.filters
    if "user_id" in filters and record.user_id != filters["user_id"]:
        return False
    if "team_id" in filters and record.team_id != filters["team_id"]:
        return False
    if "key_alias" in filters and record.key_alias != filters["key_alias"]:
        return False
    if "key_hash" in filters and record.token != filters["key_hash"]:
        return False
    search = filters.get("search")
    if search is not None and not (
        record.token == search or search.lower() in (record.key_alias or "").lower()
    ):
        return False
    expired = record.expires_at is not None and record.expires_at <= now
    revoked = record.revoked_at is not None
    if listing.status in ("revoked", "deleted") and not revoked:
        return False
    if listing.status == "active" and (revoked or expired):
        return False
    if listing.status == "expired" and (revoked or not expired):
        return False
    return listing.expires is None or expired == (listing.expires == "expired")


def _sort_value(record: KeyRecord, column: str) -> Any:
    return {
        "created_at": record.created_at,
        "spend": record.spend_micros,
        "max_budget": record.max_budget_micros,
        "token": record.token,
        "key_alias": record.key_alias,
        "expires": record.expires_at,
        "budget_reset_at": record.budget_reset_at,
        "tpm_limit": record.tpm_limit,
        "rpm_limit": record.rpm_limit,
    }[column]


def _page(records: list[KeyRecord], listing: _Listing) -> dict[str, Any]:
    """The listing's page of ``records``, in LiteLLM's shape (empty values sort last)."""
    now = time.time()
    chosen = [r for r in records if _matches(r, listing, now)]
    present = [r for r in chosen if _sort_value(r, listing.sort_by) is not None]
    absent = [r for r in chosen if _sort_value(r, listing.sort_by) is None]
    present.sort(key=lambda r: _sort_value(r, listing.sort_by), reverse=listing.descending)
    ordered = present + absent
    total = len(ordered)
    size = listing.size if listing.size is not None else max(total, 1)
    start = (listing.page - 1) * size
    return {
        "keys": [r.info() for r in ordered[start : start + size]],
        "total_count": total,
        "current_page": listing.page,
        "total_pages": -(-total // size),
    }


# -- routes ----------------------------------------------------------------------------------


async def _body(request: Request) -> Mapping[str, Any]:
    """The JSON object of a key route's body, read up to :data:`MAX_BODY_BYTES`."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise _too_large()
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise _too_large()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # also an integer of over 4300 digits
        raise GatewayError(400, "the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, Mapping):
        raise GatewayError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def _too_large() -> GatewayError:
    return GatewayError(
        413, f"the request body is larger than {MAX_BODY_BYTES} bytes", code="request_too_large"
    )


def _field_error(exc: KeyFieldError) -> GatewayError:
    return GatewayError(400, str(exc), code="invalid_value", param=exc.field)


def _duplicate(exc: DuplicateAliasError) -> GatewayError:
    # 400, not 409: OpenAI's SDKs retry a 409, and the same alias would be refused again.
    return GatewayError(400, str(exc), code="duplicate_key_alias", param="key_alias")


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

    def check_models(models: Sequence[str] | None) -> None:
        unknown = unknown_models(gateway.config, models or ())
        if unknown:
            raise GatewayError(
                400,
                f"models not served by this gateway: {', '.join(unknown)} "
                f"(served: {', '.join(gateway.config.public_names())})",
                code="invalid_value",
                param="models",
            )

    async def live_token(reference: str) -> str:
        """The one live key that ``reference`` names (404 if none, 400 if several)."""
        live = await live_keys(store, reference)
        if not live:
            raise GatewayError(404, "no such key", code="key_not_found", param="key")
        if len(live) > 1:
            raise GatewayError(
                400,
                f"{len(live)} keys match; name the key by its token",
                code="ambiguous_key",
                param="key",
            )
        return live[0].token

    async def generate(request: Request) -> Response:
        await require_master(request, master_key, store)
        body = await _body(request)
        try:
            spec = parse_key_spec(body)
        except KeyFieldError as exc:
            raise _field_error(exc) from None
        check_models(spec["models"])
        try:
            key, record = await store.create_key(**spec)
        except DuplicateAliasError as exc:
            raise _duplicate(exc) from None
        return JSONResponse({"key": key, "token_id": record.token, **record.info()})

    async def update(request: Request) -> Response:
        await require_master(request, master_key, store)
        body = await _body(request)
        try:
            change = parse_key_update(body)
        except KeyFieldError as exc:
            raise _field_error(exc) from None
        check_models(change.values.get("models"))
        token = await live_token(change.reference)
        await gateway.log_writer.flush()  # settle this process's spend before changing it
        try:
            record = await store.update_key(token, change.values)
        except DuplicateAliasError as exc:
            raise _duplicate(exc) from None
        if record is None:
            raise GatewayError(404, "no such key", code="key_not_found", param="key")
        return JSONResponse({"key": record.token, "token_id": record.token, **record.info()})

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
        listing = _listing(request.query_params)
        await gateway.log_writer.flush()
        records = await store.list_keys(include_revoked=listing.include_revoked)
        return JSONResponse(_page(records, listing))

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
        ("/key/update", update, "POST"),
        ("/key/info", info, "GET"),
        ("/key/list", list_keys, "GET"),
        ("/key/delete", delete, "POST"),
    ]
