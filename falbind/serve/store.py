"""The gateway's database: virtual keys, shared limits and budgets, requests in flight, fal's
prices, and the request log.

One code path for SQLite (a file, no set-up) and PostgreSQL (asyncpg), through SQLAlchemy 2
Core: every operation is one transaction written once (see :class:`Store` for how each
database runs it). Every check that several gateway processes must agree on is made inside one
transaction that holds the key (PostgreSQL: its row locked ``FOR UPDATE``; SQLite: ``BEGIN
IMMEDIATE``), so replicas on one PostgreSQL share it (:meth:`Store.admit`):

- requests per minute are a sliding window: one ``falbind_rate_events`` row per admitted
  request, counted over the last 60 s (a deployment's own rpm the same way, under an advisory
  lock, as it has no row to lock);
- parallel requests are the key's rows in flight (``falbind_inflight``);
- a budget is reserved before the request with ``UPDATE ... SET spend = spend + estimate WHERE
  spend + estimate <= max_budget RETURNING spend``, recorded in flight in the same transaction,
  and settled (or released) afterwards: by the request, or after a crash by the process that
  takes over its rows (:meth:`Store.claim_orphans`);
- money is integer micro-units (:mod:`.money`).

Keys are stored as SHA-256 digests: they are 256-bit random tokens, so a plain digest cannot be
brute-forced and a salted slow hash (for low-entropy passwords) would only add latency; a key
never reaches a statement (or its log), only its digest.
The schema is created at start and carries a version (:data:`SCHEMA_VERSION`); an older one is
upgraded, and a database from a newer falbind is refused instead of being written with the
wrong shape.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import math
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .durations import parse_duration
from .money import MICROS, from_micros, to_micros

__all__ = [
    "SCHEMA_VERSION",
    "Admission",
    "KeyRecord",
    "LogEntry",
    "LogWriter",
    "Orphan",
    "PriceRow",
    "Settlement",
    "SpendTotal",
    "Store",
    "StoreError",
    "Ticket",
    "bounded",
    "hash_key",
    "new_key",
]

T = TypeVar("T")
SCHEMA_VERSION: Final = 2
KEY_PREFIX: Final = "sk-fb-"
RATE_WINDOW_SECONDS: Final = 60.0
_PG_MIGRATION_LOCK: Final = 0x66616C62  # "falb": serialises schema set-up across replicas

metadata = sa.MetaData()
schema_table = sa.Table(
    "falbind_schema",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)
keys_table = sa.Table(
    "falbind_keys",
    metadata,
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("key_name", sa.String(32), nullable=False),
    sa.Column("key_alias", sa.String(200), nullable=True),
    sa.Column("models", sa.JSON, nullable=False),
    sa.Column("max_budget_micros", sa.BigInteger, nullable=True),
    sa.Column("spend_micros", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    sa.Column("rpm_limit", sa.Integer, nullable=True),
    sa.Column("expires_at", sa.Double, nullable=True),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("revoked_at", sa.Double, nullable=True),
    sa.Column("user_id", sa.String(200), nullable=True),
    sa.Column("team_id", sa.String(200), nullable=True),
    sa.Column("budget_duration", sa.String(32), nullable=True),
    sa.Column("budget_reset_at", sa.Double, nullable=True),
    sa.Column("max_parallel_requests", sa.Integer, nullable=True),
    sa.Column("tpm_limit", sa.Integer, nullable=True),
    # One live key per alias, whichever replica creates it (revoked keys free their alias).
    sa.Index(
        "ux_falbind_keys_live_alias",
        "key_alias",
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
        sqlite_where=sa.text("revoked_at IS NULL"),
    ),
)
rate_table = sa.Table(
    "falbind_rate",
    metadata,
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("window", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)
"""Schema 1's calendar-minute counters; unused since schema 2 (kept so old rows stay valid)."""
rate_events_table = sa.Table(
    "falbind_rate_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subject", sa.String(400), nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Index("ix_falbind_rate_events_subject_at", "subject", "at"),
)
"""One row per admitted request of a limited key or deployment, kept for one window: the
sliding window's count (at most ``limit`` rows per subject)."""
instances_table = sa.Table(
    "falbind_instances",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Double, nullable=False),
    sa.Column("heartbeat_at", sa.Double, nullable=False),
)
"""Every gateway process that is (or was) serving: its heartbeat says whether it still owns
its requests in flight."""
inflight_table = sa.Table(
    "falbind_inflight",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("instance", sa.String(36), nullable=False, index=True),
    sa.Column("token", sa.String(64), nullable=True, index=True),
    sa.Column("key_name", sa.String(32), nullable=True),
    sa.Column("route", sa.String(64), nullable=False),
    sa.Column("model_name", sa.String(300), nullable=True),
    sa.Column("reserved_micros", sa.BigInteger, nullable=False),
    sa.Column("started_at", sa.Double, nullable=False),
    sa.Column("endpoint_id", sa.String(300), nullable=True),
    sa.Column("inputs", sa.JSON, nullable=True),
)
"""A request admitted and not yet settled: its budget reservation, written in the same
transaction as the reservation, so that a crash never leaves a reservation without a record."""
inflight_jobs_table = sa.Table(
    "falbind_inflight_jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("inflight_id", sa.String(36), nullable=False, index=True),
    sa.Column("endpoint_id", sa.String(300), nullable=False),
    sa.Column("request_id", sa.String(200), nullable=False),
)
"""Each fal request id accepted for a request in flight, written before the gateway waits on
it (so that after a crash the job is collected or cancelled, never left running)."""
prices_table = sa.Table(
    "falbind_prices",
    metadata,
    sa.Column("endpoint_id", sa.String(300), primary_key=True),
    sa.Column("unit_price", sa.String(40), nullable=False),
    sa.Column("unit", sa.String(64), nullable=False),
    sa.Column("currency", sa.String(16), nullable=False),
    sa.Column("fetched_at", sa.Double, nullable=False),
)
"""fal's prices (``GET /v1/models/pricing``) as last fetched; the decimal price as text."""
log_table = sa.Table(
    "falbind_spend_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Double, nullable=False, index=True),
    sa.Column("token", sa.String(64), nullable=True, index=True),
    sa.Column("key_name", sa.String(32), nullable=True),
    sa.Column("route", sa.String(64), nullable=False),
    sa.Column("model_name", sa.String(300), nullable=True),
    sa.Column("endpoint_id", sa.String(300), nullable=True),
    sa.Column("fal_request_ids", sa.JSON, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("images", sa.Integer, nullable=False),
    sa.Column("cost_micros", sa.BigInteger, nullable=True),
    sa.Column("latency_ms", sa.Double, nullable=False),
    sa.Column("error_type", sa.String(100), nullable=True),
    sa.Column("key_alias", sa.String(200), nullable=True),
    sa.Column("user_id", sa.String(200), nullable=True),
    sa.Column("team_id", sa.String(200), nullable=True),
)
_MIGRATED_MONEY: Final = (
    ("falbind_keys", "spend", "spend_micros"),
    ("falbind_keys", "max_budget", "max_budget_micros"),
    ("falbind_spend_log", "cost", "cost_micros"),
)
"""Schema 1 kept money as floats; schema 2 as integer micro-units (copied on upgrade)."""


# The statements of the request path, built once with bound parameters: building a Core
# statement per call (coercions, cache key) cost more CPU than running it.
_SELECT_KEY: Final = sa.select(keys_table).where(keys_table.c.token == sa.bindparam("p_token"))
_LOCK_KEY: Final = _SELECT_KEY.with_for_update()
_SETTLE: Final = (
    keys_table.update()
    .where(keys_table.c.token == sa.bindparam("p_token"))
    .values(spend_micros=keys_table.c.spend_micros + sa.bindparam("p_delta", type_=sa.BigInteger))
)
_RESERVE: Final = (
    keys_table.update()
    .where(
        keys_table.c.token == sa.bindparam("p_token"),
        sa.or_(
            keys_table.c.max_budget_micros.is_(None),
            keys_table.c.spend_micros + sa.bindparam("p_amount", type_=sa.BigInteger)
            <= keys_table.c.max_budget_micros,
        ),
    )
    .values(spend_micros=keys_table.c.spend_micros + sa.bindparam("p_amount", type_=sa.BigInteger))
    .returning(keys_table.c.spend_micros)
)
_FORGET_EVENTS: Final = rate_events_table.delete().where(
    rate_events_table.c.subject == sa.bindparam("p_subject"),
    rate_events_table.c.at <= sa.bindparam("p_before", type_=sa.Double),
)
_WINDOW_EVENTS: Final = sa.select(sa.func.count(), sa.func.min(rate_events_table.c.at)).where(
    rate_events_table.c.subject == sa.bindparam("p_subject")
)
_LOCK_SUBJECT: Final = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:p_subject, 0))")
_IN_FLIGHT_FOR_KEY: Final = sa.select(sa.func.count()).where(
    inflight_table.c.token == sa.bindparam("p_token")
)
_RESERVED_FOR_KEY: Final = sa.select(
    sa.func.coalesce(sa.func.sum(inflight_table.c.reserved_micros), 0)
).where(inflight_table.c.token == sa.bindparam("p_token"))


