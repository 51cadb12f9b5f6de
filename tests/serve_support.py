"""Helpers for the gateway tests: a gateway on a real 127.0.0.1 socket (in a thread, or as a
``falbind serve`` process), configs pointed at a fake fal server, and a PostgreSQL cluster
started from the Debian package as an unprivileged user."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self

import httpx
import uvicorn
import yaml

from falbind.serve import GatewayConfig, create_app, parse_config
from falbind.testing import FakeFalServer

MASTER_KEY = "sk-test-" + secrets.token_urlsafe(24)
ENVIRON = {"FALBIND_MASTER_KEY": MASTER_KEY, "FAL_KEY": "fal-test-key"}


def config_data(
    server: FakeFalServer,
    models: Mapping[str, str | Mapping[str, Any]],
    *,
    database_url: str,
    cost: float | None = 0.01,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A LiteLLM-style config dict: ``models`` maps model_name -> fal model (or litellm_params)."""
    entries = []
    for name, target in models.items():
        params = {"model": target} if isinstance(target, str) else dict(target)
        entry: dict[str, Any] = {"model_name": name, "litellm_params": params}
        if cost is not None:
            entry["model_info"] = {"mode": "image_generation", "output_cost_per_image": cost}
        entries.append(entry)
    return {
        "model_list": entries,
        "general_settings": {
            "master_key": "os.environ/FALBIND_MASTER_KEY",
            "database_url": database_url,
        },
        "falbind_settings": {
            "run_url": server.run_url,
            "queue_url": server.queue_url,
            "storage_url": server.storage_url,
            "api_url": server.api_url,
            **(settings or {}),
        },
    }


def build_config(data: Mapping[str, Any]) -> GatewayConfig:
    return parse_config(dict(data), environ=ENVIRON)


def avoid_minute_boundary(seconds: float) -> None:
    """Sleep into the next minute when fewer than ``seconds`` are left in this one: rpm limits
    count per calendar minute, so a test that crosses a minute would get a fresh allowance."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    """A real PNG of ``width`` x ``height`` red pixels."""
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


class ThreadedApp:
    """An ASGI app under uvicorn on its own thread, on a random 127.0.0.1 port."""

    def __init__(self, app: Any) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the app did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(15)
        self._socket.close()


class ThreadedGateway(ThreadedApp):
    """The gateway app under uvicorn on its own thread, on a random 127.0.0.1 port."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        super().__init__(create_app(config))


class GatewayProcess:
    """``falbind serve`` as a child process (stopped by its own PID)."""

    def __init__(
        self,
        config_path: Path,
        *,
        extra: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.env = dict(env or {})
        self.port = free_port()
        self.config_path = config_path
        self.extra = extra
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GatewayProcess:
        env = {**os.environ, **ENVIRON, **self.env}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "falbind.cli.main",
                "serve",
                "--config",
                str(self.config_path),
                "--port",
                str(self.port),
                *self.extra,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                output = self.process.stdout.read() if self.process.stdout else ""
                raise RuntimeError(f"falbind serve exited: {output}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("falbind serve did not become healthy")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process is not None and self.process.stdout:
            self.process.stdout.close()


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False))
    return path


# -- PostgreSQL from the Debian package ------------------------------------------------------


