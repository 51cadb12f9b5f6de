"""Client benchmarks against the local fake fal server (figures only, no assertions).

    python benchmarks/bench_client.py [--with-competitors] [--calls N]

Measured in one run, the fake server in its own process (so it does not share our GIL):

* sync overhead: ``FalClient.run`` vs a bare ``httpx.Client.post`` of the same body;
* async throughput at 64 concurrent calls: ``AsyncFalClient`` (aiohttp transport, and httpx's
  own) vs bare ``httpx.AsyncClient`` and bare aiohttp;
* queue: client CPU (``time.process_time``) per subscribed request (sync one at a time after
  submit; async 64 at a time, submit included), and how long after the server completes a
  request the client notices (p50);
* with ``--with-competitors``: fal-client (``run``, ``run_async``, ``subscribe_async``) and
  LiteLLM, installed into ``benchmarks/.env`` and run there against the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx

from falbind.client.clients import AsyncFalClient, FalClient
from falbind.client.queue import Completed, QueueStatus

ENDPOINT = "fal-ai/flux/schnell"
ARGUMENTS = {"prompt": "a red fox in the snow", "image_size": "landscape_16_9"}
BODY = json.dumps(ARGUMENTS).encode()
HEADERS = {"Authorization": "Key bench", "Content-Type": "application/json"}
CONCURRENCY = 64
COMPETITOR_ENV = Path(__file__).parent / ".env"


@contextmanager
def fake_server() -> Iterator[str]:
    """The fake server in a child process; yields its base URL."""
    command = [sys.executable, "-m", "falbind.cli.main", "fake-server"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().split()[-1]
    finally:
        process.terminate()
        process.wait(10)


def per_call_ms(
    calls: dict[str, Callable[[], object]], per_round: int, rounds: int = 10
) -> dict[str, float]:
    """Best-of-``rounds`` wall time per call in ms, for each call; rounds are interleaved so
    that noise from other processes hits every contender alike."""
    for call in calls.values():
        for _ in range(50):
            call()
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            for _ in range(per_round):
                call()
            best[name] = min(best[name], (time.perf_counter() - started) / per_round * 1000)
    return best


def bench_sync(url: str, calls: int) -> None:
    run_url = f"{url}/run/{ENDPOINT}"
    with httpx.Client() as http, FalClient("bench", run_url=f"{url}/run") as client:
        best = per_call_ms(
            {
                "bare httpx.Client.post": lambda: http.post(
                    run_url, content=BODY, headers=HEADERS
                ).json(),
                "FalClient.run": lambda: client.run(ENDPOINT, ARGUMENTS),
                "FalClient.flux_schnell": lambda: client.flux_schnell(
                    prompt=ARGUMENTS["prompt"], image_size="landscape_16_9"
                ),
            },
            calls,
        )
    bare = best["bare httpx.Client.post"]
    print("sync, one call at a time (best of 10 interleaved rounds)")
    for name, ms in best.items():
        print(f"  {name:28} {ms:7.3f} ms/call   {ms / bare:5.2f}x bare")


async def throughput(call: Callable[[], Awaitable[object]], total: int) -> float:
    """Requests per second with ``CONCURRENCY`` workers sharing ``total`` calls."""
    for _ in range(CONCURRENCY):
        await call()
    per_worker = total // CONCURRENCY

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return per_worker * CONCURRENCY / (time.perf_counter() - started)


async def bench_async(url: str, total: int) -> None:
    run_url = f"{url}/run/{ENDPOINT}"
    figures: dict[str, float] = {}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as http:

        async def bare_httpx() -> object:
            return (await http.post(run_url, content=BODY, headers=HEADERS)).json()

        figures["bare httpx.AsyncClient"] = await throughput(bare_httpx, total)
    async with aiohttp.ClientSession() as session:

        async def bare_aiohttp() -> object:
            async with session.post(run_url, data=BODY, headers=HEADERS) as response:
                return await response.json()

        figures["bare aiohttp"] = await throughput(bare_aiohttp, total)
    async with AsyncFalClient("bench", run_url=f"{url}/run") as client:
        figures["AsyncFalClient (aiohttp transport)"] = await throughput(
            lambda: client.run(ENDPOINT, ARGUMENTS), total
        )
    async with (
        httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as http,
        AsyncFalClient("bench", run_url=f"{url}/run", http_client=http) as client,
    ):
        figures["AsyncFalClient (httpx transport)"] = await throughput(
            lambda: client.run(ENDPOINT, ARGUMENTS), total
        )
    print(f"async, {CONCURRENCY} concurrent calls, {total} calls")
    for name, rate in figures.items():
        print(f"  {name:36} {rate:7.0f} req/s")


def bench_queue(url: str, requests: int) -> None:
    """Client CPU per subscribed request and completion-notice latency, stream and polling."""
    with FalClient("bench", queue_url=f"{url}/queue") as client:
        for mode in ("status stream", "adaptive polling"):
            client._status_stream = mode == "status stream"
            cpu, latencies = [], []
            for _ in range(requests):
                submitted_at: list[float] = []
                noticed: list[float] = []

                def note(status: QueueStatus, noticed: list[float] = noticed) -> None:
                    if isinstance(status, Completed):
                        noticed.append(time.monotonic())

                handle = client.submit(ENDPOINT, ARGUMENTS)
                submitted_at.append(time.monotonic())
                started_cpu = time.process_time()
                handle._wait(with_logs=False, on_queue_update=note, client_timeout=30)
                cpu.append(time.process_time() - started_cpu)
                # The fake server completes processing_time (0.02 s by default) after submit.
                latencies.append(noticed[0] - (submitted_at[0] + 0.02))
            print(
                f"queue via {mode:17} client CPU {statistics.mean(cpu) * 1000:6.2f} ms/request, "
                f"completion noticed after p50 {statistics.median(latencies) * 1000:6.1f} ms"
            )


async def bench_async_queue(url: str, requests: int) -> None:
    """Client CPU per request of ``AsyncFalClient.subscribe`` at 64 concurrent (submit included),
    measured like fal-client's ``subscribe_async`` below."""
    async with AsyncFalClient("bench", queue_url=f"{url}/queue") as client:
        await asyncio.gather(*(client.subscribe(ENDPOINT, ARGUMENTS) for _ in range(CONCURRENCY)))
        started = time.process_time()
        for _ in range(requests // CONCURRENCY):
            await asyncio.gather(
                *(client.subscribe(ENDPOINT, ARGUMENTS) for _ in range(CONCURRENCY))
            )
        cpu = (time.process_time() - started) / (requests // CONCURRENCY * CONCURRENCY)
    print(
        f"queue, AsyncFalClient.subscribe x{CONCURRENCY}: client CPU {cpu * 1000:6.2f} ms/request"
    )


COMPETITOR_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    url, calls, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    args = {"prompt": "a red fox in the snow", "image_size": "landscape_16_9"}
    out = {}
    try:
        import fal_client, fal_client.client as fc
        fc.RUN_URL_FORMAT = url + "/run/"
        fc.QUEUE_URL_FORMAT = url + "/queue/"
        sync = fal_client.SyncClient(key="bench")
        for _ in range(20): sync.run("fal-ai/flux/schnell", arguments=args)
        t = time.perf_counter()
        for _ in range(calls): sync.run("fal-ai/flux/schnell", arguments=args)
        out["fal-client run (ms/call)"] = (time.perf_counter() - t) / calls * 1000
        aclient = fal_client.AsyncClient(key="bench")
        async def rate(call, n):
            per = n // 64
            async def worker():
                for _ in range(per): await call()
            t = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(64)))
            return per * 64 / (time.perf_counter() - t)
        async def main():
            out["fal-client run_async (req/s)"] = await rate(
                lambda: aclient.run("fal-ai/flux/schnell", arguments=args), total)
            cpu = time.process_time()
            await rate(lambda: aclient.subscribe("fal-ai/flux/schnell", arguments=args), 128)
            out["fal-client subscribe_async CPU (ms/request)"] = (time.process_time() - cpu) / 128 * 1000
        asyncio.run(main())
    except Exception as exc:
        out["fal-client error"] = repr(exc)
    try:
        import litellm
        def one():
            return litellm.image_generation(model="fal_ai/fal-ai/flux/schnell", prompt=args["prompt"],
                api_key="bench", api_base=url + "/run")
        one()
        n = max(calls // 5, 20)
        t = time.perf_counter()
        for _ in range(n): one()
        out["litellm image_generation (ms/call)"] = (time.perf_counter() - t) / n * 1000
    except Exception as exc:
        out["litellm error"] = repr(exc)[:300]
    print(json.dumps(out))
    """
)


def bench_competitors(url: str, calls: int, total: int) -> None:
    python = COMPETITOR_ENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(COMPETITOR_ENV)], check=True)
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "fal-client", "litellm"],
        capture_output=True,
        text=True,
    )
    if installed.returncode != 0:
        print(f"competitors skipped: pip failed: {installed.stderr.strip()[-300:]}")
        return
    result = subprocess.run(
        [str(python), "-c", COMPETITOR_SCRIPT, url, str(calls), str(total)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        print(f"competitors skipped: {result.stderr.strip()[-300:]}")
        return
    print("competitors (same server, same run)")
    for name, value in json.loads(result.stdout.splitlines()[-1]).items():
        shown = f"{value:9.2f}" if isinstance(value, float) else value
        print(f"  {name:44} {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--with-competitors", action="store_true")
    parser.add_argument("--calls", type=int, default=200, help="sync calls per round")
    parser.add_argument("--total", type=int, default=3200, help="async calls per client")
    parser.add_argument("--queue-requests", type=int, default=50)
    args = parser.parse_args()
    with fake_server() as url:
        print(f"fake fal server: {url}")
        bench_sync(url, args.calls)
        asyncio.run(bench_async(url, args.total))
        bench_queue(url, args.queue_requests)
        asyncio.run(bench_async_queue(url, 128))
        if args.with_competitors:
            bench_competitors(url, args.calls, args.total)
        else:
            print("competitors: pass --with-competitors to measure fal-client and LiteLLM")


if __name__ == "__main__":
    main()
