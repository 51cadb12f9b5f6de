"""The gateway's database: virtual keys, shared rate limits and budgets, and the request log.

One code path for SQLite (a file, no set-up) and PostgreSQL (asyncpg), through SQLAlchemy 2
Core: every operation is one transaction written once (see :class:`Store` for how each
database runs it). Every check that several gateway processes must agree on is one
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

import asyncio
import fnmatch
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = [
    "SCHEMA_VERSION",
    "Admission",
    "KeyRecord",
    "LogEntry",
    "LogWriter",
    "SpendTotal",
    "Store",
    "StoreError",
    "hash_key",
    "new_key",
]

T = TypeVar("T")
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


# The statements of the request path, built once with bound parameters: building a Core
# statement per call (coercions, cache key) cost more CPU than running it.
_SELECT_KEY: Final = sa.select(keys_table).where(keys_table.c.token == sa.bindparam("p_token"))
_RESERVE: Final = (
    keys_table.update()
    .where(
        keys_table.c.token == sa.bindparam("p_token"),
        sa.or_(
            keys_table.c.max_budget.is_(None),
            sa.and_(
                keys_table.c.spend < keys_table.c.max_budget,
                keys_table.c.spend + sa.bindparam("p_amount", type_=sa.Double)
                <= keys_table.c.max_budget,
            ),
        ),
    )
    .values(spend=keys_table.c.spend + sa.bindparam("p_amount", type_=sa.Double))
    .returning(keys_table.c.spend)
)
_SETTLE: Final = (
    keys_table.update()
    .where(keys_table.c.token == sa.bindparam("p_token"))
    .values(spend=keys_table.c.spend + sa.bindparam("p_delta", type_=sa.Double))
)
_FORGET_OLD_WINDOWS: Final = rate_table.delete().where(
    rate_table.c.token == sa.bindparam("p_token"), rate_table.c.window < sa.bindparam("p_window")
)


def _rate_upsert(dialect: str) -> Any:
    """``INSERT (token, window, 1) ON CONFLICT DO UPDATE SET count = count + 1 WHERE count <
    limit RETURNING count`` for ``dialect``."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(rate_table).values(
        token=sa.bindparam("p_token"), window=sa.bindparam("p_window"), count=1
    )
    return statement.on_conflict_do_update(
        index_elements=[rate_table.c.token, rate_table.c.window],
        set_={"count": rate_table.c.count + 1},
        where=rate_table.c.count < sa.bindparam("p_limit"),
    ).returning(rate_table.c.count)


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
        self._rate_upsert = _rate_upsert(self.dialect)
        if self.dialect == "sqlite":
            sync_url = "sqlite://" + url.split("://", 1)[1]
            self._sync_engine = _sqlite_engine(sync_url, busy_timeout_ms=30_000, echo=echo)
            self._loop_engine = _sqlite_engine(sync_url, busy_timeout_ms=0, echo=echo)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="falbind-sqlite")
        else:
            self._engine = create_async_engine(url, echo=echo, pool_size=10, max_overflow=20)

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
        if self._sync_engine is not None:
            assert self._executor is not None and self._loop_engine is not None
            try:
                conn = self._loop_connection()
                with conn.begin():  # on the loop, never waiting
                    return work(conn, *args)
            except sa.exc.OperationalError as exc:
                if not _is_busy(exc):
                    raise
            engine = self._sync_engine

            def transaction() -> T:
                with engine.begin() as conn:
                    return work(conn, *args)

            return await asyncio.get_running_loop().run_in_executor(self._executor, transaction)
        assert self._engine is not None
        async with self._engine.begin() as async_conn:
            return await async_conn.run_sync(work, *args)

    # -- schema ------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Create the schema (or check its version); raises :class:`StoreError`."""
        try:
            await self._run(self._setup)
        except StoreError:
            raise
        except (OSError, sa.exc.SQLAlchemyError) as exc:
            raise StoreError(f"cannot use the database ({self.dialect}): {_reason(exc)}") from None

    def _setup(self, conn: sa.Connection) -> None:
        if self.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
        metadata.create_all(conn)
        version = conn.execute(
            sa.select(schema_table.c.version).where(schema_table.c.id == 1)
        ).scalar_one_or_none()
        if version is None:
            conn.execute(schema_table.insert().values(id=1, version=SCHEMA_VERSION))
        elif version > SCHEMA_VERSION:
            raise StoreError(
                f"the database has schema version {version}, newer than this falbind's "
                f"{SCHEMA_VERSION}: upgrade falbind"
            )
        elif version < SCHEMA_VERSION:  # pragma: no cover - no older version exists yet
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

    async def ping(self) -> bool:
        """Whether the database answers (``/health/readiness``)."""

        def select_one(conn: sa.Connection) -> None:
            conn.execute(sa.text("SELECT 1"))

        try:
            await self._run(select_one)
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

        def insert(conn: sa.Connection) -> None:
            conn.execute(keys_table.insert().values(**row))

        await self._run(insert)
        return key, _record(row)

    async def get_key(self, token: str) -> KeyRecord | None:
        return await self._run(_get_key, token)

    async def list_keys(self, *, include_revoked: bool = False) -> list[KeyRecord]:
        query = sa.select(keys_table).order_by(keys_table.c.created_at)
        if not include_revoked:
            query = query.where(keys_table.c.revoked_at.is_(None))

        def read(conn: sa.Connection) -> list[KeyRecord]:
            return [_record(dict(row)) for row in conn.execute(query).mappings().all()]

        return await self._run(read)

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
        return await self._run(
            self._admit, token, model_name, estimate, time.time() if now is None else now
        )

    def _admit(
        self,
        conn: sa.Connection,
        token: str,
        model_name: str | None,
        estimate: float,
        now: float,
    ) -> Admission:
        record = _get_key(conn, token)
        if record is None:
            return Admission("invalid")
        if record.revoked_at is not None:
            return Admission("revoked", record)
        if record.expires_at is not None and record.expires_at <= now:
            return Admission("expired", record)
        if model_name is None:
            return Admission("ok", record)
        if not record.allows(model_name):
            return Admission("model_not_allowed", record)
        if record.rpm_limit is not None:
            wait = self._take_rate_slot(conn, token, record.rpm_limit, now)
            if wait is not None:
                return Admission("rate_limited", record, retry_after=wait)
        if record.max_budget is not None:
            if not _reserve(conn, token, estimate):
                return Admission("over_budget", record)
            return Admission("ok", record, reserved=estimate)
        return Admission("ok", record, reserved=0.0)  # the cost is added at the end

    async def take_rate_slot(
        self, token: str, limit: int, now: float | None = None
    ) -> float | None:
        """Count one request against ``limit`` per minute; ``None`` if admitted, else the
        seconds until the current minute ends (for ``Retry-After``)."""
        return await self._run(
            self._take_rate_slot, token, limit, time.time() if now is None else now
        )

    def _take_rate_slot(
        self, conn: sa.Connection, token: str, limit: int, now: float
    ) -> float | None:
        window = int(now // _RATE_WINDOW_SECONDS)
        count = conn.execute(
            self._rate_upsert, {"p_token": token, "p_window": window, "p_limit": limit}
        ).scalar_one_or_none()
        if count == 1:  # a new minute: forget the old ones
            conn.execute(_FORGET_OLD_WINDOWS, {"p_token": token, "p_window": window})
        if count is not None:
            return None
        return float((window + 1) * _RATE_WINDOW_SECONDS - now)

    async def reserve_budget(self, token: str, amount: float) -> bool:
        """Add ``amount`` to the key's spend if it stays within its budget (atomically)."""
        return await self._run(_reserve, token, amount)

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
        await self._run(_log_batch, [(entry, spend_delta)])

    async def log_batch(
        self, items: Sequence[tuple[LogEntry | None, tuple[str, float] | None]]
    ) -> None:
        """Many :meth:`log` calls in one transaction (see :class:`LogWriter`)."""
        if items:
            await self._run(_log_batch, list(items))

    async def logs(
        self, *, token: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        query = sa.select(log_table).order_by(log_table.c.id.desc()).limit(limit)
        if token is not None:
            query = query.where(log_table.c.token == token)
        if since is not None:
            query = query.where(log_table.c.at >= since)

        def read(conn: sa.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(query).mappings().all()
            return [{**dict(row), "at": _iso(row["at"])} for row in rows]

        return await self._run(read)

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

        def read(conn: sa.Connection) -> list[SpendTotal]:
            return [
                SpendTotal(
                    str(r.key_name),
                    str(r.model_name),
                    int(r.requests),
                    int(r.images),
                    float(r.cost),
                )
                for r in conn.execute(query).all()
            ]

        return await self._run(read)


def _log_batch(
    conn: sa.Connection, items: list[tuple[LogEntry | None, tuple[str, float] | None]]
) -> None:
    deltas: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    for entry, spend_delta in items:
        if spend_delta is not None:
            deltas[spend_delta[0]] = deltas.get(spend_delta[0], 0.0) + spend_delta[1]
        if entry is not None:
            rows.append(_log_row(entry))
    for token, delta in deltas.items():
        if delta != 0:
            conn.execute(_SETTLE, {"p_token": token, "p_delta": delta})
    if rows:
        conn.execute(log_table.insert(), rows)


def _log_row(entry: LogEntry) -> dict[str, Any]:
    return {
        "at": entry.at,
        "token": entry.token,
        "key_name": entry.key_name,
        "route": entry.route,
        "model_name": entry.model_name,
        "endpoint_id": entry.endpoint_id,
        "fal_request_ids": list(entry.fal_request_ids),
        "status": entry.status,
        "images": entry.images,
        "cost": entry.cost,
        "latency_ms": entry.latency_ms,
        "error_type": entry.error_type,
    }


class LogWriter:
    """Writes the request log and spend settlements off the request path, in batches.

    A request's answer does not wait for its log row: :meth:`submit` queues it, and one task
    writes everything queued in one transaction, then whatever queued meanwhile (group
    commit, no timer). Limits stay exact: the budget is reserved before the request, in
    :meth:`Store.admit`; settling only replaces the reservation by the cost of what was
    delivered. :meth:`flush` waits for everything submitted so far (the spend routes call it
    first, and shutdown does).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: list[tuple[LogEntry | None, tuple[str, float] | None]] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, entry: LogEntry | None, spend_delta: tuple[str, float] | None = None) -> None:
        self._pending.append((entry, spend_delta))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._store.log_batch(batch)
            except Exception as exc:  # the answers were sent already; keep serving
                logging.getLogger("falbind.serve").error(
                    "could not write %d request log row(s): %s", len(batch), _reason(exc)
                )

    async def flush(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)


def _get_key(conn: sa.Connection, token: str) -> KeyRecord | None:
    row = conn.execute(_SELECT_KEY, {"p_token": token}).mappings().first()
    return _record(dict(row)) if row is not None else None


def _reserve(conn: sa.Connection, token: str, amount: float) -> bool:
    return conn.execute(_RESERVE, {"p_token": token, "p_amount": amount}).first() is not None


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
