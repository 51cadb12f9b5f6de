"""The gateway on a real PostgreSQL (the Debian package `.ci/run` installs), started by the
tests as an unprivileged user in a temporary directory on a random 127.0.0.1 port; and two
`falbind serve` processes on one database sharing an rpm limit and a revocation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from falbind.serve import Store
from falbind.testing import FakeFalServer

from serve_support import (
    MASTER_KEY,
    GatewayProcess,
    PostgresCluster,
    ThreadedGateway,
    avoid_minute_boundary,
    build_config,
    config_data,
    write_config,
)

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

MODELS = {"flux-dev": "fal-ai/flux/dev", "flux-ultra": "fal_ai/fal-ai/flux-pro/v1.1-ultra"}
MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def fal() -> Iterator[FakeFalServer]:
    with FakeFalServer() as server:
        yield server


def asyncpg_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rate_limit_is_atomic_under_concurrency(
    backend: str, postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = (
        asyncpg_url(postgres.create_database())
        if backend == "postgresql"
        else f"sqlite:///{tmp_path}/rate.db"
    )

    async def scenario() -> tuple[list[float | None], float]:
        stores = [Store(url), Store(url)]  # two "replicas"
        try:
            for store in stores:
                await store.setup()
            _, record = await stores[0].create_key(rpm_limit=7, max_budget=1.0)
            slots = await asyncio.gather(
                *(stores[i % 2].take_rate_slot(record.token, 7, now=1000.0) for i in range(30))
            )
            reserved = await asyncio.gather(
                *(stores[i % 2].reserve_budget(record.token, 0.3) for i in range(10))
            )
            assert sum(reserved) == 3  # 0.9 of 1.0
            after = await stores[1].get_key(record.token)
            assert after is not None
            return list(slots), after.spend
        finally:
            for store in stores:
                await store.close()

    slots, spend = asyncio.run(scenario())
    assert sum(1 for s in slots if s is None) == 7
    assert all(s == pytest.approx(60.0) for s in slots if s is not None)  # a sliding minute
    assert spend == pytest.approx(0.9)


def test_gateway_on_postgresql(postgres: PostgresCluster, fal: FakeFalServer) -> None:
    url = postgres.create_database()
    with ThreadedGateway(build_config(config_data(fal, MODELS, database_url=url))) as gateway:
        ready = httpx.get(f"{gateway.url}/health/readiness").json()
        assert ready == {"status": "ready", "db": "connected", "schema_version": 2}
        key = httpx.post(
            f"{gateway.url}/key/generate", json={"max_budget": 0.015}, headers=MASTER
        ).json()["key"]
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
        assert client.images.generate(model="flux-ultra", prompt="a fox").data
        with pytest.raises(openai.BadRequestError) as caught:
            client.images.generate(model="flux-ultra", prompt="a fox")
        assert caught.value.code == "budget_exceeded"
        with pytest.raises(openai.BadRequestError):
            client.images.generate(model="flux-dev", prompt="a fox", extra_body={"sed": 1})
        logs = httpx.get(f"{gateway.url}/spend/logs", headers=MASTER).json()
        assert [(t["model"], t["requests"], t["images"]) for t in logs["totals"]] == [
            ("flux-dev", 1, 0),
            ("flux-ultra", 2, 1),
        ]
        assert sorted(row["status"] for row in logs["logs"]) == [200, 400, 400]
    assert fal.count(route="submit") == 1


def test_two_gateways_on_one_database_share_limits_and_revocations(
    postgres: PostgresCluster, fal: FakeFalServer, tmp_path: Path
) -> None:
    url = postgres.create_database()
    path = write_config(tmp_path / "config.yaml", config_data(fal, MODELS, database_url=url))
    with GatewayProcess(path) as first, GatewayProcess(path) as second:
        avoid_minute_boundary(20)
        created = httpx.post(
            f"{first.url}/key/generate", json={"rpm_limit": 5}, headers=MASTER
        ).json()
        key = created["key"]
        clients = [
            openai.OpenAI(base_url=f"{g.url}/v1", api_key=key, max_retries=0)
            for g in (first, second)
        ]

        def attempt(index: int) -> str:
            try:
                clients[index % 2].images.generate(model="flux-dev", prompt="a fox")
            except openai.RateLimitError:
                return "limited"
            return "ok"

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(attempt, range(12)))
        assert outcomes.count("ok") == 5, outcomes  # 5 per minute across both, not per replica
        assert fal.count(route="submit") == 5

        other = httpx.post(f"{second.url}/key/generate", json={}, headers=MASTER).json()["key"]
        for gateway in (first, second):
            client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=other, max_retries=0)
            assert client.images.generate(model="flux-dev", prompt="a fox").data
        revoked = httpx.post(f"{second.url}/key/delete", json={"keys": [other]}, headers=MASTER)
        assert revoked.status_code == 200
        for gateway in (first, second):
            client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=other, max_retries=0)
            with pytest.raises(openai.AuthenticationError):
                client.images.generate(model="flux-dev", prompt="a fox")


def test_sqlite_waits_for_another_writer_off_the_loop(tmp_path: Path) -> None:
    """A transaction that finds SQLite locked by another process is retried on the store's
    thread (waiting for the lock) while the event loop keeps running."""
    import sqlite3
    import threading

    path = tmp_path / "locked.db"

    async def scenario() -> tuple[bool, int]:
        store = Store(f"sqlite:///{path}")
        await store.setup()
        _, record = await store.create_key(rpm_limit=3)
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
        release.start()
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        try:
            admission = await store.admit(record.token, model_name="m")
        finally:
            ticker.cancel()
            release.join()
            other.close()
            await store.close()
        return admission.verdict == "ok", ticks

    admitted, ticks = asyncio.run(scenario())
    assert admitted
    assert ticks >= 10  # the loop ran while the transaction waited for the lock


def test_one_bad_log_row_never_loses_another_on_postgresql(postgres: PostgresCluster) -> None:
    from falbind.serve.store import LogEntry, LogWriter, Settlement

    url = asyncpg_url(postgres.create_database())

    async def scenario() -> tuple[int, list[int]]:
        store = Store(url)
        await store.setup()
        try:
            _, record = await store.create_key(max_budget=10.0)
            writer = LogWriter(store)
            for status in (200, 200, 10**12, 200):  # the third overflows INTEGER
                assert await store.reserve_budget(record.token, 0.02)
                writer.submit(
                    Settlement(
                        None,
                        record.token,
                        20_000,
                        10_000,
                        LogEntry(
                            "/v1/images/generations",
                            status,
                            1.0,
                            token=record.token,
                            model_name="m" * 400,  # longer than the column: cut, not refused
                        ),
                    )
                )
            await writer.flush()
            after = await store.get_key(record.token)
            assert after is not None
            rows = await store.logs(token=record.token)
            return after.spend_micros, sorted(row["status"] for row in rows)
        finally:
            await store.close()

    spend, statuses = asyncio.run(scenario())
    assert statuses == [200, 200, 200]  # only the bad row is lost
    assert spend == 4 * 10_000  # and every settlement, its own included, applied
