"""The gateway's money under load and crashes, across processes: a budget of K images holds
against 50 concurrent requests on ``falbind serve --workers 2`` (SQLite) and on two replicas
sharing one PostgreSQL; ``kill -9`` of one replica mid-load leaves no reservation held, no fal
job running unwatched, and spend equal to what the clients received. Real sockets throughout:
the real ``openai`` SDK, ``falbind serve`` processes, a real PostgreSQL, the fake fal server.

``tests/test_serve_money.py`` covers one threaded gateway on SQLite; this file covers what
only several processes show: atomic reservations across processes, and recovery by another
process (or a restart) after ``kill -9``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from falbind.testing import FakeFalServer

from serve_support import (
    MASTER_KEY,
    GatewayProcess,
    PostgresCluster,
    ThreadedGateway,
    build_config,
    config_data,
    database_rows,
    kill_9,
    postgres_transaction,
    set_recovery_timings,
    unsettled_fal_jobs,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
MODELS = {"flux-dev": "fal-ai/flux/dev"}  # a count field (num_images), queue mode
PRICE_MICROS = 10_000  # 0.01 per image
BUDGET_IMAGES = 7
CONCURRENT = 50


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def fal() -> Iterator[FakeFalServer]:
    with FakeFalServer() as server:
        yield server


def new_key(gateway_url: str, **fields: Any) -> str:
    response = httpx.post(f"{gateway_url}/key/generate", json=fields, headers=MASTER, timeout=30)
    assert response.status_code == 200, response.text
    key: str = response.json()["key"]
    return key


def spend_seen_by(gateway_url: str, key: str) -> float:
    """The key's spend as ``/key/info`` answers it to the master key."""
    response = httpx.get(f"{gateway_url}/key/info", params={"key": key}, headers=MASTER, timeout=30)
    assert response.status_code == 200, response.text
    spend: float = response.json()["info"]["spend"]
    return spend


def sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def in_flight(url: str) -> tuple[int, int]:
    """(rows in flight, micro-units they reserve), every process together."""
    ((count, reserved),) = database_rows(
        url, "SELECT count(*), coalesce(sum(reserved_micros), 0) FROM falbind_inflight"
    )
    return int(count), int(reserved)


def settled(url: str) -> bool:
    return in_flight(url) == (0, 0)


def key_spend_micros(url: str) -> int:
    ((spend,),) = database_rows(url, "SELECT spend_micros FROM falbind_keys")
    return int(spend)


def error_types(url: str) -> list[str]:
    rows = database_rows(url, "SELECT error_type FROM falbind_spend_log")
    return sorted(str(row[0]) for row in rows if row[0] is not None)


def budget_load(urls: list[str], key: str, count_field: bool) -> tuple[int, int, list[str]]:
    """``CONCURRENT`` requests at once, alternating between ``urls``: (images delivered,
    successful answers, every outcome). Only a refusal for the budget is an expected error."""
    clients = [sdk(url, key) for url in urls]
    extra = {"num_images": 2} if count_field else {}
    start = threading.Barrier(CONCURRENT, timeout=30)

    def call(index: int) -> tuple[int, str]:
        start.wait()  # all 50 in flight together
        try:
            result = clients[index % len(clients)].images.generate(
                model="flux-dev", prompt="a fox", extra_body=extra
            )
        except openai.BadRequestError as exc:
            return 0, str(exc.code)
        except openai.APIError as exc:  # anything else is a finding: kept for the message
            return 0, f"{type(exc).__name__}: {exc}"
        return len(result.data), "ok"

    with ThreadPoolExecutor(CONCURRENT) as pool:
        outcomes = list(pool.map(call, range(CONCURRENT)))
    return (
        sum(images for images, _ in outcomes),
        sum(1 for _, outcome in outcomes if outcome == "ok"),
        [outcome for _, outcome in outcomes],
    )


