"""LiteLLM Proxy as a side of ``bench_serve.py``: installed apart, started on the gateway's config.

The project pins LiteLLM 1.110.x for its integration tests, but ``litellm[proxy]==1.110.*`` does
not resolve on the package index (1.108.7 does), so the proxy gets a virtualenv of its own under
``benchmarks/.cache/`` (git-ignored). It is installed once: a marker file written after a
successful install lets the next run start at once, and a half-made folder (no marker) is
rebuilt. When the install fails (no index, no wheel) :func:`proxy_python` raises
:class:`LiteLLMUnavailable` with one line saying why, and the benchmark goes on without this side.

What LiteLLM 1.108.7's fal provider does (``litellm/llms/fal_ai/image_generation/``): it POSTs the
model's parameters to ``{api_base}/{endpoint id}`` on fal's *sync* host (``https://fal.run`` by
default) and reads the images from that answer; it never uses fal's queue. The fake fal server
serves that shape at ``{url}/run/{endpoint id}``, so ``api_base: {url}/run`` points LiteLLM at it
with no rewriting proxy in between.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

__all__ = ["CACHE", "LITELLM_VERSION", "LiteLLMUnavailable", "litellm_proxy", "proxy_python"]

LITELLM_VERSION = "1.108.7"
CACHE = Path(__file__).resolve().parent / ".cache"
INSTALL_TIMEOUT = 900.0
"""Seconds pip may take (resolving and unpacking the proxy's ~250 packages on 2 shared cores)."""
START_TIMEOUT = 180.0
"""Seconds the proxy may take to answer its readiness probe (about 15 s on an idle machine)."""


class LiteLLMUnavailable(RuntimeError):
    """LiteLLM Proxy cannot run here; the message is one line saying why."""


def proxy_python(version: str = LITELLM_VERSION, echo: IO[str] = sys.stdout) -> Path:
    """The interpreter of a virtualenv holding ``litellm[proxy]==version``, installed if needed.

    Raises :class:`LiteLLMUnavailable` when the virtualenv cannot be made or pip fails.
    """
    folder = CACHE / f"litellm-proxy-{version}"
    python = folder / "bin" / "python"
    marker = folder / ".installed"
    if marker.is_file() and python.exists():
        return python
    shutil.rmtree(folder, ignore_errors=True)  # a half-made install: start again
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / f"litellm-proxy-{version}-install.log"
    print(f"installing litellm[proxy]=={version} into {folder} (once; log: {log})", file=echo)
    echo.flush()
    # venv builds on the base interpreter even when run from the project's virtualenv: the
    # proxy's environment shares no package with the project's.
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    steps = {
        "python -m venv": [sys.executable, "-m", "venv", str(folder)],
        f"pip install litellm[proxy]=={version}": [*pip, f"litellm[proxy]=={version}"],
    }
    with log.open("w") as output:
        for name, step in steps.items():
            try:
                done = subprocess.run(
                    step,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    timeout=INSTALL_TIMEOUT,
                    check=False,
                    env=_clean_environment({}),
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                shutil.rmtree(folder, ignore_errors=True)
                raise LiteLLMUnavailable(f"{name} failed: {exc}") from None
            if done.returncode != 0:
                shutil.rmtree(folder, ignore_errors=True)
                raise LiteLLMUnavailable(
                    f"{name} exited {done.returncode}: {_last_error(log)} (full log: {log})"
                )
    marker.write_text(f"litellm[proxy]=={version}\n")
    return python


def _last_error(log: Path) -> str:
    """The last line of pip's output that says what went wrong (or its last line)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["no output"])[-1][:300]


def _clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without what points Python at the project's packages."""
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


@contextmanager
def litellm_proxy(
    python: Path, config_path: Path, port: int, secrets: Mapping[str, str], log_path: Path
) -> Iterator[tuple[str, int]]:
    """LiteLLM Proxy (one uvicorn worker, no database) on ``127.0.0.1:port``; yields URL, PID.

    ``secrets`` (the master key, the fal key) reach the child through its environment only, as
    the config names them (``os.environ/NAME``): never on its command line, where ``ps`` shows
    them. Its output goes to ``log_path``; when it does not come up, the error names that file.
    """
    env = _clean_environment(
        {
            **secrets,
            # The model price map bundled with the package: no download at start (no network).
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
    )
    command = [str(python), "-m", "litellm.proxy.proxy_cli", "--config", str(config_path)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_ready(f"{url}/health/readiness", process, log_path)
            yield url, process.pid
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            state = "ended" if process.poll() is not None else "did not answer"
            raise LiteLLMUnavailable(f"LiteLLM Proxy {state} at {url} (its output: {log_path})")
        time.sleep(0.2)