class StoreError(RuntimeError):
    """The database cannot be used (unreachable, or from a newer falbind)."""


def hash_key(key: str) -> str:
    """The stored form of a key: its SHA-256 digest (hex)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A new virtual key: ``sk-fb-`` and 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def display_name(key: str) -> str:
    """How a key is shown after creation: its start and last four characters."""
    return f"{key[:8]}...{key[-4:]}"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A virtual key as stored (never the key itself). Money in integer micro-units."""

    token: str
    key_name: str
    key_alias: str | None
    models: tuple[str, ...]
    max_budget_micros: int | None
    spend_micros: int
    rpm_limit: int | None
    expires_at: float | None
    metadata: dict[str, Any]
    created_at: float
    revoked_at: float | None
    user_id: str | None = None
    team_id: str | None = None
    budget_duration: str | None = None
    budget_reset_at: float | None = None
    max_parallel_requests: int | None = None
    tpm_limit: int | None = None

    @property
    def max_budget(self) -> float | None:
        """The budget in units of the currency (display only)."""
        return from_micros(self.max_budget_micros)

    @property
    def spend(self) -> float:
        """The spend in units of the currency (display only)."""
        return self.spend_micros / MICROS

    @property
    def display_name(self) -> str:
        """How the key is named in logs and metrics: its alias, else its display name."""
        return self.key_alias or self.key_name

    def allows(self, model_name: str) -> bool:
        """Whether the key's model list allows ``model_name`` (empty: every model)."""
        return not self.models or any(
            model_name == allowed or fnmatch.fnmatchcase(model_name, allowed)
            for allowed in self.models
        )

    def info(self) -> dict[str, Any]:
        """LiteLLM's ``/key/info`` fields."""
        return {
            "token": self.token,
            "key_name": self.key_name,
            "key_alias": self.key_alias,
            "models": list(self.models),
            "max_budget": self.max_budget,
            "spend": self.spend,
            "rpm_limit": self.rpm_limit,
            "tpm_limit": self.tpm_limit,
            "max_parallel_requests": self.max_parallel_requests,
            "budget_duration": self.budget_duration,
            "budget_reset_at": _iso(self.budget_reset_at),
            "user_id": self.user_id,
            "team_id": self.team_id,
            "expires": _iso(self.expires_at),
            "metadata": self.metadata,
            "created_at": _iso(self.created_at),
            "revoked": self.revoked_at is not None,
        }


Verdict = Literal[
    "ok",
    "invalid",
    "revoked",
    "expired",
    "model_not_allowed",
    "rate_limited",
    "deployment_rate_limited",
    "parallel_limited",
    "over_budget",
    "price_unknown",
]


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer of :meth:`Store.admit`."""

    verdict: Verdict
    record: KeyRecord | None = None
    retry_after: float | None = None
    """``rate_limited``: seconds until a slot of the sliding window frees."""
    reserved_micros: int = 0
    """``ok``: the amount reserved from the key's budget, settled when the request ends."""


@dataclass(frozen=True, slots=True)
class Ticket:
    """What :meth:`Store.admit` records for a request it admits (a row in flight)."""

    id: str
    instance: str
    route: str
    model_name: str
    estimate_micros: int | None
    """The most the request can cost (``None``: its price is unknown)."""
    deployment_limit: tuple[str, int] | None = None
    """(deployment id, requests per minute) when the deployment has its own rpm limit."""
    endpoint_id: str | None = None
    inputs: Mapping[str, Any] | None = None
    """The fingerprints of the bodies it will send (see :mod:`.recovery`): after a crash, a
    job fal accepted before its id was written down is found in fal's request history."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One request, as the gateway records it. Every text is bounded when written."""

    route: str
    status: int
    latency_ms: float
    token: str | None = None
    key_name: str | None = None
    model_name: str | None = None
    endpoint_id: str | None = None
    fal_request_ids: Sequence[str] = field(default_factory=tuple)
    images: int = 0
    cost_micros: int | None = None
    error_type: str | None = None
    key_alias: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class Settlement:
    """The end of an admitted request: replace its reservation by what it cost (a refund when
    ``cost_micros`` is smaller), forget its row in flight, log it: one transaction."""

    inflight_id: str | None
    token: str | None
    reserved_micros: int
    cost_micros: int
    entry: LogEntry | None
    jobs: bool = True
    """Whether fal jobs may have been written down for it (``False`` skips their delete)."""


