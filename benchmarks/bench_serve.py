"""`falbind serve` against a direct ``AsyncFalClient.images.generate`` (figures only).

    python benchmarks/bench_serve.py [--requests N] [--fal-latency 0.02,1] [--postgres-url URL]
                                     [--sync] [--markdown] [--no-litellm | --only-litellm]

The fake fal server runs in its own process, the gateway (one uvicorn worker) in another; the
benchmark process drives both sides with asyncio at 1, 16 and 64 concurrent clients:

* direct: ``AsyncFalClient.images.generate(model=..., prompt=..., use_queue=...)``;
* gateway: the OpenAI SDK (``AsyncOpenAI().images.generate``) with a virtual key that has a
  budget and an rpm limit, so every request does the gateway's full database work (key
  read, rpm slot, budget reservation and settlement, log row);
* hop: the same OpenAI SDK calls against a stub ASGI app (Starlette under uvicorn, its own
  process) that answers a fixed ``ImagesResponse`` at once: what any HTTP gateway in front of
  fal costs on this machine before it does anything.

It prints requests/s, p50/p99 latency, the p50 latency the gateway adds (in all, and beyond the
bare hop) and its throughput as a share of the direct client's (targets: under 3 ms added at
p50, at least 80% at 64 clients with SQLite), the gateway's own time per request from its
``Server-Timing`` header (reading, keys and limits in the database, validation, encoding:
everything but waiting for fal), and the CPU per request of every process on each side. When
the machine's cores are the bottleneck, the direct side's CPU per request over the gateway
side's bounds the throughput ratio any gateway could reach here: the gateway side runs the
direct client's work plus the SDK, the hop and the gateway's own work on the same cores.

``--fal-latency`` sets how long the fake fal server takes per request (its
``--processing-time``), one scenario per value: 0.02 s keeps this machine's cores busy (a
CPU-bound test of the gateway's cost), 1 s is closer to a real model's inference, where the
gateway's added latency and concurrency matter. Both sides use fal's queue unless ``--sync``.

Then, beside LiteLLM Proxy (``litellm[proxy]==1.108.7``, the newest release whose proxy extras
resolve on the index, installed once into its own virtualenv under ``benchmarks/.cache/``; see
``litellm_proxy_side.py``): both servers run one worker on the same config file against one
fake fal server, on fal's sync endpoint (the only one LiteLLM's fal provider calls), driven by
the same OpenAI SDK calls at the same concurrencies. LiteLLM runs with its master key and no
database (its virtual keys need PostgreSQL); the gateway serves a virtual key with a budget and
an rpm limit, so it does more per request. It prints each side's requests/s, latency and the
CPU per request of its server's process tree (and of every process), and the ratios
falbind/LiteLLM for throughput and LiteLLM/falbind for CPU per request beside the target, 5x.
When LiteLLM's proxy cannot be installed, one line says so and why, and the rest still runs.
No figure is asserted: this script prints them.
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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import yaml
from litellm_proxy_side import (
    CACHE,
    LITELLM_VERSION,
    LiteLLMUnavailable,
    litellm_proxy,
    proxy_python,
)

from falbind import AsyncFalClient

MODEL = "fal-ai/flux/schnell"
PROMPT = "a red fox in the snow"
CONCURRENCY = (1, 16, 64)


STUB_APP = """
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def generations(request):
    await request.body()
    return JSONResponse({"created": 1, "data": [{"url": "http://127.0.0.1/files/a.png"}]})