def check_budget_held(
    fal: FakeFalServer,
    database_url: str,
    gateway_urls: list[str],
    key: str,
    count_field: bool,
) -> None:
    per_request = 2 if count_field else 1
    delivered, answered, outcomes = budget_load(gateway_urls, key, count_field)
    unexpected = [o for o in outcomes if o not in ("ok", "budget_exceeded")]
    assert unexpected == []
    # Nothing fails, so exactly as many requests as the budget holds are admitted and deliver.
    assert delivered == (BUDGET_IMAGES // per_request) * per_request <= BUDGET_IMAGES
    assert answered * per_request == delivered
    assert fal.count(route="submit") == answered  # fal saw no request that was not admitted
    wait_until(lambda: settled(database_url), timeout=10, what="every request settled")
    assert key_spend_micros(database_url) == delivered * PRICE_MICROS
    for url in gateway_urls:
        assert spend_seen_by(url, key) == pytest.approx(delivered * PRICE_MICROS / 1_000_000)
    assert unsettled_fal_jobs(fal) == []


# -- 1. --workers 2 on SQLite ------------------------------------------------------------------


@pytest.mark.parametrize("count_field", [False, True], ids=["no_count_field", "num_images"])
def test_a_budget_holds_on_two_workers_on_sqlite(
    fal: FakeFalServer, tmp_path: Path, count_field: bool
) -> None:
    database_url = f"sqlite:///{tmp_path / 'gateway.db'}"
    path = write_config(
        tmp_path / "config.yaml", config_data(fal, MODELS, database_url=database_url)
    )
    with GatewayProcess(path, extra=("--workers", "2")) as gateway:
        key = new_key(gateway.url, max_budget=BUDGET_IMAGES * PRICE_MICROS / 1_000_000)
        # Two worker processes, each its own gateway instance on the one database file.
        wait_until(
            lambda: database_rows(database_url, "SELECT count(*) FROM falbind_instances") == [(2,)],
            timeout=30,
            what="both workers registered",
        )
        check_budget_held(fal, database_url, [gateway.url], key, count_field)


# -- 2. two replicas on one PostgreSQL -------------------------------------------------------


@pytest.mark.parametrize("count_field", [False, True], ids=["no_count_field", "num_images"])
def test_a_budget_holds_on_two_replicas_on_postgresql(
    postgres: PostgresCluster, fal: FakeFalServer, tmp_path: Path, count_field: bool
) -> None:
    database_url = postgres.create_database()
    path = write_config(
        tmp_path / "config.yaml", config_data(fal, MODELS, database_url=database_url)
    )
    with GatewayProcess(path) as first, GatewayProcess(path) as second:
        key = new_key(first.url, max_budget=BUDGET_IMAGES * PRICE_MICROS / 1_000_000)
        check_budget_held(fal, database_url, [first.url, second.url], key, count_field)


# -- 3. kill -9 of one replica mid-load, on PostgreSQL ----------------------------------------


def generate(client: openai.OpenAI, count_field: bool) -> tuple[int, str]:
    """One images request: (images received, "ok" | "cut" | what else happened)."""
    extra = {"num_images": 2} if count_field else {}
    try:
        result = client.images.generate(model="flux-dev", prompt="a fox", extra_body=extra)
    except openai.APIConnectionError:
        return 0, "cut"
    except openai.APIError as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    return len(result.data), "ok"


def jobs_recorded(url: str) -> int:
    ((count,),) = database_rows(url, "SELECT count(*) FROM falbind_inflight_jobs")
    return int(count)


class Load:
    """Requests sent from a thread pool in groups; each group is submitted to fal whole
    before the next starts, so each gets the fake server's ``processing_time`` of its own."""

    def __init__(self, fal: FakeFalServer, pool: ThreadPoolExecutor) -> None:
        self.fal = fal
        self.pool = pool
        self.calls: dict[str, list[Future[tuple[int, str]]]] = {}

    def send(
        self, name: str, client: openai.OpenAI, count: int, *, processing_time: float
    ) -> list[Future[tuple[int, str]]]:
        submitted = self.fal.count(route="submit")
        self.fal.processing_time = processing_time
        calls = [self.pool.submit(generate, client, i % 2 == 1) for i in range(count)]
        wait_until(
            lambda: self.fal.count(route="submit") >= submitted + count,
            timeout=20,
            what=f"group {name} submitted to fal",
        )
        self.calls[name] = calls
        return calls

    def outcomes(self, name: str) -> list[str]:
        return [call.result(timeout=60)[1] for call in self.calls[name]]

    def delivered(self) -> int:
        return sum(call.result(timeout=60)[0] for calls in self.calls.values() for call in calls)


def test_kill_9_of_one_replica_mid_load_on_postgresql(
    postgres: PostgresCluster, fal: FakeFalServer, tmp_path: Path
) -> None:
    database_url = postgres.create_database()
    path = write_config(
        tmp_path / "config.yaml", config_data(fal, MODELS, database_url=database_url)
    )
    doomed = GatewayProcess(path).__enter__()
    try:
        # The survivor starts last: its own periodic reconciliation comes round 30 s after its
        # start, well after this test's requests are over.
        with GatewayProcess(path) as survivor, ThreadPoolExecutor(16) as pool:
            key = new_key(survivor.url, max_budget=1.0)
            to_doomed, to_survivor = sdk(doomed.url, key), sdk(survivor.url, key)
            load = Load(fal, pool)
            # Completed and delivered on both replicas before the crash.
            load.send("early-doomed", to_doomed, 4, processing_time=0.05)
            load.send("early-survivor", to_survivor, 4, processing_time=0.05)
            assert load.outcomes("early-doomed") + load.outcomes("early-survivor") == ["ok"] * 8
            wait_until(lambda: settled(database_url), timeout=10, what="early requests settled")
            # In flight at the crash: the survivor's own (they finish after it), the doomed
            # replica's long jobs (to cancel), and its short ones (done on fal by the restart,
            # never collected by the dead process: to collect).
            load.send("running-survivor", to_survivor, 4, processing_time=6.0)
            load.send("running-doomed", to_doomed, 4, processing_time=120.0)
            short = load.send("short-doomed", to_doomed, 3, processing_time=4.0)
            short_done_at = time.monotonic() + 4.0
            wait_until(lambda: jobs_recorded(database_url) == 11, timeout=10, what="jobs recorded")
            assert not any(call.done() for call in short)
            kill_9(doomed)
            assert load.outcomes("running-doomed") + load.outcomes("short-doomed") == ["cut"] * 7
            # The survivor keeps serving while the other replica is down.
            load.send("after-crash", to_survivor, 3, processing_time=0.05)
            assert load.outcomes("after-crash") == ["ok"] * 3
            time.sleep(max(0.0, short_done_at - time.monotonic()) + 0.2)
            with GatewayProcess(path) as restarted:  # reconciles what the dead one left
                load.send("restarted", sdk(restarted.url, key), 2, processing_time=0.05)
                assert load.outcomes("restarted") == ["ok"] * 2
                assert load.outcomes("running-survivor") == ["ok"] * 4
                wait_until(lambda: settled(database_url), timeout=10, what="all settled")
                delivered = load.delivered()
                for url in (survivor.url, restarted.url):
                    assert spend_seen_by(url, key) == pytest.approx(delivered * PRICE_MICROS / 1e6)
    finally:
        doomed.__exit__()
    requests = 4 + 4 + 4 + 4 + 3 + 3 + 2
    assert fal.count(route="submit") == requests
    # Groups alternate 1 and 2 images (n, then num_images): 6 + 6 + 6 (4 each), 4 (3), 3 (2).
    assert delivered == 25
    assert key_spend_micros(database_url) == delivered * PRICE_MICROS
    assert unsettled_fal_jobs(fal) == []
    assert fal.count(route="cancel") == 4  # the long jobs the dead replica left running
    assert (
        error_types(database_url) == ["interrupted_cancelled"] * 4 + ["interrupted_collected"] * 3
    )


# -- 4. a replica's periodic takeover leaves its own requests alone ----------------------------


def test_a_periodic_reconciliation_leaves_the_gateways_own_requests_alone(
    fal: FakeFalServer, tmp_path: Path
) -> None:
    """Every ``stale_after`` seconds a gateway takes over what dead ones left in flight; its
    own requests, still running, are not orphans: their jobs run on, they are charged once."""
    fal.processing_time = 1.5
    database_url = f"sqlite:///{tmp_path / 'gateway.db'}"
    gateway = ThreadedGateway(build_config(config_data(fal, MODELS, database_url=database_url)))
    set_recovery_timings(gateway, heartbeat_seconds=0.1, stale_after=0.3)
    with gateway:
        key = new_key(gateway.url, max_budget=1.0)
        images, outcome = generate(sdk(gateway.url, key), count_field=False)
        spend_seen_by(gateway.url, key)  # settles what this gateway wrote
        spend = key_spend_micros(database_url)
        logged = error_types(database_url)
    assert (outcome, images, spend, fal.count(route="cancel"), logged) == (
        "ok",
        1,
        PRICE_MICROS,
        0,
        [],
    )


# -- 5. an answer sent is charged, even when the gateway dies right after it -------------------


def test_an_answer_sent_just_before_kill_9_stays_charged(
    postgres: PostgresCluster, fal: FakeFalServer, tmp_path: Path
) -> None:
    """The settlement of a delivered request must be durable before (or with) its answer:
    else a crash between the two turns the delivered request into an orphan, which the
    restart releases as if nothing had been delivered."""
    database_url = postgres.create_database()
    path = write_config(
        tmp_path / "config.yaml", config_data(fal, MODELS, database_url=database_url)
    )
    fal.processing_time = 1.5
    gateway = GatewayProcess(path).__enter__()
    try:
        key = new_key(gateway.url, max_budget=1.0)
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(generate, sdk(gateway.url, key), False)
            wait_until(lambda: jobs_recorded(database_url) == 1, timeout=10, what="job recorded")
            # Another session holds the row in flight (a slow database, an operator's query):
            # writing the settlement waits for it.
            with postgres_transaction(database_url, "SELECT * FROM falbind_inflight FOR UPDATE"):
                wait([call], timeout=6)  # the job takes 1.5 s: an answer, if one comes
                kill_9(gateway)
            images, outcome = call.result(timeout=30)
    finally:
        gateway.__exit__()
    assert outcome in ("ok", "cut")
    with GatewayProcess(path) as restarted:
        spend = spend_seen_by(restarted.url, key)
    assert settled(database_url)
    assert unsettled_fal_jobs(fal) == []
    assert key_spend_micros(database_url) == images * PRICE_MICROS, (images, outcome, spend)


# -- 6. a job fal accepted just before the crash, not yet recorded, is still found -------------


def test_a_job_accepted_but_not_yet_recorded_at_kill_9_is_still_cancelled(
    postgres: PostgresCluster, fal: FakeFalServer, tmp_path: Path
) -> None:
    """fal accepts the job; the gateway dies before the job's id is written (here the write
    waits on a lock another session holds). The restart must still find the job (fal's
    request history: ``GET /v1/models/requests/by-endpoint``, see DESIGN.md §7) and cancel
    it: the row in flight says which model and since when."""
    database_url = postgres.create_database()
    path = write_config(
        tmp_path / "config.yaml", config_data(fal, MODELS, database_url=database_url)
    )
    fal.processing_time = 120.0
    gateway = GatewayProcess(path).__enter__()
    try:
        key = new_key(gateway.url, max_budget=1.0)
        with ThreadPoolExecutor(1) as pool:
            lock = "LOCK TABLE falbind_inflight_jobs IN EXCLUSIVE MODE"  # reads go on
            with postgres_transaction(database_url, lock):
                call = pool.submit(generate, sdk(gateway.url, key), False)
                wait_until(lambda: fal.count(route="submit") == 1, timeout=10, what="a submit")
                wait_until(lambda: in_flight(database_url)[0] == 1, timeout=10, what="admitted")
                kill_9(gateway)
            assert call.result(timeout=30) == (0, "cut")
    finally:
        gateway.__exit__()
    with GatewayProcess(path) as restarted:
        spend = spend_seen_by(restarted.url, key)
    assert in_flight(database_url) == (0, 0)
    assert spend == 0.0
    assert unsettled_fal_jobs(fal) == []  # fal would run it, and bill it, with nobody waiting


# -- 7. without a restart, another replica takes over once the dead one's heartbeat is stale ----


def test_a_live_replica_takes_over_a_dead_replica_on_another_host(
    postgres: PostgresCluster, fal: FakeFalServer, tmp_path: Path
) -> None:
    """Nobody restarts the dead replica, and it ran on another host (so its PID says nothing
    here): its heartbeat goes stale and the live replica, reconciling every ``stale_after``
    seconds, cancels its jobs and releases its reservations."""
    database_url = postgres.create_database()
    data = config_data(fal, MODELS, database_url=database_url)
    path = write_config(tmp_path / "config.yaml", data)
    survivor = ThreadedGateway(build_config(data))
    set_recovery_timings(survivor, heartbeat_seconds=0.2, stale_after=2.0)
    doomed = GatewayProcess(path).__enter__()
    try:
        with survivor, ThreadPoolExecutor(8) as pool:
            key = new_key(survivor.url, max_budget=1.0)
            load = Load(fal, pool)
            load.send("delivered", sdk(doomed.url, key), 3, processing_time=0.05)
            assert load.outcomes("delivered") == ["ok"] * 3
            wait_until(lambda: settled(database_url), timeout=10, what="delivered settled")
            load.send("running", sdk(doomed.url, key), 4, processing_time=120.0)
            wait_until(lambda: jobs_recorded(database_url) == 4, timeout=10, what="recorded")
            assert doomed.process is not None
            pid = doomed.process.pid
            kill_9(doomed)
            database_rows(
                database_url,
                f"UPDATE falbind_instances SET host = 'another-host' WHERE pid = {pid} "
                "RETURNING id",
            )
            assert load.outcomes("running") == ["cut"] * 4
            wait_until(lambda: settled(database_url), timeout=15, what="taken over")
            spend = spend_seen_by(survivor.url, key)
            load.send("after", sdk(survivor.url, key), 2, processing_time=0.05)
            assert load.outcomes("after") == ["ok"] * 2
            delivered = load.delivered()
    finally:
        doomed.__exit__()
    assert delivered == 4 + 3  # 1 + 2 + 1, then 1 + 2
    assert spend == pytest.approx(4 * PRICE_MICROS / 1e6)  # only what was delivered before
    assert key_spend_micros(database_url) == delivered * PRICE_MICROS
    assert fal.count(route="cancel") == 4
    assert unsettled_fal_jobs(fal) == []
    assert error_types(database_url) == ["interrupted_cancelled"] * 4


# -- 8. kill -9 of one of the --workers 2 mid-load, on SQLite ---------------------------------


def test_kill_9_of_one_worker_mid_load_on_sqlite(fal: FakeFalServer, tmp_path: Path) -> None:
    """uvicorn replaces a worker that died; the new worker, at its start, collects or
    cancels what the dead one left in flight (same host, its PID gone) while the other
    worker's requests run on and are delivered."""
    database_url = f"sqlite:///{tmp_path / 'gateway.db'}"
    path = write_config(
        tmp_path / "config.yaml", config_data(fal, MODELS, database_url=database_url)
    )
    count_instances = "SELECT count(*) FROM falbind_instances"
    with GatewayProcess(path, extra=("--workers", "2")) as gateway, ThreadPoolExecutor(16) as pool:
        wait_until(lambda: database_rows(database_url, count_instances) == [(2,)], timeout=30)
        key = new_key(gateway.url, max_budget=1.0)
        client = sdk(gateway.url, key)
        load = Load(fal, pool)
        load.send("delivered", client, 6, processing_time=0.05)
        assert load.outcomes("delivered") == ["ok"] * 6
        wait_until(lambda: settled(database_url), timeout=10, what="delivered settled")
        running = load.send("running", client, 8, processing_time=5.0)
        wait_until(lambda: jobs_recorded(database_url) == 8, timeout=10, what="recorded")
        ((victim, pid, owned),) = database_rows(
            database_url,
            "SELECT i.id, i.pid, count(f.id) FROM falbind_instances i JOIN falbind_inflight f "
            "ON f.instance = i.id GROUP BY i.id, i.pid ORDER BY count(f.id) DESC, i.id LIMIT 1",
        )
        assert pid != (gateway.process.pid if gateway.process else None)  # a worker, not uvicorn
        os.kill(int(pid), signal.SIGKILL)
        outcomes = [call.result(timeout=60)[1] for call in running]
        assert sorted(outcomes) == ["cut"] * owned + ["ok"] * (8 - owned)
        # The replacement worker registers and reconciles at its start.
        wait_until(
            lambda: (
                database_rows(
                    database_url, f"SELECT count(*) FROM falbind_instances WHERE id = '{victim}'"
                )
                == [(0,)]
                and database_rows(database_url, count_instances) == [(2,)]
            ),
            timeout=40,
            what="the dead worker replaced and reconciled",
        )
        wait_until(lambda: settled(database_url), timeout=10, what="all settled")
        load.send("after", client, 4, processing_time=0.05)
        assert load.outcomes("after") == ["ok"] * 4
        delivered = load.delivered()
        wait_until(lambda: settled(database_url), timeout=10, what="after settled")
    assert key_spend_micros(database_url) == delivered * PRICE_MICROS
    assert unsettled_fal_jobs(fal) == []
    recovered = error_types(database_url)
    assert len(recovered) == owned
    assert set(recovered) <= {"interrupted_cancelled", "interrupted_collected"}
