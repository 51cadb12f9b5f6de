"""`falbind serve` against a direct ``AsyncFalClient.images.generate`` (figures only).

    python benchmarks/bench_serve.py [--requests N] [--postgres-url postgresql://...] [--sync]

The fake fal server runs in its own process, the gateway (one uvicorn worker) in another; the
benchmark process drives both sides with asyncio at 1, 16 and 64 concurrent clients:

* direct: ``AsyncFalClient.images.generate(model=..., prompt=..., use_queue=...)``;
* gateway: the OpenAI SDK (``AsyncOpenAI().images.generate``) with a virtual key that has a
  budget and an rpm limit, so every request does the gateway's full database work (key
  read, rpm slot, budget reservation and settlement, log row).

It prints requests/s, p50/p99 latency, the p50 latency the gateway adds and its throughput as
a share of the direct client's (targets: under 3 ms added at p50, at least 80% at 64 clients
with SQLite), and the gateway's own time per request from its ``Server-Timing`` header (reading,
keys and limits in the database, validation, encoding: everything but waiting for fal). Both
sides use fal's queue unless ``--sync``. The "added" latency also holds the extra HTTP hop and
the OpenAI SDK's own cost; all processes share this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import httpx2
import openai
import yaml

from falbind import AsyncFalClient

MODEL = "fal-ai/flux/schnell"
PROMPT = "a red fox in the snow"
CONCURRENCY = (1, 16, 64)


@contextmanager
def fake_server() -> Iterator[str]:
    """The fake fal server in a child process; yields its base URL."""
    command = [sys.executable, "-m", "falbind.cli.main", "fake-server"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().split()[-1]
    finally:
        process.terminate()
        process.wait(10)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def gateway(
    fal_url: str, database_url: str, use_queue: bool, master_key: str
) -> Iterator[tuple[str, int]]:
    """``falbind serve`` in a child process on a random port; yields its URL and PID."""
    with tempfile.TemporaryDirectory() as folder:
        config = {
            "model_list": [
                {
                    "model_name": "flux-schnell",
                    "litellm_params": {"model": MODEL},
                    "model_info": {"output_cost_per_image": 0.003},
                }
            ],
            "general_settings": {
                "master_key": "os.environ/FALBIND_MASTER_KEY",
                "database_url": database_url.replace("{dir}", folder),
            },
            "falbind_settings": {
                "run_url": f"{fal_url}/run",
                "queue_url": f"{fal_url}/queue",
                "storage_url": fal_url,
                "use_queue": use_queue,
            },
        }
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        env = {**os.environ, "FALBIND_MASTER_KEY": master_key, "FAL_KEY": "bench"}
        command = [sys.executable, "-m", "falbind.cli.main", "serve", "--config", str(path)]
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/health/readiness", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the gateway did not start")
                time.sleep(0.05)
            yield url, process.pid
        finally:
            process.terminate()
            process.wait(10)


async def measure(
    call: Callable[[], Awaitable[object]], concurrency: int, requests: int
) -> tuple[float, list[float]]:
    """(requests per second, latencies in ms) for ``requests`` calls, ``concurrency`` at once."""
    for _ in range(min(concurrency, 8)):  # warm connections
        await call()
    latencies: list[float] = []
    queue = list(range(requests))

    async def worker() -> None:
        while queue:
            queue.pop()
            started = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started), latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(
    fal_url: str, gateway_url: str, gateway_pid: int, master_key: str, args: argparse.Namespace
) -> None:
    use_queue = not args.sync
    async with httpx.AsyncClient() as http:
        created = await http.post(
            f"{gateway_url}/key/generate",
            json={"max_budget": 1e9, "rpm_limit": 10**9},
            headers={"Authorization": f"Bearer {master_key}"},
        )
        key = created.json()["key"]
    direct = AsyncFalClient("bench", run_url=f"{fal_url}/run", queue_url=f"{fal_url}/queue")
    # TCP_NODELAY: httpx writes a POST's headers and body separately, and without it Nagle's
    # algorithm holds the body until the gateway's delayed ACK (up to 40 ms per request).
    sdk = openai.AsyncOpenAI(
        base_url=f"{gateway_url}/v1",
        api_key=key,
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(
            transport=httpx2.AsyncHTTPTransport(  # the openai SDK's HTTP library
                limits=httpx2.Limits(max_connections=256, max_keepalive_connections=256),
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            )
        ),
    )
    own_ms: list[float] = []

    async def call_direct() -> object:
        return await direct.images.generate(model=MODEL, prompt=PROMPT, use_queue=use_queue)

    async def call_gateway() -> object:
        raw = await sdk.images.with_raw_response.generate(model="flux-schnell", prompt=PROMPT)
        timing = dict(
            part.strip().split(";dur=") for part in raw.headers["server-timing"].split(",")
        )
        own_ms.append(float(timing["gateway"]))
        return raw.parse()

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'clients':>7} {'side':<8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    try:
        for concurrency in CONCURRENCY:
            requests = max(args.requests, concurrency * 4)
            cpu = time.process_time()
            rate_d, lat_d = await measure(call_direct, concurrency, requests)
            direct_cpu = (time.process_time() - cpu) / requests * 1000
            own_ms.clear()
            cpu = process_cpu_seconds(gateway_pid)
            rate_g, lat_g = await measure(call_gateway, concurrency, requests)
            gateway_cpu = (process_cpu_seconds(gateway_pid) - cpu) / requests * 1000
            for side, rate, lat in (("direct", rate_d, lat_d), ("gateway", rate_g, lat_g)):
                print(
                    f"{concurrency:>7} {side:<8} {rate:>8.1f} "
                    f"{percentile(lat, 0.5):>8.2f} {percentile(lat, 0.99):>8.2f}"
                )
            added = statistics.median(lat_g) - statistics.median(lat_d)
            print(
                f"{concurrency:>7} ratio    throughput {rate_g / rate_d:.2f}x of direct, "
                f"added p50 {added:+.2f} ms; the gateway's own time (Server-Timing) "
                f"p50 {percentile(own_ms, 0.5):.2f} ms, p99 {percentile(own_ms, 0.99):.2f} ms"
            )
            print(
                f"{concurrency:>7} cpu      per request: direct client {direct_cpu:.2f} ms, "
                f"gateway process {gateway_cpu:.2f} ms (warm-up included)"
            )
    finally:
        await direct.aclose()
        await sdk.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement")
    parser.add_argument("--postgres-url", help="also measure on this PostgreSQL database")
    parser.add_argument("--sync", action="store_true", help="fal's sync endpoint, not the queue")
    args = parser.parse_args()
    master_key = "sk-bench-" + secrets.token_urlsafe(24)
    databases = [("SQLite", "sqlite:///{dir}/bench.db")]
    if args.postgres_url:
        databases.append(("PostgreSQL", args.postgres_url))
    with fake_server() as fal_url:
        for name, database_url in databases:
            mode = "sync" if args.sync else "queue"
            print(f"\n== falbind serve (1 worker, {name}, fal {mode}) vs AsyncFalClient ==")
            with gateway(fal_url, database_url, not args.sync, master_key) as (url, pid):
                asyncio.run(run(fal_url, url, pid, master_key, args))


if __name__ == "__main__":
    main()