app = Starlette(routes=[Route("/v1/images/generations", generations, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@contextmanager
def fake_server(processing_time: float) -> Iterator[tuple[str, int]]:
    """The fake fal server in a child process; yields its base URL and PID."""
    command = [sys.executable, "-m", "falbind.cli.main", "fake-server"]
    command += ["--processing-time", str(processing_time)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().split()[-1], process.pid
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def stub_gateway() -> Iterator[tuple[str, int]]:
    """The stub ASGI app (the bare hop) in a child process; yields its URL and PID."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", STUB_APP, str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/v1/images/generations", process, method="POST")
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(10)


def wait_until_up(url: str, process: subprocess.Popen[Any], method: str = "GET") -> None:
    """Poll ``url`` until it answers 200 (30 s at most, or until ``process`` ends)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.request(method, url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` and its descendants so far, the children it
    has reaped included: a server's whole process tree (Linux ``/proc``; 0 elsewhere)."""
    ticks = 0
    for member in (pid, *descendants(pid)):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended between the listing and the read
        ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """The live descendants of process ``pid`` (``/proc/<pid>/task/<tid>/children``)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        for listing in Path(f"/proc/{pending.pop()}/task").glob("*/children"):
            try:
                children = [int(child) for child in listing.read_text().split()]
            except OSError:
                continue
            found += children
            pending += children
    return found


def gateway_config(fal_url: str, database_url: str, use_queue: bool) -> dict[str, Any]:
    """The config of the direct-client scenarios (``{dir}``: the config's folder)."""
    return {
        "model_list": [
            {
                "model_name": "flux-schnell",
                "litellm_params": {"model": MODEL},
                "model_info": {"output_cost_per_image": 0.003},
            }
        ],
        "general_settings": {
            "master_key": "os.environ/FALBIND_MASTER_KEY",
            "database_url": database_url,
        },
        "falbind_settings": {
            "run_url": f"{fal_url}/run",
            "queue_url": f"{fal_url}/queue",
            "storage_url": fal_url,
            "use_queue": use_queue,
        },
    }


def shared_config(fal_url: str) -> dict[str, Any]:
    """One LiteLLM Proxy config that both the gateway and LiteLLM Proxy run unchanged.

    LiteLLM 1.108.7's fal provider POSTs to ``{api_base}/{endpoint id}`` on fal's sync host
    (``litellm/llms/fal_ai/image_generation/transformation.py``), which the fake fal server
    serves under ``{url}/run``. ``falbind_settings`` (ignored by LiteLLM) puts the gateway on
    the same sync endpoint; with no ``database_url`` LiteLLM runs without a database and the
    gateway keeps its SQLite file beside the config.
    """
    return {
        "model_list": [
            {
                "model_name": "flux-schnell",
                "litellm_params": {
                    "model": f"fal_ai/{MODEL}",
                    "api_key": "os.environ/FAL_AI_API_KEY",
                    "api_base": f"{fal_url}/run",
                },
                "model_info": {"mode": "image_generation", "output_cost_per_image": 0.003},
            }
        ],
        "general_settings": {"master_key": "os.environ/FALBIND_MASTER_KEY"},
        "falbind_settings": {"use_queue": False, "storage_url": fal_url, "api_url": fal_url},
    }


@contextmanager
def config_file(config: dict[str, Any]) -> Iterator[Path]:
    """``config`` as YAML in a temporary folder (``{dir}`` in it names that folder)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(config).replace("{dir}", folder))
        yield path


def secrets_for_children(master_key: str) -> dict[str, str]:
    """What the configs name as ``os.environ/...``: handed to each child's environment only."""
    return {"FALBIND_MASTER_KEY": master_key, "FAL_KEY": "bench", "FAL_AI_API_KEY": "bench"}


@contextmanager
def gateway(config_path: Path, master_key: str) -> Iterator[tuple[str, int]]:
    """``falbind serve`` (one worker) in a child process on a random port; yields URL and PID."""
    port = free_port()
    env = {**os.environ, **secrets_for_children(master_key)}
    command = [sys.executable, "-m", "falbind.cli.main", "serve", "--config", str(config_path)]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health/readiness", process)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(10)


async def virtual_key(gateway_url: str, master_key: str) -> str:
    """A gateway key with a budget and an rpm limit: every request does the database work."""
    async with httpx.AsyncClient() as http:
        created = await http.post(
            f"{gateway_url}/key/generate",
            json={"max_budget": 1e9, "rpm_limit": 10**9},
            headers={"Authorization": f"Bearer {master_key}"},
        )
        key: str = created.raise_for_status().json()["key"]
        return key


def openai_sdk(url: str, api_key: str) -> openai.AsyncOpenAI:
    """The OpenAI SDK as a client of ``url`` (no retries, connections for 64 clients)."""
    # TCP_NODELAY: httpx writes a POST's headers and body separately, and without it
    # Nagle's algorithm holds the body until the server's delayed ACK (up to 40 ms).
    return openai.AsyncOpenAI(
        base_url=f"{url}/v1",
        api_key=api_key,
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(
            transport=httpx2.AsyncHTTPTransport(  # the openai SDK's HTTP library
                limits=httpx2.Limits(max_connections=256, max_keepalive_connections=256),
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            )
        ),
    )


async def measure(
    call: Callable[[], Awaitable[object]], concurrency: int, requests: int
) -> tuple[float, list[float]]:
    """(requests per second, latencies in ms) for ``requests`` calls, ``concurrency`` at once."""
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


async def warm_up(call: Callable[[], Awaitable[object]], concurrency: int) -> None:
    """Open the connections the measurement will use (and warm every cache on the way)."""
    await asyncio.gather(*(call() for _ in range(concurrency)))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass
class Row:
    """One scenario, database and concurrency: the three sides' figures."""

    fal_latency: float
    database: str
    clients: int
    rates: dict[str, float]
    """requests/s per side (``direct``, ``gateway``, ``hop``)."""
    latencies: dict[str, list[float]]
    cpu_ms: dict[str, float]
    """CPU per request of every process on the side (the benchmark's own included)."""
    gateway_process_ms: float
    own_ms: list[float]
    unloaded_hop_ms: float
    """The bare hop's p50 with one client: what the extra hop costs when nothing queues (with
    more clients the hop is measured flat out, so its latency is mostly its own queue)."""

    def p50(self, side: str) -> float:
        return statistics.median(self.latencies[side])

    @property
    def ratio(self) -> float:
        return self.rates["gateway"] / self.rates["direct"]

    @property
    def added(self) -> float:
        return self.p50("gateway") - self.p50("direct")

    @property
    def beyond_hop(self) -> float:
        return self.added - self.unloaded_hop_ms

    @property
    def cpu_bound(self) -> float:
        """The throughput ratio this gateway's CPU allows when the cores are the bottleneck."""
        return self.cpu_ms["direct"] / self.cpu_ms["gateway"]

    @property
    def ideal_bound(self) -> float:
        """The same for a gateway that cost nothing beyond a bare hop and its fal client: the
        direct side's work plus the hop's (the SDK and a server answering at once)."""
        return self.cpu_ms["direct"] / (self.cpu_ms["direct"] + self.cpu_ms["hop"])


class Cpu:
    """CPU seconds of this process and of the given child processes since the last read."""

    def __init__(self, **pids: int) -> None:
        self.pids = pids
        self._last = self._read()

    def _read(self) -> dict[str, float]:
        read = {name: process_cpu_seconds(pid) for name, pid in self.pids.items()}
        return {**read, "bench": time.process_time()}

    def lap(self) -> dict[str, float]:
        now = self._read()
        spent = {name: now[name] - self._last[name] for name in now}
        self._last = now
        return spent


async def run(
    fal: tuple[str, int],
    gateway_side: tuple[str, int],
    stub: tuple[str, int],
    master_key: str,
    args: argparse.Namespace,
    label: tuple[float, str],
) -> list[Row]:
    (fal_url, fal_pid), (gateway_url, gateway_pid), (stub_url, stub_pid) = fal, gateway_side, stub
    use_queue = not args.sync
    key = await virtual_key(gateway_url, master_key)
    direct = AsyncFalClient("bench", run_url=f"{fal_url}/run", queue_url=f"{fal_url}/queue")
    sdk, stub_sdk = openai_sdk(gateway_url, key), openai_sdk(stub_url, "stub")
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

    async def call_hop() -> object:
        return await stub_sdk.images.generate(model="flux-schnell", prompt=PROMPT)

    cpu = Cpu(fal=fal_pid, gateway=gateway_pid, stub=stub_pid)
    members = {
        "direct": ("bench", "fal"),
        "gateway": ("bench", "gateway", "fal"),
        "hop": ("bench", "stub"),
    }
    calls = {"direct": call_direct, "gateway": call_gateway, "hop": call_hop}
    rows = []
    unloaded_hop = 0.0
    try:
        for concurrency in CONCURRENCY:  # 1 first: the unloaded hop
            # A slow fal makes every request long: fewer of them, still 4 rounds of clients.
            wanted = args.requests if label[0] < 0.5 else args.requests // 10
            requests = max(wanted, concurrency * 4)
            rates, latencies, cpu_ms = {}, {}, {}
            gateway_process_ms = 0.0
            for side, call in calls.items():
                if side == "gateway":
                    own_ms.clear()
                await warm_up(call, concurrency)
                cpu.lap()
                rates[side], latencies[side] = await measure(call, concurrency, requests)
                spent = cpu.lap()
                cpu_ms[side] = sum(spent[name] for name in members[side]) / requests * 1000
                if side == "gateway":
                    gateway_process_ms = spent["gateway"] / requests * 1000
            if concurrency == 1:
                unloaded_hop = statistics.median(latencies["hop"])
            row = Row(
                *label,
                concurrency,
                rates,
                latencies,
                cpu_ms,
                gateway_process_ms,
                own_ms[:],
                unloaded_hop,
            )
            rows.append(row)
            if not args.markdown:
                print_row(row)
    finally:
        await direct.aclose()
        await sdk.close()
        await stub_sdk.close()
    return rows


def print_row(row: Row) -> None:
    for side in ("direct", "gateway", "hop"):
        lat = row.latencies[side]
        print(
            f"{row.clients:>7} {side:<8} {row.rates[side]:>8.1f} "
            f"{percentile(lat, 0.5):>8.2f} {percentile(lat, 0.99):>8.2f}"
        )
    print(
        f"{row.clients:>7} ratio    throughput {row.ratio:.2f}x of direct; added p50 "
        f"{row.added:+.2f} ms, {row.beyond_hop:+.2f} ms beyond the unloaded bare hop; the gateway's own "
        f"time (Server-Timing) p50 {percentile(row.own_ms, 0.5):.2f} ms, "
        f"p99 {percentile(row.own_ms, 0.99):.2f} ms"
    )
    print(
        f"{row.clients:>7} cpu      per request, all processes: direct {row.cpu_ms['direct']:.2f}"
        f" ms, gateway {row.cpu_ms['gateway']:.2f} ms (its process "
        f"{row.gateway_process_ms:.2f} ms), hop {row.cpu_ms['hop']:.2f} ms"
    )
    print(
        f"{row.clients:>7} bound    when the cores are the bottleneck, this gateway's CPU allows "
        f"{row.cpu_bound:.2f}x, and one that cost only the bare hop {row.ideal_bound:.2f}x"
    )


def print_markdown(rows: list[Row]) -> None:
    print(
        "| fal latency | database | clients | direct req/s | gateway req/s | ratio | added p50 "
        "| beyond the unloaded bare hop | own p50 | CPU/request direct / gateway "
        "| ratio the CPU allows: this gateway / a bare hop |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row.fal_latency:g} s | {row.database} | {row.clients} "
            f"| {row.rates['direct']:,.1f} | {row.rates['gateway']:,.1f} | {row.ratio:.2f} "
            f"| {row.added:+.1f} ms | {row.beyond_hop:+.1f} ms "
            f"| {percentile(row.own_ms, 0.5):.1f} ms "
            f"| {row.cpu_ms['direct']:.1f} / {row.cpu_ms['gateway']:.1f} ms "
            f"| {min(row.cpu_bound, 1.0):.2f} / {min(row.ideal_bound, 1.0):.2f} |"
        )


TARGET = 5.0
"""The issue's target: at least 5x LiteLLM Proxy's throughput, at most a fifth of its CPU."""


@dataclass
class VersusRow:
    """The gateway beside LiteLLM Proxy at one concurrency."""

    clients: int
    rates: dict[str, float]
    """requests/s per side (``falbind``, ``litellm``)."""
    latencies: dict[str, list[float]]
    server_cpu_ms: dict[str, float]
    """CPU per request of the side's server: its whole process tree."""
    all_cpu_ms: dict[str, float]
    """The same plus the fake fal server and the benchmark's own process (the client)."""

    @property
    def throughput_ratio(self) -> float:
        return self.rates["falbind"] / self.rates["litellm"]

    @property
    def cpu_ratio(self) -> float:
        return self.server_cpu_ms["litellm"] / self.server_cpu_ms["falbind"]

    @property
    def cpu_bound(self) -> float:
        """The throughput ratio the CPU allows when the cores are the bottleneck: here the client
        (the OpenAI SDK) and the fake fal share the cores with the server under test."""
        return self.all_cpu_ms["litellm"] / self.all_cpu_ms["falbind"]


ROUNDS = 2
"""Each side's requests at one concurrency are sent in this many rounds, taking turns with the
other side's, so a change in the machine's load (it is shared) falls on both sides alike."""
IDLE_SECONDS = 3.0
"""How long each server is watched with no request (its background work: timers, flushes)."""


async def run_versus(
    fal_pid: int, sides: dict[str, tuple[str, int, str]], args: argparse.Namespace
) -> tuple[list[VersusRow], dict[str, float]]:
    """The same OpenAI SDK calls against each side (``name: (url, pid, api key)``), in turn;
    with each server's CPU when idle (ms per second)."""
    sdks = {name: openai_sdk(url, key) for name, (url, _, key) in sides.items()}

    def caller(sdk: openai.AsyncOpenAI) -> Callable[[], Awaitable[object]]:
        async def call() -> object:
            return await sdk.images.generate(model="flux-schnell", prompt=PROMPT)

        return call

    calls = {name: caller(sdk) for name, sdk in sdks.items()}
    cpu = Cpu(fal=fal_pid, **{name: pid for name, (_, pid, _) in sides.items()})
    rows = []
    try:
        for call in calls.values():  # the first requests import and build what is lazy
            await measure(call, 4, 20)
        cpu.lap()
        await asyncio.sleep(IDLE_SECONDS)
        idle = {side: spent / IDLE_SECONDS * 1000 for side, spent in cpu.lap().items()}
        if not args.markdown:
            print(idle_line(idle))
            print(
                f"{'clients':>7} {'side':<8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
                f"{'server CPU':>11} {'all CPU':>9}  (ms per request)"
            )
        for concurrency in CONCURRENCY:
            per_round = max(args.requests // ROUNDS, concurrency * 2)
            requests = per_round * ROUNDS
            seconds = dict.fromkeys(calls, 0.0)
            server_cpu = dict.fromkeys(calls, 0.0)
            all_cpu = dict.fromkeys(calls, 0.0)
            latencies: dict[str, list[float]] = {side: [] for side in calls}
            for _ in range(ROUNDS):
                for side, call in calls.items():
                    await warm_up(call, concurrency)
                    cpu.lap()
                    rate, latency = await measure(call, concurrency, per_round)
                    spent = cpu.lap()
                    seconds[side] += per_round / rate
                    latencies[side] += latency
                    server_cpu[side] += spent[side] / requests * 1000
                    all_cpu[side] += (spent[side] + spent["fal"] + spent["bench"]) / requests * 1000
            rates = {side: requests / seconds[side] for side in calls}
            row = VersusRow(concurrency, rates, latencies, server_cpu, all_cpu)
            rows.append(row)
            if not args.markdown:
                print_versus_row(row)
    finally:
        for sdk in sdks.values():
            await sdk.close()
    return rows, idle


def idle_line(idle: dict[str, float]) -> str:
    tick = 1000 / os.sysconf("SC_CLK_TCK") / IDLE_SECONDS  # /proc counts CPU in clock ticks
    return (
        f"idle for {IDLE_SECONDS:g} s after warming up, each server's CPU: falbind "
        f"{idle['falbind']:.1f} ms/s, LiteLLM {idle['litellm']:.1f} ms/s (to within "
        f"{tick:.1f} ms/s; counted in the per-request CPU below, spread over the requests)"
    )


def verdict(ratio: float) -> str:
    return f"{ratio:.2f}x (target ≥ {TARGET:g}×: {'met' if ratio >= TARGET else 'NOT met'})"


def print_versus_row(row: VersusRow) -> None:
    for side, name in (("falbind", "falbind"), ("litellm", "LiteLLM")):
        lat = row.latencies[side]
        print(
            f"{row.clients:>7} {name:<8} {row.rates[side]:>8.1f} "
            f"{percentile(lat, 0.5):>8.2f} {percentile(lat, 0.99):>8.2f} "
            f"{row.server_cpu_ms[side]:>11.2f} {row.all_cpu_ms[side]:>9.2f}"
        )
    print(f"{row.clients:>7} ratio    throughput falbind/LiteLLM {verdict(row.throughput_ratio)}")
    print(f"{row.clients:>7} ratio    CPU per request LiteLLM/falbind {verdict(row.cpu_ratio)}")
    print(
        f"{row.clients:>7} bound    when the cores are the bottleneck, all processes' CPU allows "
        f"falbind/LiteLLM throughput up to {row.cpu_bound:.2f}x on this machine"
    )


def print_versus_markdown(rows: list[VersusRow]) -> None:
    print(
        "| clients | falbind req/s | LiteLLM req/s | throughput falbind/LiteLLM (target ≥ 5×) "
        "| p50 falbind / LiteLLM | server CPU/request falbind / LiteLLM "
        "| CPU LiteLLM/falbind (target ≥ 5×) | all processes' CPU/request falbind / LiteLLM "
        "| throughput ratio all processes' CPU allows |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row.clients} | {row.rates['falbind']:,.1f} | {row.rates['litellm']:,.1f} "
            f"| {row.throughput_ratio:.2f}x "
            f"| {statistics.median(row.latencies['falbind']):.1f} / "
            f"{statistics.median(row.latencies['litellm']):.1f} ms "
            f"| {row.server_cpu_ms['falbind']:.1f} / {row.server_cpu_ms['litellm']:.1f} ms "
            f"| {row.cpu_ratio:.2f}x "
            f"| {row.all_cpu_ms['falbind']:.1f} / {row.all_cpu_ms['litellm']:.1f} ms "
            f"| {row.cpu_bound:.2f}x |"
        )


def litellm_interpreter(args: argparse.Namespace) -> Path | None:
    """LiteLLM Proxy's interpreter, installed if needed; ``None`` (said in one line) if not."""
    if args.no_litellm:
        return None
    try:
        return proxy_python(args.litellm_version)
    except LiteLLMUnavailable as exc:
        print(f"LiteLLM Proxy column skipped: {exc}")
        return None


def versus_litellm(
    python: Path, master_key: str, args: argparse.Namespace
) -> tuple[list[VersusRow], dict[str, float]]:
    """The gateway and LiteLLM Proxy on one config file and one fake fal server."""
    version = args.litellm_version
    if not args.markdown:
        print(
            f"\n== falbind serve vs LiteLLM Proxy {version}: one worker each, the same config "
            "file, fal's sync endpoint (the only one LiteLLM's fal provider calls) =="
        )
        print(
            "note: LiteLLM Proxy runs with its master key and no database (its virtual keys "
            "need PostgreSQL); the gateway serves a virtual key with a budget and an rpm limit "
            "from SQLite, so it does more per request (key read, rpm slot, budget reservation "
            "and settlement, a log row)"
        )
    with (
        fake_server(0.02) as (fal_url, fal_pid),
        config_file(shared_config(fal_url)) as path,
        gateway(path, master_key) as (gateway_url, gateway_pid),
    ):
        key = asyncio.run(virtual_key(gateway_url, master_key))
        log = CACHE / f"litellm-proxy-{version}-serve.log"  # kept after the run, for a look
        children = secrets_for_children(master_key)
        try:
            with litellm_proxy(python, path, free_port(), children, log) as (url, pid):
                sides = {
                    "falbind": (gateway_url, gateway_pid, key),
                    "litellm": (url, pid, master_key),
                }
                return asyncio.run(run_versus(fal_pid, sides, args))
        except LiteLLMUnavailable as exc:
            print(f"LiteLLM Proxy column skipped: {exc}")
            return [], {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement")
    parser.add_argument(
        "--fal-latency",
        default="0.02,1",
        help="seconds the fake fal server takes per request; comma-separated scenarios",
    )
    parser.add_argument("--postgres-url", help="also measure on this PostgreSQL database")
    parser.add_argument("--sync", action="store_true", help="fal's sync endpoint, not the queue")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    litellm = parser.add_mutually_exclusive_group()
    litellm.add_argument(
        "--no-litellm", action="store_true", help="leave LiteLLM Proxy out (no install either)"
    )
    litellm.add_argument(
        "--only-litellm",
        action="store_true",
        help="only the gateway beside LiteLLM Proxy (not the direct client and the hop)",
    )
    parser.add_argument(
        "--litellm-version", default=LITELLM_VERSION, help="the litellm[proxy] release to install"
    )
    args = parser.parse_args()
    master_key = "sk-bench-" + secrets.token_urlsafe(24)
    databases = [("SQLite", "sqlite:///{dir}/bench.db")]
    if args.postgres_url:
        databases.append(("PostgreSQL", args.postgres_url))
    mode = "sync" if args.sync else "queue"
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    python = litellm_interpreter(args)  # before measuring: an install would skew the figures
    rows: list[Row] = []
    with ExitStack() as scenarios:
        stub = scenarios.enter_context(stub_gateway()) if not args.only_litellm else None
        for latency in (float(value) for value in args.fal_latency.split(",")):
            if stub is None:
                break
            with fake_server(latency) as fal:
                for name, database_url in databases:
                    if not args.markdown:
                        print(
                            f"\n== falbind serve (1 worker, {name}) vs AsyncFalClient, "
                            f"fal's {mode} endpoint, fal takes {latency:g} s =="
                        )
                        print(
                            f"{'clients':>7} {'side':<8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
                        )
                    config = gateway_config(fal[0], database_url, not args.sync)
                    with config_file(config) as path, gateway(path, master_key) as side:
                        label = (latency, name)
                        rows += asyncio.run(run(fal, side, stub, master_key, args, label))
    versus, idle = versus_litellm(python, master_key, args) if python is not None else ([], {})
    if args.markdown:
        if rows:
            print_markdown(rows)
        if versus:
            print()
            print_versus_markdown(versus)
            print(f"\n{idle_line(idle)}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
