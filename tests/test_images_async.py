"""``AsyncFalClient.images.generate``: the async twin of test_images.py (same cases, from
``images_cases``), plus what only the async client does: concurrent requests."""

from __future__ import annotations

import time

import pytest
from images_cases import (
    PROMPT,
    REFUSALS,
    SCENARIOS,
    SIZE_CASES,
    TEXT_TO_IMAGE,
    Refusal,
    Scenario,
    check_every_model,
    check_refusal,
    check_size_case,
    every_model_kwargs,
)

from falbind.client.clients import AsyncFalClient
from falbind.client.errors import UnprocessableEntityError
from falbind.testing.server import FakeFalServer, Fault


@pytest.mark.parametrize(("endpoint_id", "size"), SIZE_CASES)
async def test_exact_body_for_each_starting_set_endpoint_and_size(
    fal_server: FakeFalServer, async_fal_client: AsyncFalClient, endpoint_id: str, size: str
) -> None:
    result = await async_fal_client.images.generate(model=endpoint_id, prompt=PROMPT, size=size)
    check_size_case(fal_server, result, endpoint_id, size)


@pytest.mark.parametrize("endpoint_id", TEXT_TO_IMAGE)
async def test_every_text_to_image_endpoint_gives_n_base64_pngs(
    fal_server: FakeFalServer, async_fal_client: AsyncFalClient, endpoint_id: str
) -> None:
    result = await async_fal_client.images.generate(**every_model_kwargs(endpoint_id))
    check_every_model(fal_server, result, endpoint_id)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
async def test_scenario(
    fal_server: FakeFalServer, async_fal_client: AsyncFalClient, scenario: Scenario
) -> None:
    if scenario.prepare is not None:
        scenario.prepare(fal_server)
    scenario.check(fal_server, await async_fal_client.images.generate(**scenario.kwargs))


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: r.id)
async def test_refused_before_any_request(
    fal_server: FakeFalServer, async_fal_client: AsyncFalClient, refusal: Refusal
) -> None:
    with pytest.raises(refusal.error) as caught:
        await async_fal_client.images.generate(**refusal.kwargs)
    check_refusal(fal_server, refusal, caught.value)


async def test_requests_without_a_count_field_run_concurrently(
    fal_server: FakeFalServer, async_fal_client: AsyncFalClient
) -> None:
    delay = 0.4
    fal_server.inject(Fault.slow(delay), route="run", times=3)
    started = time.monotonic()
    result = await async_fal_client.images.generate(model="fal-ai/recraft-v3", prompt=PROMPT, n=3)
    elapsed = time.monotonic() - started
    assert len(result.data) == 3
    assert delay <= elapsed < 2 * delay  # one after another would take 3 * delay


async def test_split_batches_run_concurrently(
    fal_server: FakeFalServer, async_fal_client: AsyncFalClient
) -> None:
    delay = 0.4
    fal_server.inject(Fault.slow(delay), route="run", times=2)
    started = time.monotonic()
    result = await async_fal_client.images.generate(model="fal-ai/flux/dev", prompt=PROMPT, n=5)
    assert time.monotonic() - started < 2 * delay
    assert [r.json()["num_images"] for r in fal_server.requests] == [4, 1]
    assert len(result.data) == 5


async def test_every_request_ends_before_the_first_error_is_raised(
    fal_server: FakeFalServer, async_fal_client: AsyncFalClient
) -> None:
    fal_server.inject(Fault.http(422, detail="bad prompt"), route="run", times=1)
    with pytest.raises(UnprocessableEntityError):
        await async_fal_client.images.generate(model="fal-ai/recraft-v3", prompt=PROMPT, n=3)
    assert fal_server.count(route="run") == 3
