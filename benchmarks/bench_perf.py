"""Client speed against the bare HTTP libraries (issue 11). Prints figures; asserts nothing.

    python benchmarks/bench_perf.py [--rounds N] [--calls N] [--total N] [--markdown]

Every figure is a ratio against a reference measured in the same run, against the same minimal
keep-alive HTTP/1.1 server (its own process, so it does not share our GIL or core budget with
the client's interpreter). The machine is shared and noisy, so contenders run in interleaved
rounds (the order rotates each round) and each ratio is taken within one round; the median over
rounds is printed with its spread (min-max).

* sync: wall time per ``FalClient.run`` call (validation and decoding included) vs a bare
  ``httpx.Client.post(json=...).json()``;
* async: ``AsyncFalClient.run`` req/s at 64 and 256 concurrent calls vs bare aiohttp
  (``session.post(json=...)`` then ``.json()``), for the default client and, where this
  version has it, the ``aiohttp_session=`` path; fal-client's ``AsyncClient.run`` as a column
  when ``fal_client`` is importable here (skipped otherwise);
* async queue: ``AsyncFalClient.subscribe`` jobs/s at 64 concurrent jobs (submit, the status
  stream, the result) vs bare aiohttp making the same requests.
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
# answers every request, keep-alive, with one fixed FluxSchnellOutput.
SERVER = textwrap.dedent(
    """
    import asyncio, json, sys
    body = json.dumps({
        "images": [{"url": "https://v3.fal.media/files/fox.jpeg", "width": 1024,
                    "height": 576, "content_type": "image/jpeg"}],
        "timings": {"inference": 0.25}, "seed": 42, "has_nsfw_concepts": [False],
        "prompt": "a red fox in the snow",
    }).encode()
    def reply(content, kind=b"application/json"):
        return (b"HTTP/1.1 200 OK\\r\\ncontent-type: " + kind + b"\\r\\n"
                b"x-fal-request-id: bench\\r\\ncontent-length: %d\\r\\n\\r\\n" % len(content)) + content
    answer = reply(body)
    # fal's queue: a submit answer naming the request's URLs, its status stream (server-sent
    # events: in progress, then completed; the stream then ends), and its result.
    events = reply(b'data: {"status": "IN_PROGRESS", "logs": []}\\n\\n'
                   b'data: {"status": "COMPLETED", "logs": [], "metrics": {}}\\n\\n',
                   b"text/event-stream")
    queue = {"base": "", "next": 0}

    def submitted():
        queue["next"] += 1
        request_id = "req-%08d" % queue["next"]
        base = queue["base"] + "/fal-ai/flux/requests/" + request_id
        return reply(json.dumps({
            "request_id": request_id, "status_url": base + "/status", "response_url": base,
            "cancel_url": base + "/cancel", "queue_position": 0,
        }).encode())

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
                self.buffer = self.buffer[end + 4 + length:]
                target = head.split(b" ", 2)[1]
                if target.startswith(b"/queue/fal-ai/flux/requests/"):
                    stream = target.split(b"?", 1)[0].endswith(b"/status/stream")
                    self.transport.write(events if stream else answer)
                elif target.startswith(b"/queue/"):
                    self.transport.write(submitted())
                else:
                    self.transport.write(answer)

    async def main():
        server = await asyncio.get_running_loop().create_server(Http, "127.0.0.1", 0, backlog=1024)
        port = server.sockets[0].getsockname()[1]
        queue["base"] = "http://127.0.0.1:%d/queue" % port
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


def bench_sync(url: str, calls: int, rounds: int, rows: list[tuple[str, str, str]]) -> None:
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
        rows.append(
            (
                "sync `run`, wall per call" if name == "FalClient.run" else name,
                f"{median:.0f} µs",
                f"{spread(ratios)} bare httpx",
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


async def bench_async(
    url: str, total: int, rounds: int, concurrency: int, rows: list[tuple[str, str, str]]
) -> None:
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
        try:
            import fal_client  # type: ignore[import-not-found,unused-ignore]
            import fal_client.client as fal_client_client  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            fal_client = None
        if fal_client is not None:
            fal_client_client.RUN_URL_FORMAT = f"{url}/run/"
            fal = fal_client.AsyncClient(key="bench")
            calls["fal-client AsyncClient.run"] = lambda: fal.run(ENDPOINT, arguments=ARGUMENTS)
        try:
            loop_results = await interleaved_rates(calls, total, rounds, concurrency)
        finally:
            for close in closers:
                await close()
    fal_missing = "" if fal_client is not None else " (fal-client not installed: column skipped)"
    print(
        f"async, {concurrency} concurrent: {total} calls x {rounds} interleaved rounds{fal_missing}"
    )
    report_rates(loop_results, "req/s", concurrency, rows)


async def interleaved_rates(
    calls: dict[str, Callable[[], Awaitable[object]]], total: int, rounds: int, concurrency: int
) -> dict[str, list[float]]:
    """Each call's rate per round, the contenders interleaved (the order rotates each round)."""
    for call in calls.values():
        await rate(call, concurrency * 2, concurrency)  # warm up the pool
    results: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for number in range(rounds):
        order = names[number % len(names) :] + names[: number % len(names)]
        for name in order:
            results[name].append(await rate(calls[name], total, concurrency))
    return results


def report_rates(
    results: dict[str, list[float]], unit: str, concurrency: int, rows: list[tuple[str, str, str]]
) -> None:
    reference = results["bare aiohttp"]
    for name, raw in results.items():
        ratios = [value / ref for value, ref in zip(raw, reference, strict=True)]
        median = statistics.median(raw)
        print(f"  {name:40} {median:7.0f} {unit}  {spread(ratios)} bare aiohttp {unit}")
        rows.append(
            (
                f"async {name} @{concurrency}",
                f"{median:,.0f} {unit}",
                f"{spread(ratios)} bare aiohttp",
            )
        )


async def bench_async_queue(
    url: str, total: int, rounds: int, concurrency: int, rows: list[tuple[str, str, str]]
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
            "AsyncFalClient.subscribe (default)": lambda: default.subscribe(ENDPOINT, ARGUMENTS),
        }
        results = await interleaved_rates(calls, total, rounds, concurrency)
    print(f"async queue, {concurrency} concurrent: {total} jobs x {rounds} interleaved rounds")
    report_rates(results, "jobs/s", concurrency, rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=100, help="sync calls per round")
    parser.add_argument("--total", type=int, default=2048, help="async calls per round")
    parser.add_argument(
        "--only", choices=("sync", "async", "queue"), help="one part of the figures"
    )
    parser.add_argument("--markdown", action="store_true", help="also print a README table")
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    with minimal_server() as url:
        print(
            f"minimal keep-alive server: {url}; python {platform.python_version()}, "
            f"{platform.machine()}, {os.cpu_count()} cores"
        )
        if args.only in (None, "sync"):
            bench_sync(url, args.calls, args.rounds, rows)
        for concurrency in (64, 256) if args.only in (None, "async") else ():
            asyncio.run(bench_async(url, args.total, args.rounds, concurrency, rows))
        if args.only in (None, "queue"):
            asyncio.run(bench_async_queue(url, args.total // 2, args.rounds, 64, rows))
    if args.markdown:
        print("\n| path | falbind / contender | ratio (median, min-max over rounds) |")
        print("|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
