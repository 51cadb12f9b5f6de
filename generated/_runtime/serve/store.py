"""The gateway's database: virtual keys, shared rate limits and budgets, and the request log.

One code path for SQLite (aiosqlite; a file, no set-up) and PostgreSQL (asyncpg), through
SQLAlchemy 2's async Core. Every check that several gateway processes must agree on is one
atomic statement in the database, so replicas on one PostgreSQL share it:

- the request-per-minute limit is an ``INSERT ... ON CONFLICT DO UPDATE SET count = count + 1
  WHERE count < limit RETURNING count`` on a (key, minute) row: no row back means the limit is
  reached, whichever replica asked;
- a budget is reserved before the request with ``UPDATE ... SET spend = spend + estimate WHERE
  spend + estimate <= max_budget RETURNING spend`` and settled (or refunded) afterwards;
- a key is read on every request (no cache), so a revocation holds on every replica at once.

Keys are stored as SHA-256 digests: they are 256-bit random tokens, so a plain digest cannot be
brute-forced and a salted slow hash (for low-entropy passwords) would only add latency.
The schema is created at start and carries a version (:data:`SCHEMA_VERSION`); a database from
a newer falbind is refused instead of being written with the wrong shape.
"""

from __future__ import annotations

import fnmatch
import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

__all__ = [
    "SCHEMA_VERSION",
    "Admission",
    "KeyRecord",
    "LogEntry",
    "SpendTotal",
    "Store",
    "StoreError",
    "hash_key",
    "new_key",
]

SCHEMA_VERSION: Final = 1
KEY_PREFIX: Final = "sk-fb-"
_RATE_WINDOW_SECONDS: Final = 60
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
    sa.Column("max_budget", sa.Double, nullable=True),
    sa.Column("spend", sa.Double, nullable=False, server_default=sa.text("0")),
    sa.Column("rpm_limit", sa.Integer, nullable=True),
    sa.Column("expires_at", sa.Double, nullable=True),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("revoked_at", sa.Double, nullable=True),
)
rate_table = sa.Table(
    "falbind_rate",
    metadata,
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("window", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)
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
    sa.Column("cost", sa.Double, nullable=True),
    sa.Column("latency_ms", sa.Double, nullable=False),
    sa.Column("error_type", sa.String(100), nullable=True),
)


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
    """A virtual key as stored (never the key itself)."""

    token: str
    key_name: str
    key_alias: str | None
    models: tuple[str, ...]
    max_budget: float | None
    spend: float
    rpm_limit: int | None
    expires_at: float | None
    metadata: dict[str, Any]
    created_at: float
    revoked_at: float | None

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
            "expires": _iso(self.expires_at),
            "metadata": self.metadata,
            "created_at": _iso(self.created_at),
            "revoked": self.revoked_at is not None,
        }


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer of :meth:`Store.admit`."""

    verdict: Literal[
        "ok", "invalid", "revoked", "expired", "model_not_allowed", "rate_limited", "over_budget"
    ]
    record: KeyRecord | None = None
    retry_after: float | None = None
    """``rate_limited``: seconds until the current minute ends."""
    reserved: float | None = None
    """``ok`` with a budget: the amount reserved, settled when the request ends."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One request, as the gateway records it."""

    route: str
    status: int
    latency_ms: float
    token: str | None = None
    key_name: str | None = None
    model_name: str | None = None
    endpoint_id: str | None = None
    fal_request_ids: Sequence[str] = field(default_factory=tuple)
    images: int = 0
    cost: float | None = None
    error_type: str | None = None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class SpendTotal:
    """Totals for one (key, model) pair."""

    key_name: str
    model_name: str
    requests: int
    images: int
    cost: float


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(stamp, UTC).isoformat()