@dataclass(frozen=True, slots=True)
class Orphan:
    """A request in flight whose gateway process died: its fal jobs and reservation."""

    id: str
    token: str | None
    key_name: str | None
    route: str
    model_name: str | None
    reserved_micros: int
    started_at: float
    jobs: tuple[tuple[str, str], ...]
    """(endpoint id, fal request id) of each job accepted before the crash."""
    endpoint_id: str | None = None
    inputs: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PriceRow:
    """A fal price as stored: the decimal text, its unit and currency."""

    endpoint_id: str
    unit_price: str
    unit: str
    currency: str
    fetched_at: float


@dataclass(frozen=True, slots=True)
class SpendTotal:
    """Totals for one (key, model) pair."""

    key_name: str
    model_name: str
    requests: int
    images: int
    cost_micros: int

    @property
    def cost(self) -> float:
        return self.cost_micros / MICROS


def bounded(text: str | None, limit: int) -> str | None:
    """``text`` cut to ``limit`` characters (what a column holds), lone surrogates replaced
    (they cannot be encoded as UTF-8, so one would fail the whole batch it is written in)."""
    if text is None:
        return None
    text = text[:limit]
    return text.encode("utf-8", "replace").decode("utf-8")


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(stamp, UTC).isoformat()


class Store:
    """The database behind one gateway process (see the module docstring).

    Every operation is one transaction, written once as a function of a SQLAlchemy Core
    ``Connection`` and run whole:

    - PostgreSQL: on the async engine (asyncpg) through ``AsyncConnection.run_sync``;
    - SQLite: on SQLAlchemy's own sqlite3 driver. A transaction is first tried right on the
      event loop with SQLite's busy timeout at zero: it takes well under a millisecond, so it
      never waits on a lock; if another process holds the lock, it is run again on the
      store's own thread, which waits for the lock (up to 30 s) without blocking the loop.
      Measured here, SQLAlchemy's aiosqlite adaptor crossed threads about 25 times per gateway
      request (cursor, execute, fetch, commit, reset: each a hop), and even one hop per
      transaction cost several milliseconds on a busy machine: more than the work itself.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.dialect = url.split("+", 1)[0].split(":", 1)[0]
        self._engine: AsyncEngine | None = None
        self._sync_engine: sa.Engine | None = None
        self._loop_engine: sa.Engine | None = None
        self._loop_conn: sa.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._sqlite_path: str | None = None
        if self.dialect == "sqlite":
            sync_url = "sqlite://" + url.split("://", 1)[1]
            path = url.split("://", 1)[1].removeprefix("/")
            self._sqlite_path = path if path and path != ":memory:" else None
            self._sync_engine = _sqlite_engine(sync_url, busy_timeout_ms=30_000, echo=echo)
            self._loop_engine = _sqlite_engine(sync_url, busy_timeout_ms=0, echo=echo)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="falbind-sqlite")
        else:
            self._engine = create_async_engine(
                url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True
            )

    def __repr__(self) -> str:
        return f"<Store {self.dialect}>"  # the URL may hold a password

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None
        if self._loop_engine is not None:
            self._loop_engine.dispose()
        if self._sync_engine is not None and self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, self._sync_engine.dispose
            )
            self._executor.shutdown(wait=True)

    def _loop_connection(self) -> sa.Connection:
        """The event loop's own SQLite connection, kept open: checking one out of the pool and
        back for every transaction cost about a third of an admission's CPU (profiled). Safe
        to share: the loop runs one transaction at a time, start to end, with no await in it."""
        if self._loop_conn is None or self._loop_conn.closed:
            assert self._loop_engine is not None
            self._loop_conn = self._loop_engine.connect()
        return self._loop_conn

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(connection, *args)`` in one transaction (committed unless it raises)."""
        return await self._transaction(work, args, read_only=False)

    async def _read(self, work: Callable[..., T], *args: Any) -> T:
        """``work(connection, *args)`` in a read-only transaction: on SQLite a deferred one,
        which takes no write lock (profiled: ``BEGIN IMMEDIATE`` was a third of a key read)."""
        return await self._transaction(work, args, read_only=True)

    async def _transaction(
        self, work: Callable[..., T], args: tuple[Any, ...], *, read_only: bool
    ) -> T:
        if self._sync_engine is not None:
            assert self._executor is not None and self._loop_engine is not None
            try:
                conn = self._loop_connection()
                conn.info[_READ_ONLY] = read_only
                with conn.begin():  # on the loop, never waiting
                    return work(conn, *args)
            except sa.exc.OperationalError as exc:
                if not _is_busy(exc):
                    raise
            engine = self._sync_engine

            def transaction() -> T:
                with engine.connect() as conn:
                    conn.info[_READ_ONLY] = read_only
                    with conn.begin():
                        return work(conn, *args)

            return await asyncio.get_running_loop().run_in_executor(self._executor, transaction)
        assert self._engine is not None
        async with self._engine.begin() as async_conn:
            return await async_conn.run_sync(work, *args)

    # -- schema ------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Create the schema (or check its version, upgrading an older one); raises
        :class:`StoreError`."""
        try:
            await self._run(self._setup)
        except StoreError:
            raise
        except (OSError, sa.exc.SQLAlchemyError) as exc:
            raise StoreError(f"cannot use the database ({self.dialect}): {_reason(exc)}") from None

    def _setup(self, conn: sa.Connection) -> None:
        if self.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
        version = None
        if sa.inspect(conn).has_table(schema_table.name):
            version = conn.execute(
                sa.select(schema_table.c.version).where(schema_table.c.id == 1)
            ).scalar_one_or_none()
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(
                f"the database has schema version {version}, newer than this falbind's "
                f"{SCHEMA_VERSION}: upgrade falbind"
            )
        if version is not None and version < SCHEMA_VERSION:
            _upgrade(conn)
        metadata.create_all(conn)
        if version is None:
            conn.execute(schema_table.insert().values(id=1, version=SCHEMA_VERSION))
        elif version < SCHEMA_VERSION:
            conn.execute(
                schema_table.update().where(schema_table.c.id == 1).values(version=SCHEMA_VERSION)
            )

    async def schema_version(self) -> int | None:
        def read(conn: sa.Connection) -> int | None:
            version: int | None = conn.execute(
                sa.select(schema_table.c.version)
            ).scalar_one_or_none()
            return version

        return await self._run(read)

    async def ping(self, timeout: float = 3.0) -> bool:
        """Whether the database answers a read of the gateway's own schema within
        ``timeout`` seconds (``/health/readiness``); a SQLite file that is gone is not ready."""
        if self._sqlite_path is not None and not os.path.exists("/" + self._sqlite_path):
            return False

        def read(conn: sa.Connection) -> None:
            conn.execute(sa.select(schema_table.c.version)).scalar_one_or_none()

        try:
            async with asyncio.timeout(timeout):
                await self._run(read)
        except Exception:  # any failure at all means "not ready", never a 500
            return False
        return True

    # -- keys --------------------------------------------------------------------------------

    async def create_key(
        self,
        *,
        models: Sequence[str] = (),
        max_budget: float | None = None,
        rpm_limit: int | None = None,
        duration_seconds: float | None = None,
        key_alias: str | None = None,
        metadata: dict[str, Any] | None = None,
        **extra: Any,
    ) -> tuple[str, KeyRecord]:
        """A new key (the only time it is seen) and its record. ``extra``: the key table's
        other columns (``user_id``, ``team_id``, ``budget_duration``, ``budget_reset_at``,
        ``max_parallel_requests``, ``tpm_limit``)."""
        unknown = set(extra) - _OPTIONAL_KEY_COLUMNS
        if unknown:
            raise TypeError(f"unknown key field(s): {', '.join(sorted(unknown))}")
        key = new_key()
        now = time.time()
        row: dict[str, Any] = {
            "token": hash_key(key),
            "key_name": display_name(key),
            "key_alias": key_alias,
            "models": list(models),
            "max_budget_micros": to_micros(max_budget) if max_budget is not None else None,
            "spend_micros": 0,
            "rpm_limit": rpm_limit,
            "expires_at": now + duration_seconds if duration_seconds is not None else None,
            "metadata": dict(metadata or {}),
            "created_at": now,
            "revoked_at": None,
            **{name: extra.get(name) for name in _OPTIONAL_KEY_COLUMNS},
        }

        def insert(conn: sa.Connection) -> None:
            if (
                key_alias is not None
                and conn.execute(
                    sa.select(keys_table.c.token).where(
                        keys_table.c.key_alias == key_alias, keys_table.c.revoked_at.is_(None)
                    )
                ).first()
            ):
                raise DuplicateAliasError(key_alias)
            try:
                conn.execute(keys_table.insert().values(**row))
            except sa.exc.IntegrityError:  # another replica took the alias meanwhile
                raise DuplicateAliasError(str(key_alias)) from None

        await self._run(insert)
        return key, _record(row)

    async def get_key(self, token: str) -> KeyRecord | None:
        return await self._read(_get_key, token)

    async def list_keys(self, *, include_revoked: bool = False) -> list[KeyRecord]:
        query = sa.select(keys_table).order_by(keys_table.c.created_at)
        if not include_revoked:
            query = query.where(keys_table.c.revoked_at.is_(None))

        def read(conn: sa.Connection) -> list[KeyRecord]:
            return [_record(dict(row)) for row in conn.execute(query).mappings().all()]

        return await self._run(read)

    async def find_tokens(self, reference: str) -> list[str]:
        """Tokens matching a key, its token (digest), its display name or its alias.

        A key itself never reaches the database (nor its statement log): only its digest
        is compared."""
        clauses = [keys_table.c.token == hash_key(reference)]
        if _TOKEN_SHAPE.fullmatch(reference):
            clauses.append(keys_table.c.token == reference)
        if not reference.startswith("sk-") or "..." in reference:
            clauses.append(keys_table.c.key_name == reference)
            clauses.append(keys_table.c.key_alias == reference)
        query = sa.select(keys_table.c.token).where(sa.or_(*clauses))

        def read(conn: sa.Connection) -> list[str]:
            return [str(token) for token in conn.execute(query).scalars().all()]

        return await self._run(read)

    async def tokens_for(self, references: Sequence[str]) -> tuple[list[str], list[str]]:
        """The tokens the references match (see :meth:`find_tokens`), and the references that
        match none, with anything shaped like a key (``sk-...``) shown as ``<a key>``."""
        tokens: list[str] = []
        missing: list[str] = []
        for reference in references:
            found = await self.find_tokens(reference)
            tokens.extend(found)
            if not found:
                missing.append("<a key>" if reference.startswith("sk-") else reference)
        return tokens, missing

    async def revoke(self, tokens: Sequence[str]) -> int:
        """Revoke keys by token; how many were live."""
        statement = (
            keys_table.update()
            .where(keys_table.c.token.in_(list(tokens)), keys_table.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )

        def update(conn: sa.Connection) -> int:
            return int(conn.execute(statement).rowcount)

        return await self._run(update)

    async def update_key(self, token: str, values: Mapping[str, Any]) -> KeyRecord | None:
        """Change a key's columns (``models``, ``max_budget_micros``, ``rpm_limit``, ...);
        the record after the change, ``None`` if there is no such key."""
        unknown = set(values) - _UPDATABLE_KEY_COLUMNS
        if unknown:
            raise TypeError(f"not updatable: {', '.join(sorted(unknown))}")

        def update(conn: sa.Connection) -> KeyRecord | None:
            alias = values.get("key_alias")
            if (
                alias is not None
                and conn.execute(
                    sa.select(keys_table.c.token).where(
                        keys_table.c.key_alias == alias,
                        keys_table.c.token != token,
                        keys_table.c.revoked_at.is_(None),
                    )
                ).first()
            ):
                raise DuplicateAliasError(alias)
            if values:
                try:
                    conn.execute(
                        keys_table.update().where(keys_table.c.token == token).values(**values)
                    )
                except sa.exc.IntegrityError:  # another replica took the alias meanwhile
                    raise DuplicateAliasError(str(alias)) from None
            return _get_key(conn, token)

        return await self._run(update)

    # -- admission ---------------------------------------------------------------------------

    async def admit(
        self,
        token: str | None,
        ticket: Ticket | None = None,
        *,
        model_name: str | None = None,
        now: float | None = None,
    ) -> Admission:
        """Everything a request must pass before anything is sent to fal, in one transaction.

        For a virtual key (``token``): it exists, is live and may use the model; its budget
        period is renewed when due; then its limits: parallel requests, requests per minute
        (a sliding window), the deployment's own rpm, and the budget: the ticket's estimate is
        reserved, or the request refused when the key has a budget and the price is unknown.
        The master key (``token=None``) passes the key checks. With a ``ticket``, an admitted
        request is recorded in flight (with its reservation) in the same transaction.

        Without a ticket only the key is checked (``model_name`` still checked if given)."""
        return await self._run(self._admit, token, ticket, model_name, now or time.time())

    def _admit(
        self,
        conn: sa.Connection,
        token: str | None,
        ticket: Ticket | None,
        model_name: str | None,
        now: float,
    ) -> Admission:
        record = None
        if token is not None:
            # PostgreSQL: the key's row is locked until commit, so that the checks and writes
            # below are one step for every replica (SQLite's BEGIN IMMEDIATE locks already).
            select = _LOCK_KEY if self.dialect == "postgresql" else _SELECT_KEY
            row = conn.execute(select, {"p_token": token}).mappings().first()
            if row is None:
                return Admission("invalid")
            record = _record(dict(row))
            if record.revoked_at is not None:
                return Admission("revoked", record)
            if record.expires_at is not None and record.expires_at <= now:
                return Admission("expired", record)
            name = ticket.model_name if ticket is not None else model_name
            if name is not None and not record.allows(name):
                return Admission("model_not_allowed", record)
            if ticket is None:
                return Admission("ok", record)
            record = _renew_budget(conn, record, now)
            if record.max_parallel_requests is not None:
                running = conn.execute(_IN_FLIGHT_FOR_KEY, {"p_token": token}).scalar_one()
                if running >= record.max_parallel_requests:
                    return Admission("parallel_limited", record)
        if ticket is None:
            return Admission("ok", record)
        subjects: list[tuple[str, int, Verdict]] = []
        if record is not None and record.rpm_limit is not None:
            subjects.append((f"key:{record.token}", record.rpm_limit, "rate_limited"))
        if ticket.deployment_limit is not None:
            deployment, limit = ticket.deployment_limit
            subjects.append((f"deployment:{deployment}", limit, "deployment_rate_limited"))
        for subject, limit, verdict in subjects:
            wait = _window_wait(conn, subject, limit, now)
            if wait is not None:
                return Admission(verdict, record, retry_after=wait)
        reserved = 0
        if record is not None and record.max_budget_micros is not None:
            if ticket.estimate_micros is None:
                return Admission("price_unknown", record)
            if not _reserve(conn, record.token, ticket.estimate_micros):
                return Admission("over_budget", record)
            reserved = ticket.estimate_micros
        for subject, _, _ in subjects:
            conn.execute(rate_events_table.insert().values(subject=subject, at=now))
        conn.execute(
            inflight_table.insert().values(
                id=ticket.id,
                instance=ticket.instance,
                token=token,
                key_name=record.key_name if record is not None else None,
                route=ticket.route,
                model_name=bounded(ticket.model_name, 300),
                reserved_micros=reserved,
                started_at=now,
                endpoint_id=bounded(ticket.endpoint_id, 300),
                inputs=dict(ticket.inputs) if ticket.inputs is not None else None,
            )
        )
        return Admission("ok", record, reserved_micros=reserved)

    async def take_rate_slot(
        self, token: str, limit: int, now: float | None = None
    ) -> float | None:
        """Count one request of key ``token`` against ``limit`` per sliding minute; ``None``
        if admitted, else the seconds until a slot frees (for ``Retry-After``)."""

        def take(conn: sa.Connection, when: float) -> float | None:
            subject = f"key:{token}"
            wait = _window_wait(conn, subject, limit, when)
            if wait is None:
                conn.execute(rate_events_table.insert().values(subject=subject, at=when))
            return wait

        return await self._run(take, time.time() if now is None else now)

    async def reserve_budget(self, token: str, amount: float) -> bool:
        """Add ``amount`` to the key's spend if it stays within its budget (atomically)."""
        return await self._run(_reserve, token, to_micros(amount))

    async def record_job(self, inflight_id: str, endpoint_id: str, request_id: str) -> None:
        """Remember a fal request accepted for a request in flight (before waiting on it)."""
        row = {
            "inflight_id": inflight_id,
            "endpoint_id": bounded(endpoint_id, 300),
            "request_id": bounded(request_id, 200),
        }

        def insert(conn: sa.Connection) -> None:
            conn.execute(inflight_jobs_table.insert().values(**row))

        await self._run(insert)

    # -- settlement and the request log ------------------------------------------------------

    async def settle(self, settlements: Sequence[Settlement]) -> None:
        """Each settlement's spend change, the end of its row in flight and its log row, all
        in one transaction (see :class:`LogWriter` for what happens when it fails)."""
        if settlements:
            await self._run(_settle_batch, list(settlements))

    async def log(self, entry: LogEntry) -> None:
        """Record one request that was never admitted (nothing reserved)."""
        await self.settle([Settlement(None, None, 0, 0, entry)])

    async def logs(
        self,
        *,
        token: str | None = None,
        since: float | None = None,
        limit: int = 100,
        user_id: str | None = None,
        team_id: str | None = None,
    ) -> list[dict[str, Any]]:
        query = sa.select(log_table).order_by(log_table.c.id.desc()).limit(limit)
        query = _log_filter(query, token, since, user_id, team_id)

        def read(conn: sa.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(query).mappings().all()
            return [
                {
                    **{k: v for k, v in row.items() if k != "cost_micros"},
                    "cost": from_micros(row["cost_micros"]),
                    "at": _iso(row["at"]),
                }
                for row in rows
            ]

        return await self._run(read)

    async def spend_totals(
        self,
        *,
        token: str | None = None,
        since: float | None = None,
        user_id: str | None = None,
        team_id: str | None = None,
    ) -> list[SpendTotal]:
        """Per key and model: requests, images delivered and cost."""
        key = sa.func.coalesce(log_table.c.key_name, "master key")
        model = sa.func.coalesce(log_table.c.model_name, "-")
        query = (
            sa.select(
                key.label("key_name"),
                model.label("model_name"),
                sa.func.count().label("requests"),
                sa.func.coalesce(sa.func.sum(log_table.c.images), 0).label("images"),
                sa.func.coalesce(sa.func.sum(log_table.c.cost_micros), 0).label("cost"),
            )
            .where(log_table.c.route.like("%images%"))
            .group_by(key, model)
            .order_by(key, model)
        )
        query = _log_filter(query, token, since, user_id, team_id)

        def read(conn: sa.Connection) -> list[SpendTotal]:
            return [
                SpendTotal(
                    str(r.key_name),
                    str(r.model_name),
                    int(r.requests),
                    int(r.images),
                    int(r.cost),
                )
                for r in conn.execute(query).all()
            ]

        return await self._run(read)

    # -- processes and recovery --------------------------------------------------------------

    async def register_instance(self, instance: str, now: float | None = None) -> None:
        """Announce a gateway process (its heartbeat starts now)."""
        stamp = time.time() if now is None else now
        row = {
            "id": instance,
            "host": bounded(socket.gethostname(), 255),
            "pid": os.getpid(),
            "started_at": stamp,
            "heartbeat_at": stamp,
        }

        def insert(conn: sa.Connection) -> None:
            conn.execute(instances_table.insert().values(**row))

        await self._run(insert)

    async def heartbeat(self, instance: str, now: float | None = None) -> None:
        statement = (
            instances_table.update()
            .where(instances_table.c.id == instance)
            .values(heartbeat_at=time.time() if now is None else now)
        )

        def update(conn: sa.Connection) -> None:
            conn.execute(statement)

        await self._run(update)

    async def retire_instance(self, instance: str) -> None:
        """A process that stops cleanly; whatever it still had in flight becomes an orphan."""

        def delete(conn: sa.Connection) -> None:
            conn.execute(instances_table.delete().where(instances_table.c.id == instance))

        await self._run(delete)

    async def claim_orphans(
        self, instance: str, *, stale_after: float, now: float | None = None
    ) -> list[Orphan]:
        """Take over the requests in flight of every gateway process that is gone: its
        heartbeat is older than ``stale_after`` seconds, or it ran on this host under a PID
        that no longer runs (a restart after ``kill -9``), or it retired. One transaction, so
        two processes never claim the same request."""
        return await self._run(
            _claim_orphans, instance, stale_after, time.time() if now is None else now
        )

    async def recorded_request_ids(self, endpoint_id: str) -> set[str]:
        """The fal request ids written down for requests in flight on ``endpoint_id``."""
        query = sa.select(inflight_jobs_table.c.request_id).where(
            inflight_jobs_table.c.endpoint_id == endpoint_id
        )

        def read(conn: sa.Connection) -> set[str]:
            return {str(r) for r in conn.execute(query).scalars().all()}

        return await self._run(read)

    async def in_flight(self) -> int:
        """How many requests are in flight (every process)."""

        def count(conn: sa.Connection) -> int:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(inflight_table)).scalar_one()
            )

        return await self._run(count)

    # -- prices ------------------------------------------------------------------------------

    async def save_prices(self, rows: Sequence[PriceRow]) -> None:
        """Keep fal's prices (replacing older ones for the same endpoints)."""
        if not rows:
            return
        values = [
            {
                "endpoint_id": row.endpoint_id,
                "unit_price": row.unit_price,
                "unit": bounded(row.unit, 64),
                "currency": bounded(row.currency, 16),
                "fetched_at": row.fetched_at,
            }
            for row in rows
        ]

        def write(conn: sa.Connection) -> None:
            ids = [v["endpoint_id"] for v in values]
            conn.execute(prices_table.delete().where(prices_table.c.endpoint_id.in_(ids)))
            conn.execute(prices_table.insert(), values)

        await self._run(write)

    async def prices(self, endpoint_ids: Sequence[str]) -> dict[str, PriceRow]:
        query = sa.select(prices_table).where(prices_table.c.endpoint_id.in_(list(endpoint_ids)))

        def read(conn: sa.Connection) -> dict[str, PriceRow]:
            return {
                row["endpoint_id"]: PriceRow(**dict(row))
                for row in conn.execute(query).mappings().all()
            }

        return await self._run(read)


