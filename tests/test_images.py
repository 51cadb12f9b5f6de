"""``FalClient.images.generate`` over real sockets against the fake fal server.

The cases live in ``images_cases`` and are shared with the async twin (test_images_async.py).
"""

from __future__ import annotations

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
from pydantic import ValidationError

from falbind.client.clients import FalClient
from falbind.client.errors import UnprocessableEntityError
from falbind.images.generate import plan_images
from falbind.testing.server import FakeFalServer, Fault


@pytest.mark.parametrize(("endpoint_id", "size"), SIZE_CASES)
def test_exact_body_for_each_starting_set_endpoint_and_size(
    fal_server: FakeFalServer, fal_client: FalClient, endpoint_id: str, size: str
) -> None:
    result = fal_client.images.generate(model=endpoint_id, prompt=PROMPT, size=size)
    check_size_case(fal_server, result, endpoint_id, size)


@pytest.mark.parametrize("endpoint_id", TEXT_TO_IMAGE)
def test_every_text_to_image_endpoint_gives_n_base64_pngs(
    fal_server: FakeFalServer, fal_client: FalClient, endpoint_id: str
) -> None:
    result = fal_client.images.generate(**every_model_kwargs(endpoint_id))
    check_every_model(fal_server, result, endpoint_id)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_scenario(fal_server: FakeFalServer, fal_client: FalClient, scenario: Scenario) -> None:
    if scenario.prepare is not None:
        scenario.prepare(fal_server)
    scenario.check(fal_server, fal_client.images.generate(**scenario.kwargs))


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: r.id)
def test_refused_before_any_request(
    fal_server: FakeFalServer, fal_client: FalClient, refusal: Refusal
) -> None:
    with pytest.raises(refusal.error) as caught:
        fal_client.images.generate(**refusal.kwargs)
    check_refusal(fal_server, refusal, caught.value)


def test_requests_are_sequential_and_stop_at_the_first_error(
    fal_server: FakeFalServer, fal_client: FalClient
) -> None:
    fal_server.inject(Fault.http(422, detail="bad prompt"), route="run", times=1)
    with pytest.raises(UnprocessableEntityError):
        fal_client.images.generate(model="fal-ai/recraft-v3", prompt=PROMPT, n=3)
    assert fal_server.count(route="run") == 1


def test_the_plan_validates_every_body_itself_without_a_client() -> None:
    with pytest.raises(ValidationError, match="unknown parameter 'seeds' for fal-ai/recraft-v3"):
        plan_images(model="fal-ai/recraft-v3", prompt=PROMPT, n=3, model_params={"seeds": 1})
    job = plan_images(model="fal-ai/flux/schnell", prompt=PROMPT, n=9, size="1200x800")
    assert [body["num_images"] for body in job.bodies] == [4, 4, 1]
    assert all(body["image_size"] == {"width": 1200, "height": 800} for body in job.bodies)
