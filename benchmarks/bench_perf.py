"""Client speed against the bare HTTP libraries and fal-client (issue 11). Prints figures;
asserts nothing.

    python benchmarks/bench_perf.py [--rounds N] [--calls N] [--total N]
        [--subscribe-calls N] [--subscribe-total N] [--only sync|async|subscribe|queue] [--markdown]

Every figure is a ratio against a reference measured in the same run, against the same minimal
keep-alive HTTP/1.1 server (its own process, so it does not share our GIL or core budget with
the client's interpreter). The machine is shared and noisy, so contenders run in interleaved
rounds (the order rotates each round) and each ratio is taken within one round; the median over
rounds is printed with its spread (min-max).

* sync: wall time per ``FalClient.run`` call (validation and decoding included) vs a bare
  ``httpx.Client.post(json=...).json()``;
* async: ``AsyncFalClient.run`` req/s at 64 and 256 concurrent calls vs bare aiohttp
  (``session.post(json=...)`` then ``.json()``), for the default client and, where this
  version has it, the ``aiohttp_session=`` path; fal-client's ``AsyncClient.run`` as a column,
  and falbind's req/s as a ratio to it (target >= 15x);
* subscribe (submit, wait for completion, fetch the result: three requests each): client CPU
  per call of ``FalClient.subscribe`` vs fal-client's ``SyncClient.subscribe`` one at a time
  (target <= 0.8x), and of ``AsyncFalClient.subscribe`` vs fal-client's
  ``AsyncClient.subscribe`` with 64 in flight (target <= 0.15x). The server completes each
  request at once; falbind watches fal's status stream as it does against fal, fal-client
  polls ``/status`` as it does against fal, and a "polling" row shows falbind without the
  stream (the server answers 404 there, so falbind polls like fal-client);
* async queue: ``AsyncFalClient.subscribe`` jobs/s at 64 concurrent jobs (submit, the status
  stream, the result) vs bare aiohttp making the same three requests and reading the same
  events.

fal-client comes with the ``bench`` extra (``pip install -e '.[bench]'``; ``dev`` includes it);
without it the fal-client figures are skipped and say so. See :func:`fal_client_at` for how
it is pointed at the local server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx

from falbind import AsyncFalClient, FalClient

ENDPOINT = "fal-ai/flux/schnell"
ARGUMENTS: dict[str, Any] = {"prompt": "a red fox in the snow", "image_size": "landscape_16_9"}

# A hand-written asyncio HTTP/1.1 server rather than a framework's: the reference (bare httpx or
# aiohttp) must be limited by the client, not by the server's own per-request overhead. It
# answers every request keep-alive, from fixed bytes where it can, speaking as much of fal's
# protocol as the clients use:
#   POST /run/{id}                       -> one fixed FluxSchnellOutput (fal's sync route)
#   POST /queue/{id}                     -> {request_id, status_url, response_url, cancel_url}
#   GET  .../requests/{n}/status         -> COMPLETED at once (what fal-client polls)
#   GET  .../requests/{n}/status/stream  -> one COMPLETED server-sent event, then the end
#                                           (fal's status stream, which falbind watches)
#   GET  .../requests/{n}                -> the output
# Under /queue-poll/ instead of /queue/ the status stream answers 404, as a server without it
# would: falbind then polls like fal-client (one GET status, then the result).
SERVER = textwrap.dedent(
    """
    import asyncio, itertools, json, sys
    output = json.dumps({
        "images": [{"url": "https://v3.fal.media/files/fox.jpeg", "width": 1024,
                    "height": 576, "content_type": "image/jpeg"}],
        "timings": {"inference": 0.25}, "seed": 42, "has_nsfw_concepts": [False],
        "prompt": "a red fox in the snow",
    }).encode()

    def answer(body, status=b"200 OK"):
        return (b"HTTP/1.1 %s\\r\\ncontent-type: application/json\\r\\n"
                b"x-fal-request-id: bench\\r\\ncontent-length: %d\\r\\n\\r\\n"
                % (status, len(body))) + body

    OUTPUT = answer(output)
    NOT_FOUND = answer(b'{"detail": "Not Found"}', b"404 Not Found")
    completed = json.dumps({"status": "COMPLETED", "logs": None,
                            "metrics": {"inference_time": 0.25}}).encode()
    STATUS = answer(completed)
    event = b"data: " + completed + b"\\n\\n"
    STREAM = (b"HTTP/1.1 200 OK\\r\\ncontent-type: text/event-stream\\r\\n"
              b"cache-control: no-cache\\r\\ntransfer-encoding: chunked\\r\\n\\r\\n"
              b"%x\\r\\n%s\\r\\n0\\r\\n\\r\\n" % (len(event), event))
    ids = itertools.count()
    origin = ""

    def route(method, target):
        path = target.split(b"?", 1)[0]
        if method == b"POST":
            if path.startswith(b"/run/"):
                return OUTPUT
            if path.startswith((b"/queue/", b"/queue-poll/")):
                # fal's URLs drop the endpoint's sub-path: fal-ai/flux/schnell -> fal-ai/flux
                queue, owner, app = path.decode().split("/")[1:4]
                request_id = str(next(ids))
                base = f"{origin}/{queue}/{owner}/{app}/requests/{request_id}"
                return answer(json.dumps({
                    "request_id": request_id, "response_url": base,
                    "status_url": base + "/status", "cancel_url": base + "/cancel",
                    "queue_position": 0,
                }).encode())
        elif method == b"GET" and b"/requests/" in path:
            if path.endswith(b"/status/stream"):
                return NOT_FOUND if path.startswith(b"/queue-poll/") else STREAM
            if path.endswith(b"/status"):
                return STATUS
            return OUTPUT
        return NOT_FOUND

    class Http(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buffer = transport, b""
        def data_received(self, data):
            self.buffer += data
            while True:
                end = self.buffer.find(b"\\r\\n\\r\\n")
                if end < 0:
                    return
                head = self.buffer[:end].lower()
                length = 0
                at = head.find(b"content-length:")
                if at >= 0:
                    length = int(head[at + 15:].split(b"\\r\\n", 1)[0])
                if len(self.buffer) < end + 4 + length:
                    return
                method, target = self.buffer[:end].split(b" ", 2)[:2]
                self.buffer = self.buffer[end + 4 + length:]
                self.transport.write(route(method, target))

    async def main():
        global origin
        server = await asyncio.get_running_loop().create_server(Http, "127.0.0.1", 0, backlog=1024)
        port = server.sockets[0].getsockname()[1]
        origin = f"http://127.0.0.1:{port}"
        print(port, flush=True)
        # Stops by itself when the benchmark closes its stdin (or after an hour at most).
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        await asyncio.wait_for(reader.read(), 3600)

    asyncio.run(main())
    """
)


@contextmanager
def minimal_server() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield f"http://127.0.0.1:{process.stdout.readline().strip()}"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(10)


def spread(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):5.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})"


def cell(ratios: list[float], reference: str, target: str = "") -> str:
    """A README table cell: ``0.84x <reference> (0.64-1.25)``, then the target if there is one."""
    text = f"{statistics.median(ratios):.2f}x {reference} ({min(ratios):.2f}-{max(ratios):.2f})"
    return f"{text}; target {target}" if target else text


def verdict(
    ratios: list[float], at_most: float | None = None, at_least: float | None = None
) -> str:
    median = statistics.median(ratios)
    if at_most is not None:
        return f"target <= {at_most:.2f}x: {'met' if median <= at_most else 'MISSED'}"
    assert at_least is not None
    return f"target >= {at_least:g}x: {'met' if median >= at_least else 'MISSED'}"


Row = tuple[str, str, str]


def fal_client_at(url: str) -> Any:
    """fal-client's module pointed at the benchmark's server, or ``None`` when it is not
    installed (``pip install -e '.[bench]'``; the ``dev`` extra includes it).

    fal-client builds its URLs as ``RUN_URL_FORMAT + endpoint id`` and ``QUEUE_URL_FORMAT +
    endpoint id``: module constants of ``fal_client.client`` computed at import from
    ``FAL_RUN_HOST``/``FAL_QUEUE_RUN_HOST`` with the scheme fixed to ``https://``, so neither an
    environment variable nor an argument reaches a plain-HTTP server on 127.0.0.1. Its methods
    read the two constants at call time, so replacing them (a benchmark may; an application
    should not) is the least invasive way in, with nothing else of fal-client changed: its own
    ``httpx`` clients, headers, retry wrapper and transport (``BackupDomainTransport`` only
    reroutes fal's own domains after a connection error) run as they do against fal. The
    status, result and cancel URLs of a queued request are the ones the server's submit
    answer carries, as with fal.
    """
    try:
        import fal_client  # type: ignore[import-not-found,unused-ignore]
        import fal_client.client as fal_client_module  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    fal_client_module.RUN_URL_FORMAT = f"{url}/run/"
    fal_client_module.QUEUE_URL_FORMAT = f"{url}/queue/"
    return fal_client


def interleaved(
    contenders: dict[str, Callable[[], float]], reference: str, rounds: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Run each contender once per round, rotating the order; per contender, its raw figures
    and its ratio to the reference of the same round."""
    names = list(contenders)
    raw: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        order = names[number % len(names) :] + names[: number % len(names)]
        for name in order:
            raw[name].append(contenders[name]())
    return {
        name: (
            raw[name],
            [value / ref for value, ref in zip(raw[name], raw[reference], strict=True)],
        )
        for name in names
    }


SYNC_LABELS = {
    "FalClient.run": "`FalClient.run`",
    "FalClient.flux_schnell": "`FalClient.flux_schnell`",
}


def bench_sync(url: str, calls: int, rounds: int, rows: list[Row]) -> None:
    run_url = f"{url}/run/{ENDPOINT}"
    headers = {"Authorization": "Key bench"}
    cpu: dict[str, list[float]] = {}
    with httpx.Client() as http, FalClient("bench", run_url=f"{url}/run") as client:

        def timed(call: Callable[[], object]) -> Callable[[], float]:
            spent = cpu.setdefault(f"#{len(cpu)}", [])

            def measure() -> float:
                started, started_cpu = time.perf_counter(), time.process_time()
                for _ in range(calls):
                    call()
                spent.append((time.process_time() - started_cpu) / calls * 1e6)
                return (time.perf_counter() - started) / calls * 1e6

            return measure

        contenders = {
            "bare httpx.Client.post(json=).json()": timed(
                lambda: http.post(run_url, json=ARGUMENTS, headers=headers).json()
            ),
            "FalClient.run": timed(lambda: client.run(ENDPOINT, ARGUMENTS)),
            "FalClient.flux_schnell": timed(
                lambda: client.flux_schnell(
                    prompt="a red fox in the snow", image_size="landscape_16_9"
                )
            ),
        }
        for measure in contenders.values():  # warm up: connections, models, caches
            measure()
        results = interleaved(contenders, "bare httpx.Client.post(json=).json()", rounds)
    print(f"sync, one call at a time: {calls} calls x {rounds} interleaved rounds")
    cpu_of = dict(zip(results, [spent[1:] for spent in cpu.values()], strict=True))
    for name, (raw, ratios) in results.items():
        median = statistics.median(raw)
        print(f"  {name:38} {median:7.1f} us/call  {spread(ratios)} bare httpx wall")
        cpu_ratios = [
            mine / ref for mine, ref in zip(cpu_of[name], cpu_of[next(iter(results))], strict=True)
        ]
        print(
            f"  {'':38} {statistics.median(cpu_of[name]):7.1f} us CPU   "
            f"{spread(cpu_ratios)} bare httpx client CPU"
        )
        if name in SYNC_LABELS:
            rows.append(
                (
                    f"sync {SYNC_LABELS[name]}, wall per call",
                    f"{median:,.0f} µs",
                    cell(ratios, "bare `httpx.Client.post(json=).json()`"),
                )
            )
        if name == "FalClient.run":
            rows.append(
                (
                    f"sync {SYNC_LABELS[name]}, client CPU per call",
                    f"{statistics.median(cpu_of[name]):,.0f} µs",
                    cell(cpu_ratios, "bare httpx"),
                )
            )


async def rate(call: Callable[[], Awaitable[object]], total: int, concurrency: int) -> float:
    per_worker = max(total // concurrency, 1)

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return per_worker * concurrency / (time.perf_counter() - started)


ASYNC_LABELS = {
    "AsyncFalClient.run (default)": "`AsyncFalClient.run`",
    "AsyncFalClient.run (aiohttp_session=)": "`AsyncFalClient.run(aiohttp_session=)`",
}
FAL_CLIENT_RUN = "fal-client AsyncClient.run"


async def bench_async(url: str, total: int, rounds: int, concurrency: int, rows: list[Row]) -> None:
    run_url = f"{url}/run/{ENDPOINT}"
    headers = {"Authorization": "Key bench"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        AsyncFalClient("bench", run_url=f"{url}/run") as default,
    ):

        async def bare() -> object:
            async with session.post(run_url, json=ARGUMENTS, headers=headers) as response:
                return await response.json()

        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "bare aiohttp": bare,
            "AsyncFalClient.run (default)": lambda: default.run(ENDPOINT, ARGUMENTS),
        }
        closers: list[Callable[[], Awaitable[None]]] = []
        own = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
        closers.append(own.close)
        try:
            direct = AsyncFalClient("bench", run_url=f"{url}/run", aiohttp_session=own)  # type: ignore[call-arg,unused-ignore]
        except TypeError:
            direct = None  # this version has no aiohttp_session= option
        if direct is not None:
            calls["AsyncFalClient.run (aiohttp_session=)"] = lambda: direct.run(ENDPOINT, ARGUMENTS)
            closers.insert(0, direct.aclose)
        fal_client = fal_client_at(url)
        if fal_client is not None:
            fal = fal_client.AsyncClient(key="bench")
            calls[FAL_CLIENT_RUN] = lambda: fal.run(ENDPOINT, arguments=ARGUMENTS)
        try:
            for call in calls.values():
                await rate(call, concurrency * 2, concurrency)  # warm up the pool
            loop_results: dict[str, list[float]] = {name: [] for name in calls}
            cpu: dict[str, list[float]] = {name: [] for name in calls}
            count = max(total // concurrency, 1) * concurrency
            names = list(calls)
            for number in range(rounds):
                order = names[number % len(names) :] + names[: number % len(names)]
                for name in order:
                    started = time.process_time()
                    loop_results[name].append(await rate(calls[name], total, concurrency))
                    cpu[name].append((time.process_time() - started) / count * 1e6)
        finally:
            for close in closers:
                await close()
            if fal_client is not None:
                # fal-client's clients have no close(); its pool lives in a cached property.
                await (await fal._client).aclose()
    reference = loop_results["bare aiohttp"]
    fal_missing = "" if fal_client is not None else " (fal-client not installed: column skipped)"
    print(
        f"async, {concurrency} concurrent: {total} calls x {rounds} interleaved rounds{fal_missing}"
    )
    for name, raw in loop_results.items():
        ratios = [value / ref for value, ref in zip(raw, reference, strict=True)]
        median = statistics.median(raw)
        print(
            f"  {name:40} {median:7.0f} req/s ({statistics.median(cpu[name]):5.0f} us CPU/call)"
            f"  {spread(ratios)} bare aiohttp req/s"
        )
        if name in ASYNC_LABELS:
            rows.append(
                (
                    f"async {ASYNC_LABELS[name]}, {concurrency} concurrent",
                    f"{median:,.0f} req/s",
                    cell(ratios, "bare aiohttp req/s"),
                )
            )
    if fal_client is None:
        return
    theirs = loop_results[FAL_CLIENT_RUN]
    for name in [name for name in ASYNC_LABELS if name in loop_results]:
        ratios = [value / ref for value, ref in zip(loop_results[name], theirs, strict=True)]
        cpu_ratios = [
            value / ref for value, ref in zip(cpu[name], cpu[FAL_CLIENT_RUN], strict=True)
        ]
        print(f"  {name:40} {spread(ratios)} fal-client req/s  {verdict(ratios, at_least=15)}")
        print(f"  {'':40} {spread(cpu_ratios)} fal-client CPU/call")
        rows.append(
            (
                f"async {ASYNC_LABELS[name]} vs fal-client, {concurrency} concurrent",
                f"{statistics.median(loop_results[name]):,.0f} req/s",
                cell(ratios, "fal-client `AsyncClient.run` req/s", "≥ 15x"),
            )
        )


SYNC_SUBSCRIBE_REFERENCE = "fal-client SyncClient.subscribe"
ASYNC_SUBSCRIBE_REFERENCE = "fal-client AsyncClient.subscribe"
SUBSCRIBE_LABELS = {
    "FalClient.subscribe (status stream)": "sync `FalClient.subscribe`, client CPU per call",
    "FalClient.subscribe (polling)": "sync `FalClient.subscribe`, polling, client CPU per call",
    "AsyncFalClient.subscribe (status stream)": "async `AsyncFalClient.subscribe`, client CPU per call",
    "AsyncFalClient.subscribe (polling)": "async `AsyncFalClient.subscribe`, polling, client CPU per call",
}


def bench_subscribe_sync(url: str, calls: int, rounds: int, rows: list[Row]) -> None:
    """Client CPU per ``subscribe`` (submit, wait, result), one call at a time, vs fal-client's
    ``SyncClient.subscribe``: target <= 0.8x."""
    fal_client = fal_client_at(url)
    if fal_client is None:
        print("sync subscribe: fal-client not installed (pip install -e '.[bench]'): skipped")
        return
    fal = fal_client.SyncClient(key="bench")
    wall: dict[str, list[float]] = {}
    with (
        FalClient("bench", queue_url=f"{url}/queue") as streaming,
        FalClient("bench", queue_url=f"{url}/queue-poll") as polling,
    ):

        def timed(name: str, call: Callable[[], object]) -> Callable[[], float]:
            spent = wall.setdefault(name, [])

            def measure() -> float:
                started, started_cpu = time.perf_counter(), time.process_time()
                for _ in range(calls):
                    call()
                spent.append((time.perf_counter() - started) / calls * 1e6)
                return (time.process_time() - started_cpu) / calls * 1e6

            return measure

        contenders = {
            SYNC_SUBSCRIBE_REFERENCE: timed(
                SYNC_SUBSCRIBE_REFERENCE,
                lambda: fal.subscribe(ENDPOINT, arguments=ARGUMENTS),
            ),
            "FalClient.subscribe (status stream)": timed(
                "FalClient.subscribe (status stream)",
                lambda: streaming.subscribe(ENDPOINT, ARGUMENTS),
            ),
            "FalClient.subscribe (polling)": timed(
                "FalClient.subscribe (polling)", lambda: polling.subscribe(ENDPOINT, ARGUMENTS)
            ),
        }
        try:
            for measure in contenders.values():  # warm up; the polling client learns: no stream
                measure()
            for spent in wall.values():
                spent.clear()
            results = interleaved(contenders, SYNC_SUBSCRIBE_REFERENCE, rounds)
        finally:
            fal._client.close()  # fal-client's clients have no close() of their own
    print(
        f"sync subscribe (submit + wait + result), one at a time: {calls} calls x {rounds} "
        "interleaved rounds; client CPU per call"
    )
    for name, (raw, ratios) in results.items():
        line = (
            f"  {name:40} {statistics.median(raw):7.0f} us CPU "
            f"({statistics.median(wall[name]):6.0f} us wall)  {spread(ratios)} fal-client CPU"
        )
        if name in SUBSCRIBE_LABELS:
            line += f"  {verdict(ratios, at_most=0.8)}"
            rows.append(
                (
                    SUBSCRIBE_LABELS[name],
                    f"{statistics.median(raw):,.0f} µs",
                    cell(ratios, "fal-client `SyncClient.subscribe`", "≤ 0.8x"),
                )
            )
        print(line)


async def bench_subscribe_async(
    url: str, total: int, rounds: int, concurrency: int, rows: list[Row]
) -> None:
    """Client CPU per ``subscribe`` with ``concurrency`` in flight, vs fal-client's
    ``AsyncClient.subscribe``: target <= 0.15x."""
    fal_client = fal_client_at(url)
    if fal_client is None:
        print("async subscribe: fal-client not installed (pip install -e '.[bench]'): skipped")
        return
    fal = fal_client.AsyncClient(key="bench")
    count = max(total // concurrency, 1) * concurrency
    async with (
        AsyncFalClient("bench", queue_url=f"{url}/queue") as streaming,
        AsyncFalClient("bench", queue_url=f"{url}/queue-poll") as polling,
    ):
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            ASYNC_SUBSCRIBE_REFERENCE: lambda: fal.subscribe(ENDPOINT, arguments=ARGUMENTS),
            "AsyncFalClient.subscribe (status stream)": lambda: streaming.subscribe(
                ENDPOINT, ARGUMENTS
            ),
            "AsyncFalClient.subscribe (polling)": lambda: polling.subscribe(ENDPOINT, ARGUMENTS),
        }
        cpu: dict[str, list[float]] = {name: [] for name in calls}
        per_second: dict[str, list[float]] = {name: [] for name in calls}
        try:
            for call in calls.values():
                await rate(call, concurrency * 2, concurrency)  # warm up the pools
            names = list(calls)
            for number in range(rounds):
                order = names[number % len(names) :] + names[: number % len(names)]
                for name in order:
                    started = time.process_time()
                    per_second[name].append(await rate(calls[name], total, concurrency))
                    cpu[name].append((time.process_time() - started) / count * 1e6)
        finally:
            await (await fal._client).aclose()  # fal-client's clients have no close()
    print(
        f"async subscribe, {concurrency} concurrent: {count} calls x {rounds} interleaved "
        "rounds; client CPU per call"
    )
    reference = cpu[ASYNC_SUBSCRIBE_REFERENCE]
    for name, raw in cpu.items():
        ratios = [value / ref for value, ref in zip(raw, reference, strict=True)]
        line = (
            f"  {name:42} {statistics.median(raw):7.0f} us CPU "
            f"({statistics.median(per_second[name]):6.0f} req/s)  {spread(ratios)} fal-client CPU"
        )
        if name in SUBSCRIBE_LABELS:
            line += f"  {verdict(ratios, at_most=0.15)}"
            rows.append(
                (
                    f"{SUBSCRIBE_LABELS[name]}, {concurrency} concurrent",
                    f"{statistics.median(raw):,.0f} µs",
                    cell(ratios, "fal-client `AsyncClient.subscribe`", "≤ 0.15x"),
                )
            )
        print(line)


async def bench_async_queue(
    url: str, total: int, rounds: int, concurrency: int, rows: list[Row]
) -> None:
    """A queued job end to end (submit, the status stream to COMPLETED, the result) vs bare
    aiohttp making the same three requests and reading the same events."""
    headers = {"Authorization": "Key bench"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        AsyncFalClient("bench", queue_url=f"{url}/queue") as default,
    ):

        async def bare() -> object:
            async with session.post(
                f"{url}/queue/{ENDPOINT}", json=ARGUMENTS, headers=headers
            ) as response:
                submitted = await response.json()
            async with session.get(
                f"{submitted['status_url']}/stream",
                params={"logs": "0"},
                headers={**headers, "Accept": "text/event-stream"},
            ) as response:
                completed = False
                async for line in response.content:  # to its end, as falbind reads it
                    if line.startswith(b"data:"):
                        completed = json.loads(line[5:])["status"] == "COMPLETED"
                assert completed
            async with session.get(submitted["response_url"], headers=headers) as response:
                return await response.json()

        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "bare aiohttp": bare,
            "AsyncFalClient.subscribe": lambda: default.subscribe(ENDPOINT, ARGUMENTS),
        }
        for call in calls.values():
            await rate(call, concurrency * 2, concurrency)  # warm up the pools
        results: dict[str, list[float]] = {name: [] for name in calls}
        names = list(calls)
        for number in range(rounds):
            order = names[number % len(names) :] + names[: number % len(names)]
            for name in order:
                results[name].append(await rate(calls[name], total, concurrency))
    print(f"async queue, {concurrency} concurrent: {total} jobs x {rounds} interleaved rounds")
    reference = results["bare aiohttp"]
    for name, raw in results.items():
        ratios = [value / ref for value, ref in zip(raw, reference, strict=True)]
        print(f"  {name:40} {statistics.median(raw):7.0f} jobs/s  {spread(ratios)} bare aiohttp")
    mine = results["AsyncFalClient.subscribe"]
    rows.append(
        (
            f"async `AsyncFalClient.subscribe`, {concurrency} concurrent jobs",
            f"{statistics.median(mine):,.0f} jobs/s",
            cell(
                [value / ref for value, ref in zip(mine, reference, strict=True)],
                "bare aiohttp making the same requests",
            ),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=100, help="sync calls per round")
    parser.add_argument("--total", type=int, default=2048, help="async calls per round")
    parser.add_argument(
        "--subscribe-calls", type=int, default=40, help="sync subscribe calls per round"
    )
    parser.add_argument(
        "--subscribe-total", type=int, default=512, help="async subscribe calls per round"
    )
    parser.add_argument(
        "--only",
        choices=("sync", "async", "subscribe", "queue"),
        help="one part of the figures",
    )
    parser.add_argument("--markdown", action="store_true", help="also print a README table")
    args = parser.parse_args()
    rows: list[Row] = []
    with minimal_server() as url:
        print(
            f"minimal keep-alive server: {url}; python {platform.python_version()}, "
            f"{platform.machine()}, {os.cpu_count()} cores"
        )
        if args.only in (None, "sync"):
            bench_sync(url, args.calls, args.rounds, rows)
        for concurrency in (64, 256) if args.only in (None, "async") else ():
            asyncio.run(bench_async(url, args.total, args.rounds, concurrency, rows))
        if args.only in (None, "subscribe"):
            bench_subscribe_sync(url, args.subscribe_calls, args.rounds, rows)
            asyncio.run(bench_subscribe_async(url, args.subscribe_total, args.rounds, 64, rows))
        if args.only in (None, "queue"):
            asyncio.run(bench_async_queue(url, args.total // 2, args.rounds, 64, rows))
    if args.markdown:
        print("\n| path | falbind | ratio to the reference (median, min-max) |")
        print("|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
