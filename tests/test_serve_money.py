"""The gateway's money rules, each reproduced as the audit found it broken: what a request will
really produce is capped and reserved; every path settles or releases and logs; only bounded,
configured values reach the database; prices come from the config or fal's pricing API; rate
limits slide; fal jobs are recorded before the gateway waits on them and reconciled after a
crash. Real sockets throughout: the real ``openai`` SDK, the gateway under uvicorn, the fake fal
server."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from falbind.serve import Store
from falbind.serve.money import to_micros
from falbind.serve.store import Ticket
from falbind.testing import FakeFalServer, Fault

from serve_support import (
    MASTER_KEY,
    GatewayProcess,
    ThreadedGateway,
    build_config,
    config_data,
    free_port,
    write_config,
)

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
MODELS: dict[str, Any] = {
    "flux-dev": "fal-ai/flux/dev",  # num_images, at most 4 per request
    "recraft": "fal-ai/recraft/v3/text-to-image",  # no count field
}


@pytest.fixture
def fal() -> Iterator[FakeFalServer]:
    with FakeFalServer() as server:
        yield server


def gateway_for(
    fal: FakeFalServer,
    tmp_path: Path,
    models: dict[str, Any] | None = None,
    *,
    cost: float | None = 0.01,
    settings: dict[str, Any] | None = None,
    database: str = "gateway.db",
) -> ThreadedGateway:
    data = config_data(
        fal,
        models or MODELS,
        database_url=f"sqlite:///{tmp_path / database}",
        cost=cost,
        settings=settings,
    )
    return ThreadedGateway(build_config(data))


def new_key(gateway_url: str, **fields: Any) -> str:
    response = httpx.post(f"{gateway_url}/key/generate", json=fields, headers=MASTER)
    assert response.status_code == 200, response.text
    key: str = response.json()["key"]
    return key


def key_info(gateway_url: str, key: str) -> dict[str, Any]:
    response = httpx.get(f"{gateway_url}/key/info", params={"key": key}, headers=MASTER)
    assert response.status_code == 200, response.text
    info: dict[str, Any] = response.json()["info"]
    return info


def sdk(url: str, key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def rows(database: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as conn:
        return list(conn.execute(query).fetchall())


# -- 1. what a request produces is capped and reserved -----------------------------------------


def test_a_count_field_cannot_bypass_the_cap(fal: FakeFalServer, tmp_path: Path) -> None:
    with gateway_for(fal, tmp_path) as gateway:
        key = new_key(gateway.url, max_budget=0.25)
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(gateway.url, key).images.generate(
                model="flux-dev", prompt="a fox", extra_body={"num_images": 20000}
            )
        assert caught.value.code == "too_many_images"
        assert "20000" in caught.value.message
        assert fal.count(route="submit") == 0
        assert key_info(gateway.url, key)["spend"] == 0.0


def test_a_count_field_is_reserved_and_charged_per_image(
    fal: FakeFalServer, tmp_path: Path
) -> None:
    with gateway_for(fal, tmp_path) as gateway:
        small = new_key(gateway.url, max_budget=0.025)  # 2.5 images at 0.01
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(gateway.url, small).images.generate(
                model="flux-dev", prompt="a fox", extra_body={"num_images": 4}
            )
        assert caught.value.code == "budget_exceeded"
        assert fal.count(route="submit") == 0
        larger = new_key(gateway.url, max_budget=0.05)
        result = sdk(gateway.url, larger).images.generate(
            model="flux-dev", prompt="a fox", extra_body={"num_images": 4}
        )
        assert len(result.data) == 4
        assert key_info(gateway.url, larger)["spend"] == pytest.approx(0.04)


def test_the_cap_is_configurable(fal: FakeFalServer, tmp_path: Path) -> None:
    with gateway_for(fal, tmp_path, settings={"max_images_per_request": 3}) as gateway:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(gateway.url).images.generate(model="recraft", prompt="a fox", n=4)
        assert caught.value.code == "too_many_images"
        assert len(sdk(gateway.url).images.generate(model="recraft", prompt="x", n=3).data) == 3
    assert fal.count(route="submit") == 3


# -- 3. only bounded, configured values are logged ---------------------------------------------


def test_unauthenticated_noise_and_unknown_names_stay_out_of_the_database(
    fal: FakeFalServer, tmp_path: Path
) -> None:
    database = tmp_path / "gateway.db"
    with gateway_for(fal, tmp_path) as gateway:
        huge = "m" * 1_000_000
        for _ in range(20):
            answer = httpx.post(
                f"{gateway.url}/v1/images/generations", json={"model": huge, "prompt": "x"}
            )
            assert answer.status_code == 401
        key = new_key(gateway.url)
        with pytest.raises(openai.NotFoundError):
            sdk(gateway.url, key).images.generate(model="m" * 400, prompt="x")
        with pytest.raises(openai.BadRequestError):
            sdk(gateway.url, key).images.generate(model="flux-dev", prompt="x", extra_body={"q": 1})
        logs = httpx.get(f"{gateway.url}/spend/logs", headers=MASTER).json()["logs"]
    assert sorted((row["status"], row["model_name"]) for row in logs) == [
        (400, "flux-dev"),
        (404, None),
    ]
    assert database.stat().st_size < 2_000_000
    assert (
        max(len(r[0] or "") for r in rows(database, "SELECT model_name FROM falbind_spend_log"))
        <= 300
    )


# -- 5. unexpected errors settle, log and answer in OpenAI's shape -----------------------------


def test_an_unexpected_error_releases_the_reservation_and_is_logged(
    fal: FakeFalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import falbind.serve.app as app_module

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("something nobody planned for")

    with gateway_for(fal, tmp_path) as gateway:
        key = new_key(gateway.url, max_budget=1.0)
        monkeypatch.setattr(app_module, "run_job", broken)
        with pytest.raises(openai.InternalServerError) as caught:
            sdk(gateway.url, key).images.generate(model="flux-dev", prompt="a fox")
        assert caught.value.code == "internal_error"
        monkeypatch.undo()
        # A prompt with a lone surrogate (valid JSON, not valid Unicode) is refused up front.
        answer = httpx.post(
            f"{gateway.url}/v1/images/generations",
            content=b'{"model": "flux-dev", "prompt": "a \\ud800 fox"}',
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        assert answer.status_code == 400
        assert answer.json()["error"]["param"] == "prompt"
        assert key_info(gateway.url, key)["spend"] == 0.0
        logs = httpx.get(f"{gateway.url}/spend/logs", headers=MASTER).json()["logs"]
    assert sorted((row["status"], row["error_type"]) for row in logs) == [
        (400, "invalid_value"),
        (500, "internal_error"),
    ]
    assert rows(tmp_path / "gateway.db", "SELECT count(*) FROM falbind_inflight") == [(0,)]


def test_deeply_nested_json_is_an_openai_shaped_400(fal: FakeFalServer, tmp_path: Path) -> None:
    with gateway_for(fal, tmp_path) as gateway:
        deep = (
            b'{"model": "flux-dev", "prompt": "x", "extra": '
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}"
        )
        answer = httpx.post(
            f"{gateway.url}/v1/images/generations",
            content=deep,
            headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
        )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_json"


# -- 8. every request is priced --------------------------------------------------------------


def test_prices_come_from_fal_when_the_config_has_none(fal: FakeFalServer, tmp_path: Path) -> None:
    fal.prices["fal-ai/flux/dev"] = ("0.025", "images")
    fal.prices["fal-ai/recraft/v3/text-to-image"] = ("0.04", "megapixels")
    with gateway_for(fal, tmp_path, cost=None) as gateway:
        budgeted = new_key(gateway.url, max_budget=1.0)
        sdk(gateway.url, budgeted).images.generate(model="flux-dev", prompt="a fox", n=2)
        assert key_info(gateway.url, budgeted)["spend"] == pytest.approx(0.05)
        # Priced per megapixel: what a request costs is not known before it runs.
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(gateway.url, budgeted).images.generate(model="recraft", prompt="a fox")
        assert caught.value.code == "price_unknown"
        assert "megapixels" in caught.value.message
        unbudgeted = new_key(gateway.url)
        assert sdk(gateway.url, unbudgeted).images.generate(model="recraft", prompt="x").data
    assert fal.count(route="pricing") == 1  # both endpoints in one request, at start
    assert fal.count(route="submit") == 2


def test_an_unpriced_model_is_never_free_for_a_budgeted_key(
    fal: FakeFalServer, tmp_path: Path
) -> None:
    fal.default_price = None
    with gateway_for(fal, tmp_path, cost=None) as gateway:
        key = new_key(gateway.url, max_budget=100.0)
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(gateway.url, key).images.generate(model="flux-dev", prompt="a fox")
        assert caught.value.code == "price_unknown"
    assert fal.count(route="submit") == 0


def test_prices_kept_in_the_database_survive_fal_being_away(
    fal: FakeFalServer, tmp_path: Path
) -> None:
    fal.prices["fal-ai/flux/dev"] = ("0.03", "image")
    with gateway_for(fal, tmp_path, cost=None):
        pass
    fal.inject(Fault.http(503), route="pricing", times=None)
    with gateway_for(fal, tmp_path, cost=None) as gateway:
        key = new_key(gateway.url, max_budget=1.0)
        sdk(gateway.url, key).images.generate(model="flux-dev", prompt="a fox")
        assert key_info(gateway.url, key)["spend"] == pytest.approx(0.03)


def test_money_is_integer_micro_units() -> None:
    assert to_micros(0.1) == 100_000
    assert to_micros("0.025") == 25_000
    assert to_micros(0.0000001, round_up=True) == 1
    for bad in (float("nan"), float("inf"), -1, True, "abc", 1e12):
        with pytest.raises(ValueError):
            to_micros(bad)


# -- 14. the rpm limit slides ----------------------------------------------------------------


def test_the_rate_limit_is_a_sliding_window(tmp_path: Path) -> None:
    async def scenario() -> list[float | None]:
        store = Store(f"sqlite:///{tmp_path / 'rate.db'}")
        await store.setup()
        try:
            _, record = await store.create_key(rpm_limit=2)
            # Two requests just before a minute ends, one just after: a calendar-minute counter
            # let the third through.
            return [
                await store.take_rate_slot(record.token, 2, now=now)
                for now in (119.5, 119.8, 120.2, 179.6)
            ]
        finally:
            await store.close()

    first, second, third, fourth = asyncio.run(scenario())
    assert first is None and second is None
    assert third == pytest.approx(59.3)  # until the first leaves the window
    assert fourth is None  # 60 s after the first


# -- 15. retries: what is provably safe, and the truth in x-should-retry ----------------------


def test_a_sync_5xx_is_retried_because_fal_bills_successes_only(
    fal: FakeFalServer, tmp_path: Path
) -> None:
    models = {"dev-sync": {"model": "fal-ai/flux/dev", "use_queue": False}}
    fal.inject(Fault.http(503, error_type="runner_scheduling_failure"), route="run", times=1)
    with gateway_for(fal, tmp_path, models) as gateway:
        assert sdk(gateway.url).images.generate(model="dev-sync", prompt="a fox").data
    assert fal.count(route="run") == 2


def test_could_not_reach_fal_says_a_retry_is_safe(fal: FakeFalServer, tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    models = {
        "nowhere": {
            "model": "fal-ai/flux/dev",
            "use_queue": False,
            "api_base": f"http://127.0.0.1:{closed}",
        }
    }
    with (
        gateway_for(fal, tmp_path, models) as gateway,
        pytest.raises(openai.APIStatusError) as caught,
    ):
        sdk(gateway.url).images.generate(model="nowhere", prompt="a fox")
    assert caught.value.status_code == 502
    assert caught.value.response.headers["x-should-retry"] == "true"


# -- 7. fal jobs are recorded before waiting, and reconciled after a crash ---------------------


def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_a_restart_cancels_what_a_dead_gateway_left_running(
    fal: FakeFalServer, tmp_path: Path
) -> None:
    fal.processing_time = 30.0
    database = tmp_path / "gateway.db"
    url = f"sqlite:///{database}"
    job = fal.async_client()

    async def crashed_gateway() -> tuple[str, str]:
        async with job:
            handle = await job.submit("fal-ai/flux/dev", {"prompt": "a fox"})
        store = Store(url)
        await store.setup()
        try:
            _, record = await store.create_key(max_budget=1.0)
            await store.register_instance("dead-instance")
            # The dead gateway ran on this host under a PID that no longer runs.
            await store._run(
                lambda conn: conn.exec_driver_sql(
                    f"UPDATE falbind_instances SET pid = {dead_pid()} WHERE id = 'dead-instance'"
                )
            )
            ticket = Ticket("req-1", "dead-instance", "/v1/images/generations", "flux-dev", 30_000)
            assert (await store.admit(record.token, ticket)).verdict == "ok"
            await store.record_job("req-1", "fal-ai/flux/dev", handle.request_id)
            after = await store.get_key(record.token)
            assert after is not None and after.spend_micros == 30_000
            return record.token, handle.request_id
        finally:
            await store.close()

    token, request_id = asyncio.run(crashed_gateway())
    with gateway_for(fal, tmp_path) as gateway:
        logs = httpx.get(f"{gateway.url}/spend/logs", headers=MASTER).json()["logs"]
        info = key_info(gateway.url, token)
    cancels = [r for r in fal.requests if r.route == "cancel"]
    assert len(cancels) == 1 and request_id in cancels[0].path
    assert info["spend"] == 0.0  # released: nothing was delivered
    assert [(row["status"], row["error_type"]) for row in logs] == [(500, "interrupted_cancelled")]
    assert logs[0]["fal_request_ids"] == [request_id]
    assert rows(database, "SELECT count(*) FROM falbind_inflight") == [(0,)]


def test_kill_9_mid_load_then_restart_settles_everything(
    fal: FakeFalServer, tmp_path: Path
) -> None:
    fal.processing_time = 20.0  # every job is still running when the gateway dies
    data = config_data(fal, MODELS, database_url=f"sqlite:///{tmp_path / 'gateway.db'}", cost=0.01)
    path = write_config(tmp_path / "config.yaml", data)
    with GatewayProcess(path) as gateway:
        key = new_key(gateway.url, max_budget=1.0)
        client = sdk(gateway.url, key)

        def call(_: int) -> str:
            try:
                client.images.generate(model="flux-dev", prompt="a fox", timeout=30)
            except openai.APIConnectionError:
                return "cut"
            return "ok"

        with ThreadPoolExecutor(8) as pool:
            calls = [pool.submit(call, i) for i in range(8)]
            deadline = time.monotonic() + 20
            while fal.count(route="submit") < 8 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # each job's id is written before the gateway waits on it
            assert gateway.process is not None
            os.kill(gateway.process.pid, signal.SIGKILL)
            assert [c.result(timeout=30) for c in calls] == ["cut"] * 8
        assert key_info_from_db(tmp_path / "gateway.db") == 80_000  # 8 reservations held
    with GatewayProcess(path) as restarted:
        info = key_info(restarted.url, key)
        logs = httpx.get(f"{restarted.url}/spend/logs", headers=MASTER).json()["logs"]
    assert fal.count(route="submit") == 8
    assert fal.count(route="cancel") == 8  # every accepted job cancelled
    assert info["spend"] == 0.0  # every reservation released; nothing was delivered
    assert sorted(row["error_type"] for row in logs) == ["interrupted_cancelled"] * 8
    assert rows(tmp_path / "gateway.db", "SELECT count(*) FROM falbind_inflight") == [(0,)]


def key_info_from_db(database: Path) -> int:
    ((spend,),) = rows(database, "SELECT spend_micros FROM falbind_keys")
    return int(spend)


# -- under load: a budget of K images holds against 50 concurrent requests ----------------------


@pytest.mark.parametrize("count_field", [False, True])
def test_a_budget_holds_under_fifty_concurrent_requests(
    fal: FakeFalServer, tmp_path: Path, count_field: bool
) -> None:
    with gateway_for(fal, tmp_path) as gateway:
        key = new_key(gateway.url, max_budget=0.05)  # 5 images at 0.01
        client = sdk(gateway.url, key)

        def call(_: int) -> int:
            extra = {"num_images": 2} if count_field else {}
            try:
                result = client.images.generate(model="flux-dev", prompt="x", extra_body=extra)
            except openai.BadRequestError as exc:
                assert exc.code == "budget_exceeded"
                return 0
            return len(result.data)

        with ThreadPoolExecutor(50) as pool:
            delivered = sum(pool.map(call, range(50)))
        spend = key_info(gateway.url, key)["spend"]
    assert 0 < delivered <= 5
    assert spend == pytest.approx(delivered * 0.01)


# -- 7 (outage) and 3 (one bad row): the log writer loses nothing --------------------------------


def test_the_log_writer_keeps_settlements_while_the_database_is_away(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from falbind.serve.store import LogEntry, LogWriter, Settlement

    async def scenario() -> tuple[int, int, int]:
        store = Store(f"sqlite:///{tmp_path / 'outage.db'}")
        await store.setup()
        _, record = await store.create_key(max_budget=1.0)
        assert await store.reserve_budget(record.token, 0.5)
        real_settle = store.settle
        outages = 3

        async def flaky(batch: Any) -> None:
            nonlocal outages
            if outages:
                outages -= 1
                raise sa.exc.OperationalError("UPDATE", {}, ConnectionRefusedError("db away"))
            await real_settle(batch)

        store.settle = flaky  # type: ignore[method-assign]
        writer = LogWriter(store)
        for _ in range(5):
            writer.submit(
                Settlement(
                    None,
                    record.token,
                    100_000,
                    30_000,
                    LogEntry("/v1/images/generations", 200, 1.0, token=record.token),
                )
            )
        await writer.flush()
        after = await store.get_key(record.token)
        logged = len(await store.logs(token=record.token))
        await store.close()
        assert after is not None
        return after.spend_micros, logged, writer.failures

    spend, logged, failures = asyncio.run(scenario())
    assert failures == 3
    assert logged == 5
    assert spend == 500_000 - 5 * 70_000  # every settlement applied once


def test_the_raw_key_never_reaches_the_sql_statement_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    async def scenario() -> str:
        store = Store(f"sqlite:///{tmp_path / 'echo.db'}", echo=True)
        await store.setup()
        key, record = await store.create_key(key_alias="logged")
        with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
            await store.find_tokens(key)
            await store.get_key(record.token)
            await store.admit(record.token, Ticket("r", "i", "/v1/images/generations", "m", 0))
        await store.close()
        return key

    key = asyncio.run(scenario())
    assert caplog.records  # statements were logged
    assert key not in caplog.text
    assert key[6:] not in caplog.text


def test_readiness_says_not_ready_when_the_database_is_gone(
    fal: FakeFalServer, tmp_path: Path
) -> None:
    with gateway_for(fal, tmp_path) as gateway:
        assert httpx.get(f"{gateway.url}/health/readiness").status_code == 200
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"gateway.db{suffix}").unlink(missing_ok=True)
        answer = httpx.get(f"{gateway.url}/health/readiness")
    assert answer.status_code == 503
    assert answer.json()["status"] == "not ready"


# -- 2. the key is checked from the headers before any body is read ----------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/v1/images/generations", "application/json"),
        ("/v1/images/edits", "multipart/form-data; boundary=x"),
    ],
)
def test_no_body_is_read_before_the_key_is_checked(
    fal: FakeFalServer, tmp_path: Path, path: str, content_type: str
) -> None:
    import socket

    with (
        gateway_for(fal, tmp_path) as gateway,
        socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock,
    ):
        # A chunked body that never ends: a server reading it before the key check would
        # wait for the rest (or buffer what it gets); this one answers 401 at once.
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
            + b"100000\r\n"
            + b"x" * 65536
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b'"invalid_api_key"' in answer