def postgres_bin() -> Path:
    """The newest ``/usr/lib/postgresql/*/bin`` with initdb and pg_ctl (the Debian layout)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name.split(".")[0]),
    )
    if not candidates:
        raise RuntimeError(
            "PostgreSQL is not installed: apt-get install -y postgresql (.ci/run does this)"
        )
    return Path(candidates[-1]).parent


class PostgresCluster:
    """A throw-away PostgreSQL cluster: initdb into a temporary directory as an unprivileged
    user (``nobody`` when the tests run as root), listening on a random 127.0.0.1 port only,
    with ``trust`` authentication for that loopback address; stopped and removed at exit."""

    USER = "falbind"

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="falbind-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_root = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self._as_root:
            command = ["runuser", "-u", "nobody", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    def __enter__(self) -> PostgresCluster:
        if self._as_root:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
        self.root.chmod(0o700)
        done = self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.USER,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        started = self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        if started.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            self._remove()
            raise RuntimeError(f"pg_ctl start failed: {started.stderr} {log}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        self._remove()

    def _remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import asyncio

        import asyncpg

        name = "t_" + secrets.token_hex(6)

        async def create() -> None:
            conn = await asyncpg.connect(
                host="127.0.0.1", port=self.port, user=self.USER, database="postgres"
            )
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())
        return self.url(name)


@contextlib.contextmanager
def fake_fal() -> Iterator[FakeFalServer]:
    with FakeFalServer() as server:
        yield server


# -- load and crash tests: reading the database, waiting, killing, fal's jobs ------------------


def database_rows(url: str, query: str) -> list[tuple[Any, ...]]:
    """The rows ``query`` reads from the gateway's database at ``url`` (``sqlite:///path`` or
    ``postgresql://...``), read from outside the gateway, as an operator would."""
    if url.startswith("sqlite:///"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return [tuple(row) for row in conn.execute(query).fetchall()]
    import asyncio

    import asyncpg

    async def read() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            return [tuple(row) for row in await conn.fetch(query)]
        finally:
            await conn.close()

    return asyncio.run(read())


def wait_until(
    condition: Callable[[], object], *, timeout: float, interval: float = 0.05, what: str = ""
) -> None:
    """Call ``condition()`` until it is true; ``AssertionError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or condition}")
        time.sleep(interval)


def kill_9(gateway: GatewayProcess) -> None:
    """``kill -9`` the gateway's own process (by its PID) and reap it."""
    import signal

    assert gateway.process is not None and gateway.process.poll() is None
    os.kill(gateway.process.pid, signal.SIGKILL)
    gateway.process.wait(10)


def fal_jobs(server: FakeFalServer) -> dict[str, set[str]]:
    """Each fal request id the fake server was asked about (status, result or cancel), with the
    routes it was asked on: a job whose id never appears here was never followed up."""
    jobs: dict[str, set[str]] = {}
    for request in server.requests:
        if request.route not in ("status", "stream", "result", "cancel"):
            continue
        parts = request.path.split("/")
        if "requests" in parts and parts.index("requests") + 1 < len(parts):
            jobs.setdefault(parts[parts.index("requests") + 1], set()).add(request.route)
    return jobs


def unsettled_fal_jobs(server: FakeFalServer) -> list[str]:
    """Why fal may still run (and bill) something nobody collects: a message per submitted job
    that was neither collected (its result fetched) nor cancelled; empty when every one was."""
    jobs = fal_jobs(server)
    problems = [
        f"job {request_id} was only asked about on {sorted(routes)}"
        for request_id, routes in sorted(jobs.items())
        if not routes & {"result", "cancel"}
    ]
    submitted = server.count(route="submit")
    if len(jobs) != submitted:
        problems.append(f"{submitted} job(s) submitted, {len(jobs)} ever followed up")
    return problems


def set_recovery_timings(
    gateway: ThreadedGateway, *, heartbeat_seconds: float, stale_after: float
) -> None:
    """Shorten a threaded gateway's heartbeat and reconciliation period (the ``Gateway``'s own
    parameters) before it starts, so a test can see what happens when they come round."""
    state = gateway.server.config.app.state.gateway
    state.heartbeat_seconds = heartbeat_seconds
    state.stale_after = stale_after


@contextlib.contextmanager
def postgres_transaction(url: str, statement: str, *, limit: float = 60.0) -> Iterator[None]:
    """Run ``statement`` in a PostgreSQL transaction that stays open (holding the locks it
    took, as an operator's query or a slow disk would) until the ``with`` block ends; at most
    ``limit`` seconds. The connection lives on its own thread with its own event loop."""
    import asyncio

    import asyncpg

    ready, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    async def hold() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            async with conn.transaction():
                await conn.execute(statement)
                ready.set()
                deadline = time.monotonic() + limit
                while not release.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
        finally:
            await conn.close()

    def run() -> None:
        try:
            asyncio.run(hold())
        except BaseException as exc:  # handed to the test's thread below
            failures.append(exc)
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(30):
        release.set()
        raise RuntimeError("the transaction did not start")
    if failures:
        raise failures[0]
    try:
        yield
    finally:
        release.set()
        thread.join(30)