class DuplicateAliasError(ValueError):
    """A live key already has this alias."""

    def __init__(self, alias: str) -> None:
        super().__init__(f"a key with alias {alias!r} exists already")
        self.alias = alias


_OPTIONAL_KEY_COLUMNS: Final = frozenset(
    {
        "user_id",
        "team_id",
        "budget_duration",
        "budget_reset_at",
        "max_parallel_requests",
        "tpm_limit",
    }
)
_UPDATABLE_KEY_COLUMNS: Final = _OPTIONAL_KEY_COLUMNS | {
    "models",
    "max_budget_micros",
    "rpm_limit",
    "expires_at",
    "metadata",
    "key_alias",
    "spend_micros",
}
_TOKEN_SHAPE: Final = re.compile(r"[0-9a-f]{64}")


def _window_wait(conn: sa.Connection, subject: str, limit: int, now: float) -> float | None:
    """The sliding window of ``subject``: ``None`` when fewer than ``limit`` requests were
    admitted in the last :data:`RATE_WINDOW_SECONDS`, else the seconds until the oldest of
    them leaves the window. On PostgreSQL the subject is locked until commit (an advisory
    lock, as a deployment has no row to lock), so replicas count one after another."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_SUBJECT, {"p_subject": subject})
    conn.execute(_FORGET_EVENTS, {"p_subject": subject, "p_before": now - RATE_WINDOW_SECONDS})
    count, oldest = conn.execute(_WINDOW_EVENTS, {"p_subject": subject}).one()
    if count < limit:
        return None
    return max(0.001, float(oldest) + RATE_WINDOW_SECONDS - now)


def _renew_budget(conn: sa.Connection, record: KeyRecord, now: float) -> KeyRecord:
    """A key whose budget period (``budget_duration``) is over starts a new one: its spend
    becomes what its requests in flight have reserved (they settle against the new period)."""
    if record.budget_duration is None or record.budget_reset_at is None:
        return record
    if record.budget_reset_at > now:
        return record
    period = parse_duration(record.budget_duration) or 0.0
    next_reset = record.budget_reset_at
    if period > 0:  # the first period boundary after now, however long the key was idle
        next_reset += period * (math.floor((now - record.budget_reset_at) / period) + 1)
    reserved = int(conn.execute(_RESERVED_FOR_KEY, {"p_token": record.token}).scalar_one())
    conn.execute(
        keys_table.update()
        .where(keys_table.c.token == record.token)
        .values(spend_micros=reserved, budget_reset_at=next_reset)
    )
    from dataclasses import replace

    return replace(record, spend_micros=reserved, budget_reset_at=next_reset)


def _claim_orphans(
    conn: sa.Connection, instance: str, stale_after: float, now: float
) -> list[Orphan]:
    host = socket.gethostname()
    dead: list[str] = []
    for row in conn.execute(sa.select(instances_table)).mappings().all():
        if row["id"] == instance:
            continue
        stale = row["heartbeat_at"] < now - stale_after
        if stale or (row["host"] == host and not _pid_alive(int(row["pid"]))):
            dead.append(str(row["id"]))
    live = sa.select(instances_table.c.id).where(instances_table.c.id.notin_(dead))
    if dead:
        conn.execute(instances_table.delete().where(instances_table.c.id.in_(dead)))
    # One UPDATE ... RETURNING: on PostgreSQL a second replica claiming at the same time
    # waits for these rows and then finds them owned by a live process, so each orphan is
    # claimed once; this process's own requests in flight are never among them.
    claimed = [
        str(row[0])
        for row in conn.execute(
            inflight_table.update()
            .where(inflight_table.c.instance != instance, inflight_table.c.instance.notin_(live))
            .values(instance=instance)
            .returning(inflight_table.c.id)
        ).all()
    ]
    return _orphans(conn, claimed)


def _orphans(conn: sa.Connection, ids: list[str]) -> list[Orphan]:
    """The rows in flight ``ids``, with their fal jobs."""
    if not ids:
        return []
    rows = (
        conn.execute(sa.select(inflight_table).where(inflight_table.c.id.in_(ids))).mappings().all()
    )
    jobs: dict[str, list[tuple[str, str]]] = {}
    for job in (
        conn.execute(
            sa.select(inflight_jobs_table)
            .where(inflight_jobs_table.c.inflight_id.in_(ids))
            .order_by(inflight_jobs_table.c.id)
        )
        .mappings()
        .all()
    ):
        jobs.setdefault(job["inflight_id"], []).append((job["endpoint_id"], job["request_id"]))
    return [
        Orphan(
            id=row["id"],
            token=row["token"],
            key_name=row["key_name"],
            route=row["route"],
            model_name=row["model_name"],
            reserved_micros=int(row["reserved_micros"]),
            started_at=float(row["started_at"]),
            jobs=tuple(jobs.get(row["id"], ())),
            endpoint_id=row["endpoint_id"],
            inputs=row["inputs"],
        )
        for row in rows
    ]


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # another instance with this process's PID: this process replaced it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _log_filter(
    query: Any, token: str | None, since: float | None, user_id: str | None, team_id: str | None
) -> Any:
    if token is not None:
        query = query.where(log_table.c.token == token)
    if since is not None:
        query = query.where(log_table.c.at >= since)
    if user_id is not None:
        query = query.where(log_table.c.user_id == user_id)
    if team_id is not None:
        query = query.where(log_table.c.team_id == team_id)
    return query


def _settle_batch(conn: sa.Connection, settlements: list[Settlement]) -> None:
    deltas: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    done: list[str] = []
    with_jobs: list[str] = []
    for item in settlements:
        if item.token is not None:
            delta = item.cost_micros - item.reserved_micros
            deltas[item.token] = deltas.get(item.token, 0) + delta
        if item.inflight_id is not None:
            done.append(item.inflight_id)
            if item.jobs:
                with_jobs.append(item.inflight_id)
        if item.entry is not None:
            rows.append(_log_row(item.entry))
    for token, delta in deltas.items():
        if delta != 0:
            conn.execute(_SETTLE, {"p_token": token, "p_delta": delta})
    if done:
        conn.execute(
            inflight_jobs_table.delete().where(inflight_jobs_table.c.inflight_id.in_(done))
        )
        conn.execute(inflight_table.delete().where(inflight_table.c.id.in_(done)))
    if rows:
        conn.execute(log_table.insert(), rows)


def _log_row(entry: LogEntry) -> dict[str, Any]:
    """The row for ``entry``, every value bounded to its column (a too-long or unencodable
    value would fail the whole batch it is written in)."""
    return {
        "at": entry.at,
        "token": bounded(entry.token, 64),
        "key_name": bounded(entry.key_name, 32),
        "route": bounded(entry.route, 64),
        "model_name": bounded(entry.model_name, 300),
        "endpoint_id": bounded(entry.endpoint_id, 300),
        "fal_request_ids": [bounded(r, 200) for r in list(entry.fal_request_ids)[:64]],
        "status": int(entry.status),
        "images": int(entry.images),
        "cost_micros": entry.cost_micros,
        "latency_ms": float(entry.latency_ms),
        "error_type": bounded(entry.error_type, 100),
        "key_alias": bounded(entry.key_alias, 200),
        "user_id": bounded(entry.user_id, 200),
        "team_id": bounded(entry.team_id, 200),
    }


class LogWriter:
    """Writes settlements and the request log off the request path, in batches.

    A request's answer does not wait for its log row: :meth:`submit` queues it, and one task
    writes everything queued in one transaction, then whatever queued meanwhile (group
    commit, no timer). Limits stay exact: the budget is reserved before the request, in
    :meth:`Store.admit`; settling only replaces the reservation by the cost of what was
    delivered. :meth:`flush` waits for everything submitted so far (the spend routes call it
    first, and shutdown does).

    Nothing is dropped: a batch that fails because the database is away is kept and tried
    again (waits growing to :data:`MAX_RETRY_WAIT`); a batch that the database refuses for
    its content is written one settlement at a time, so one bad row never loses another (a
    row refused on its own is logged and its settlement still applied without it).
    """

    MAX_RETRY_WAIT: Final = 5.0

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: list[Settlement] = []
        self._task: asyncio.Task[None] | None = None
        self.failures = 0
        """How many times a write failed (for tests and the logs)."""
        self._last_error: BaseException | None = None
        self._waiters: dict[int, asyncio.Future[None]] = {}
        """Each queued settlement's future, by the settlement's identity."""

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, settlement: Settlement) -> asyncio.Future[None]:
        """Queue ``settlement``; the future is done once it is committed (a request that
        delivered images awaits it before answering, so that a crash right after the answer
        cannot leave them unpaid)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append(settlement)
        self._waiters[id(settlement)] = done
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return done

    def _committed(self, written: list[Settlement]) -> None:
        for item in written:
            waiter = self._waiters.pop(id(item), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def _drain(self) -> None:
        wait = 0.05
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                left = await self._write(batch)
            except Exception as exc:  # not a database error at all: keep the batch anyway
                self._last_error = exc
                left = batch
            self._committed(batch[: len(batch) - len(left)])
            if not left:
                wait = 0.05
                continue
            self.failures += 1
            self._pending[:0] = left  # kept, in order, for the next try
            _log.error(
                "could not write %d settlement(s) (kept, retrying in %.2f s): %s",
                len(left),
                wait,
                _reason(self._last_error) if self._last_error else "?",
            )
            await asyncio.sleep(wait)
            wait = min(self.MAX_RETRY_WAIT, wait * 2)

    async def _write(self, batch: list[Settlement]) -> list[Settlement]:
        """Write ``batch``; what is left unwritten because the database is away."""
        try:
            await self._store.settle(batch)
            return []
        except Exception as exc:
            self._last_error = exc
            if _database_away(exc):
                return batch
        # The database refused something in the batch: one at a time, so only the bad row
        # is lost, never another's (and never a settlement).
        for index, item in enumerate(batch):
            try:
                await self._store.settle([item])
                continue
            except Exception as exc:
                self._last_error = exc
                if _database_away(exc):
                    return batch[index:]
                _log.error("a request log row was refused (%s); settling without it", _reason(exc))
            try:
                await self._store.settle([replace(item, entry=None)])
            except Exception as exc:
                self._last_error = exc
                if _database_away(exc):
                    return batch[index:]
                _log.error("a settlement was refused and dropped: %s", _reason(exc))
        return []

    async def flush(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)


_log = logging.getLogger("falbind.serve")


def _database_away(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached (try again later), as opposed
    to refusing what was written (a statement error: retrying would fail the same way)."""
    if isinstance(
        exc,
        OSError | sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.DisconnectionError,
    ):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        return bool(exc.connection_invalidated)
    return not isinstance(exc, sa.exc.StatementError)


def _get_key(conn: sa.Connection, token: str) -> KeyRecord | None:
    row = conn.execute(_SELECT_KEY, {"p_token": token}).mappings().first()
    return _record(dict(row)) if row is not None else None


def _reserve(conn: sa.Connection, token: str, amount: int) -> bool:
    return conn.execute(_RESERVE, {"p_token": token, "p_amount": amount}).first() is not None


def _upgrade(conn: sa.Connection) -> None:
    """Schema 1 → 2: add the new columns to the existing tables (the new tables are created
    by ``create_all``), then copy money from float columns into micro-units."""
    inspector = sa.inspect(conn)
    preparer = conn.dialect.identifier_preparer
    for table in (keys_table, log_table):
        if not inspector.has_table(table.name):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            kind = column.type.compile(dialect=conn.dialect)
            default = " NOT NULL DEFAULT 0" if column.server_default is not None else ""
            # Names and types come from this module's own metadata, never from input.
            conn.execute(
                sa.text(
                    f"ALTER TABLE {preparer.quote(table.name)} "
                    f"ADD COLUMN {preparer.quote(column.name)} {kind}{default}"
                )
            )
    # create_all makes the indexes of new tables only: the alias index of schema 2 on an old
    # table is made here (a savepoint, so that old duplicate aliases only skip it: the check
    # in create_key still holds within one process).
    try:
        with conn.begin_nested():
            for index in keys_table.indexes:
                index.create(conn, checkfirst=True)
    except sa.exc.IntegrityError:
        _log.warning("live keys share an alias: the unique alias index was not created")
    for table_name, old, new in _MIGRATED_MONEY:
        if not inspector.has_table(table_name):
            continue
        names = {column["name"] for column in inspector.get_columns(table_name)}
        if old in names:
            conn.execute(
                sa.text(
                    f"UPDATE {preparer.quote(table_name)} SET {preparer.quote(new)} = "
                    f"CAST(ROUND({preparer.quote(old)} * {MICROS}) AS BIGINT) "
                    f"WHERE {preparer.quote(old)} IS NOT NULL"
                )
            )


def _sqlite_engine(url: str, *, busy_timeout_ms: int, echo: bool) -> sa.Engine:
    """A sqlite3 engine: one connection per thread, WAL, and ``busy_timeout_ms`` to wait for
    another writer's lock (``synchronous=NORMAL`` is WAL's safe setting). Transactions are
    begun by :func:`_sqlite_begin_immediate`, not by the driver."""
    engine = sa.create_engine(
        url,
        echo=echo,
        connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
        poolclass=sa.pool.SingletonThreadPool,
    )

    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    sa.event.listen(engine, "connect", on_connect)
    sa.event.listen(engine, "begin", _sqlite_begin_immediate)
    return engine


def _is_busy(exc: sa.exc.OperationalError) -> bool:
    """SQLite's "database is locked" / "database table is locked" (SQLITE_BUSY/LOCKED)."""
    return "locked" in str(getattr(exc, "orig", exc)).lower()


_READ_ONLY: Final = "falbind_read_only"
"""``Connection.info`` flag: the transaction only reads (SQLite begins it deferred)."""


def _sqlite_begin_immediate(connection: Any) -> None:
    """Take SQLite's write lock when a transaction starts (SQLAlchemy's documented recipe for
    pysqlite/aiosqlite transactions). A transaction that reads and then writes (the admission
    check) would otherwise fail at once with "database is locked" when another process wrote
    in between; with the lock taken up front, it waits (busy timeout) instead. A transaction
    that only reads (:meth:`Store._read`) needs no lock: deferred."""
    read_only = connection.info.get(_READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _record(row: dict[str, Any]) -> KeyRecord:
    return KeyRecord(
        token=row["token"],
        key_name=row["key_name"],
        key_alias=row["key_alias"],
        models=tuple(row["models"] or ()),
        max_budget_micros=_int_or_none(row["max_budget_micros"]),
        spend_micros=int(row["spend_micros"] or 0),
        rpm_limit=row["rpm_limit"],
        expires_at=row["expires_at"],
        metadata=dict(row["metadata"] or {}),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        user_id=row.get("user_id"),
        team_id=row.get("team_id"),
        budget_duration=row.get("budget_duration"),
        budget_reset_at=row.get("budget_reset_at"),
        max_parallel_requests=row.get("max_parallel_requests"),
        tpm_limit=row.get("tpm_limit"),
    )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _reason(exc: BaseException) -> str:
    """A one-line reason without the URL (it may hold a password)."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).splitlines()[0] if str(original) else type(original).__name__
    return f"{type(original).__name__}: {text}"[:300]
