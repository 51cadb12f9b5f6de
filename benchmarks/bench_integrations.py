"""Integration benchmarks against the local fake fal server (figures only, no assertions).

    python benchmarks/bench_integrations.py [--rounds N]

Measured in one run, the fake server in its own process (so it does not share our GIL), every
call the same text-to-image request (``fal-ai/flux/schnell``, 1024x1024, a URL back):

* LiteLLM: wall time per call of ``litellm.aimage_generation`` through falbind's provider
  (``falbind/...``) and through LiteLLM's built-in provider (``fal_ai/...``), against a direct
  ``AsyncFalClient.images.generate``, one call at a time and 32 at a time;
* Pipecat: ``FalbindImageGenService.run_image_gen`` (generate, then decode the PNG to an RGB
  frame) on an aiohttp session, against a direct ``images.generate`` with
  ``response_format="b64_json"`` (the same inline image), bare and followed by the same PIL
  decode to RGB that any Pipecat image service does.

Ratios above 1.0 mean slower than the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no GitHub fetch at import

import aiohttp
import litellm

from falbind import AsyncFalClient
from falbind.integrations import litellm as falbind_litellm
from falbind.integrations.pipecat import FalbindImageGenService, _rgb

ENDPOINT = "fal-ai/flux/schnell"
PROMPT = "a red fox in the snow"
SIZE = "1024x1024"
KEY = "bench"

Call = Callable[[], Awaitable[object]]


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


async def per_call_ms(
    calls: dict[str, Call], concurrency: int, per_round: int, rounds: int
) -> dict[str, float]:
    """Best-of-``rounds`` wall time per call in ms at ``concurrency`` calls in flight;
    contenders are interleaved round by round so noise hits each alike."""

    async def batch(call: Call, count: int) -> None:
        for _ in range(count // concurrency):
            await asyncio.gather(*(call() for _ in range(concurrency)))

    for call in calls.values():
        await batch(call, max(concurrency, 20))  # warm up pools and caches
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            await batch(call, per_round)
            elapsed = (time.perf_counter() - started) / per_round * 1000
            best[name] = min(best[name], elapsed)
    return best


def report(title: str, best: dict[str, float], baseline: str) -> None:
    print(f"\n{title}")
    for name, ms in best.items():
        print(f"  {name:<44} {ms:8.3f} ms/call   x{ms / best[baseline]:.2f} vs {baseline}")


async def bench_litellm(url: str, rounds: int) -> None:
    handler = falbind_litellm.FalbindLiteLLM()
    falbind_litellm.register(handler=handler)
    run_url = f"{url}/run"
    client = AsyncFalClient(KEY, run_url=run_url)

    async def direct() -> object:
        return await client.images.generate(model=ENDPOINT, prompt=PROMPT, size=SIZE)

    async def via_falbind() -> object:
        return await litellm.aimage_generation(
            model=f"falbind/{ENDPOINT}", prompt=PROMPT, size=SIZE, api_base=run_url, api_key=KEY
        )

    async def via_builtin() -> object:
        return await litellm.aimage_generation(
            model=f"fal_ai/{ENDPOINT}", prompt=PROMPT, size=SIZE, api_base=run_url, api_key=KEY
        )

    calls = {
        "direct AsyncFalClient.images.generate": direct,
        "litellm falbind/ provider": via_falbind,
        "litellm built-in fal_ai/ provider": via_builtin,
    }
    for concurrency, per_round in ((1, 30), (32, 160)):
        best = await per_call_ms(calls, concurrency, per_round, rounds)
        report(f"LiteLLM, {concurrency} concurrent", best, "direct AsyncFalClient.images.generate")
        falbind_ms = best["litellm falbind/ provider"]
        builtin_ms = best["litellm built-in fal_ai/ provider"]
        print(f"  falbind provider / built-in provider: x{falbind_ms / builtin_ms:.2f}")
    await client.aclose()
    await handler.aclose()


async def bench_pipecat(url: str, rounds: int) -> None:
    run_url = f"{url}/run"
    async with aiohttp.ClientSession() as session:
        service = FalbindImageGenService(
            aiohttp_session=session,
            key=KEY,
            run_url=run_url,
            settings=FalbindImageGenService.Settings(model=ENDPOINT, size=SIZE),
        )
        client = AsyncFalClient(KEY, run_url=run_url)

        async def direct() -> object:
            return await client.images.generate(
                model=ENDPOINT, prompt=PROMPT, size=SIZE, response_format="b64_json"
            )

        async def direct_and_decode() -> object:
            result = await direct()
            data = base64.b64decode(result.data[0].b64_json or "")  # type: ignore[attr-defined]
            return await asyncio.to_thread(_rgb, data)

        async def via_service() -> object:
            return [frame async for frame in service.run_image_gen(PROMPT)]

        calls = {
            "direct images.generate (b64_json)": direct,
            "direct images.generate + RGB decode": direct_and_decode,
            "FalbindImageGenService": via_service,
        }
        for concurrency, per_round in ((1, 30), (32, 160)):
            best = await per_call_ms(calls, concurrency, per_round, rounds)
            report(f"Pipecat, {concurrency} concurrent", best, "direct images.generate (b64_json)")
            service_ms = best["FalbindImageGenService"]
            decode_ms = best["direct images.generate + RGB decode"]
            print(f"  service / (direct + the same decode): x{service_ms / decode_ms:.2f}")
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="best of N rounds (default 5)")
    args = parser.parse_args()
    litellm.suppress_debug_info = True
    with fake_server() as url:
        print(
            f"fake fal server: {url}; litellm {version('litellm')}, pipecat-ai {version('pipecat-ai')}"
        )
        asyncio.run(bench_litellm(url, args.rounds))
        asyncio.run(bench_pipecat(url, args.rounds))


if __name__ == "__main__":
    main()