class Store:
    """The database behind one gateway process (see the module docstring)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.dialect = url.split("+", 1)[0].split(":", 1)[0]
        options: dict[str, Any] = {}
        if self.dialect == "sqlite":
            # SQLite takes one writer at a time. One connection per process queues this
            # process's statements in asyncio (cheap) instead of in SQLite's busy handler,
            # which sleeps up to 100 ms between tries; other processes wait up to 30 s.
            options["connect_args"] = {"timeout": 30}
            options["pool_size"] = 1
            options["max_overflow"] = 0
            options["pool_timeout"] = 60
        else:
            options["pool_size"] = 10
            options["max_overflow"] = 20
        self._engine: AsyncEngine = create_async_engine(url, echo=echo, **options)
        if self.dialect == "sqlite":
            sa.event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
            sa.event.listen(self._engine.sync_engine, "begin", _sqlite_begin_immediate)

    def __repr__(self) -> str:
        return f"<Store {self.dialect}>"  # the URL may hold a password

    async def close(self) -> None:
        await self._engine.dispose()

    # -- schema ------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Create the schema (or check its version); raises :class:`StoreError`."""
        try:
            async with self._engine.begin() as conn:
                if self.dialect == "postgresql":
                    await conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK}
                    )
                await conn.run_sync(metadata.create_all)
                version = (
                    await conn.execute(
                        sa.select(schema_table.c.version).where(schema_table.c.id == 1)
                    )
                ).scalar_one_or_none()
                if version is None:
                    await conn.execute(schema_table.insert().values(id=1, version=SCHEMA_VERSION))
                elif version > SCHEMA_VERSION:
                    raise StoreError(
                        f"the database has schema version {version}, newer than this falbind's "
                        f"{SCHEMA_VERSION}: upgrade falbind"
                    )
                elif version < SCHEMA_VERSION:  # pragma: no cover - no older version exists yet
                    await conn.execute(
                        schema_table.update()
                        .where(schema_table.c.id == 1)
                        .values(version=SCHEMA_VERSION)
                    )
        except StoreError:
            raise
        except (OSError, sa.exc.SQLAlchemyError) as exc:
            raise StoreError(f"cannot use the database ({self.dialect}): {_reason(exc)}") from None

    async def schema_version(self) -> int | None:
        async with self._engine.connect() as conn:
            result = await conn.execute(sa.select(schema_table.c.version))
            return result.scalar_one_or_none()

    async def ping(self) -> bool:
        """Whether the database answers (``/health/readiness``)."""
        try:
            async with self._engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (OSError, sa.exc.SQLAlchemyError):
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
    ) -> tuple[str, KeyRecord]:
        """A new key (the only time it is seen) and its record."""
        key = new_key()
        now = time.time()
        row = {
            "token": hash_key(key),
            "key_name": display_name(key),
            "key_alias": key_alias,
            "models": list(models),
            "max_budget": max_budget,
            "spend": 0.0,
            "rpm_limit": rpm_limit,
            "expires_at": now + duration_seconds if duration_seconds is not None else None,
            "metadata": dict(metadata or {}),
            "created_at": now,
            "revoked_at": None,
        }
        async with self._engine.begin() as conn:
            await conn.execute(keys_table.insert().values(**row))
        return key, _record(row)

    async def get_key(self, token: str) -> KeyRecord | None:
        async with self._engine.connect() as conn:
            result = await conn.execute(sa.select(keys_table).where(keys_table.c.token == token))
            row = result.mappings().first()
        return _record(dict(row)) if row is not None else None

    async def list_keys(self, *, include_revoked: bool = False) -> list[KeyRecord]:
        query = sa.select(keys_table).order_by(keys_table.c.created_at)
        if not include_revoked:
            query = query.where(keys_table.c.revoked_at.is_(None))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_record(dict(row)) for row in rows]

    async def find_tokens(self, reference: str) -> list[str]:
        """Tokens matching a key, its token (digest), its display name or its alias."""
        candidates = {reference, hash_key(reference)}
        query = sa.select(keys_table.c.token).where(
            sa.or_(
                keys_table.c.token.in_(candidates),
                keys_table.c.key_name == reference,
                keys_table.c.key_alias == reference,
            )
        )
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).scalars().all())

    async def revoke(self, tokens: Sequence[str]) -> int:
        """Revoke keys by token; how many were live."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                keys_table.update()
                .where(keys_table.c.token.in_(list(tokens)), keys_table.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        return int(result.rowcount)

    # -- limits ------------------------------------------------------------------------------

    async def admit(
        self,
        token: str,
        *,
        model_name: str | None,
        estimate: float = 0.0,
        now: float | None = None,
    ) -> Admission:
        """Everything a virtual key's request must pass, in one transaction: the key exists,
        is live and may use ``model_name``; then (when ``model_name`` is given) one slot of
        its rpm limit and ``estimate`` of its budget are taken, each atomically.

        With ``model_name=None`` only the key is checked (a request for an unknown model)."""
        now = time.time() if now is None else now
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.select(keys_table).where(keys_table.c.token == token))
            row = result.mappings().first()
            if row is None:
                return Admission("invalid")
            record = _record(dict(row))
            if record.revoked_at is not None:
                return Admission("revoked", record)
            if record.expires_at is not None and record.expires_at <= now:
                return Admission("expired", record)
            if model_name is None:
                return Admission("ok", record)
            if not record.allows(model_name):
                return Admission("model_not_allowed", record)
            if record.rpm_limit is not None:
                wait = await self._take_rate_slot(conn, token, record.rpm_limit, now)
                if wait is not None:
                    return Admission("rate_limited", record, retry_after=wait)
            if record.max_budget is not None:
                if not await self._reserve(conn, token, estimate):
                    return Admission("over_budget", record)
                return Admission("ok", record, reserved=estimate)
            return Admission("ok", record, reserved=0.0)  # the cost is added at the end

    async def take_rate_slot(
        self, token: str, limit: int, now: float | None = None
    ) -> float | None:
        """Count one request against ``limit`` per minute; ``None`` if admitted, else the
        seconds until the current minute ends (for ``Retry-After``)."""
        now = time.time() if now is None else now
        async with self._engine.begin() as conn:
            return await self._take_rate_slot(conn, token, limit, now)

    async def _take_rate_slot(
        self, conn: AsyncConnection, token: str, limit: int, now: float
    ) -> float | None:
        window = int(now // _RATE_WINDOW_SECONDS)
        insert = self._insert(rate_table).values(token=token, window=window, count=1)
        statement = insert.on_conflict_do_update(
            index_elements=[rate_table.c.token, rate_table.c.window],
            set_={"count": rate_table.c.count + 1},
            where=rate_table.c.count < limit,
        ).returning(rate_table.c.count)
        count = (await conn.execute(statement)).scalar_one_or_none()
        if count == 1:  # a new minute: forget the old ones
            await conn.execute(
                rate_table.delete().where(rate_table.c.token == token, rate_table.c.window < window)
            )
        if count is not None:
            return None
        return float((window + 1) * _RATE_WINDOW_SECONDS - now)

    async def reserve_budget(self, token: str, amount: float) -> bool:
        """Add ``amount`` to the key's spend if it stays within its budget (atomically)."""
        async with self._engine.begin() as conn:
            return await self._reserve(conn, token, amount)

    async def _reserve(self, conn: AsyncConnection, token: str, amount: float) -> bool:
        budget = keys_table.c.max_budget
        spend = keys_table.c.spend
        statement = (
            keys_table.update()
            .where(
                keys_table.c.token == token,
                sa.or_(budget.is_(None), sa.and_(spend < budget, spend + amount <= budget)),
            )
            .values(spend=spend + amount)
            .returning(spend)
        )
        return (await conn.execute(statement)).first() is not None

    async def adjust_spend(self, token: str, delta: float) -> None:
        """Settle a reservation: add ``delta`` (negative for a refund)."""
        await self.log(None, spend_delta=(token, delta))

    # -- request log -------------------------------------------------------------------------

    async def log(
        self, entry: LogEntry | None, *, spend_delta: tuple[str, float] | None = None
    ) -> None:
        """Record ``entry`` and settle a key's spend (``(token, delta)``) in one transaction."""
        if entry is None and (spend_delta is None or spend_delta[1] == 0):
            return
        async with self._engine.begin() as conn:
            if spend_delta is not None and spend_delta[1] != 0:
                token, delta = spend_delta
                await conn.execute(
                    keys_table.update()
                    .where(keys_table.c.token == token)
                    .values(spend=keys_table.c.spend + delta)
                )
            if entry is None:
                return
            await conn.execute(
                log_table.insert().values(
                    at=entry.at,
                    token=entry.token,
                    key_name=entry.key_name,
                    route=entry.route,
                    model_name=entry.model_name,
                    endpoint_id=entry.endpoint_id,
                    fal_request_ids=list(entry.fal_request_ids),
                    status=entry.status,
                    images=entry.images,
                    cost=entry.cost,
                    latency_ms=entry.latency_ms,
                    error_type=entry.error_type,
                )
            )

    async def logs(
        self, *, token: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        query = sa.select(log_table).order_by(log_table.c.id.desc()).limit(limit)
        if token is not None:
            query = query.where(log_table.c.token == token)
        if since is not None:
            query = query.where(log_table.c.at >= since)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [{**dict(row), "at": _iso(row["at"])} for row in rows]

    async def spend_totals(
        self, *, token: str | None = None, since: float | None = None
    ) -> list[SpendTotal]:
        """Per key and model: requests, images delivered and estimated cost."""
        key = sa.func.coalesce(log_table.c.key_name, "master key")
        model = sa.func.coalesce(log_table.c.model_name, "-")
        query = (
            sa.select(
                key.label("key_name"),
                model.label("model_name"),
                sa.func.count().label("requests"),
                sa.func.coalesce(sa.func.sum(log_table.c.images), 0).label("images"),
                sa.func.coalesce(sa.func.sum(log_table.c.cost), 0.0).label("cost"),
            )
            .where(log_table.c.route.like("%images%"))
            .group_by(key, model)
            .order_by(key, model)
        )
        if token is not None:
            query = query.where(log_table.c.token == token)
        if since is not None:
            query = query.where(log_table.c.at >= since)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            SpendTotal(
                str(r.key_name), str(r.model_name), int(r.requests), int(r.images), float(r.cost)
            )
            for r in rows
        ]

    def _insert(self, table: sa.Table) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL lets readers run beside the writer; ``synchronous=NORMAL`` is WAL's safe setting.
    Transactions are begun by :func:`_sqlite_begin_immediate`, not by the driver."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    """Take SQLite's write lock when a transaction starts (SQLAlchemy's documented recipe for
    pysqlite/aiosqlite transactions). A transaction that reads and then writes (the admission
    check) would otherwise fail at once with "database is locked" when another process wrote
    in between; with the lock taken up front, it waits (busy timeout) instead."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _record(row: dict[str, Any]) -> KeyRecord:
    return KeyRecord(
        token=row["token"],
        key_name=row["key_name"],
        key_alias=row["key_alias"],
        models=tuple(row["models"] or ()),
        max_budget=row["max_budget"],
        spend=float(row["spend"] or 0.0),
        rpm_limit=row["rpm_limit"],
        expires_at=row["expires_at"],
        metadata=dict(row["metadata"] or {}),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def _reason(exc: BaseException) -> str:
    """A one-line reason without the URL (it may hold a password)."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).splitlines()[0] if str(original) else type(original).__name__
    return f"{type(original).__name__}: {text}"[:300]
