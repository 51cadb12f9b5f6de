"""``images.generate`` takes OpenAI's own arguments (issue 10, "Coming from OpenAI and LiteLLM"):
mapped to the model's field of that meaning, else refused (``strict``) or dropped with a note."""

from __future__ import annotations

import pytest

from falbind import AsyncFalClient, FalClient, FalTimeoutError, InvalidArgumentsError
from falbind.testing import FakeFalServer, Fault

GPT_IMAGE = "fal-ai/gpt-image-1/text-to-image"
SCHNELL = "fal-ai/flux/schnell"


def test_openai_arguments_map_to_the_models_fields(
    client: FalClient, server: FakeFalServer
) -> None:
    result = client.images.generate(
        model=GPT_IMAGE,
        prompt="a fox",
        quality="high",
        background="transparent",
        output_format="png",
        user="end-user-42",
    )
    assert result.notes == []
    sent = server.requests[-1].json()
    assert sent["quality"] == "high" and sent["background"] == "transparent"
    assert sent["output_format"] == "png"
    assert "end-user-42" not in server.requests[-1].body.decode()  # user is never sent


def test_equivalent_values_are_mapped_with_a_note(client: FalClient, server: FakeFalServer) -> None:
    result = client.images.generate(
        model=GPT_IMAGE, prompt="a fox", quality="hd", output_format="jpg"
    )
    sent = server.requests[-1].json()
    assert (sent["quality"], sent["output_format"]) == ("high", "jpeg")
    assert result.notes == [
        "OpenAI's quality='hd' was sent as quality='high'",
        "OpenAI's output_format='jpg' was sent as output_format='jpeg'",
    ]


def test_case_differences_are_exact_mappings(client: FalClient, server: FakeFalServer) -> None:
    client.images.generate(model="fal-ai/ideogram/v3", prompt="a fox", style="realistic")
    assert server.requests[-1].json()["style"] == "REALISTIC"


def test_a_models_own_values_still_pass(client: FalClient, server: FakeFalServer) -> None:
    client.images.generate(model="fal-ai/ideogram/v2", prompt="a fox", style="anime")
    assert server.requests[-1].json()["style"] == "anime"


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({"quality": "hd"}, f"{SCHNELL} has no 'quality' parameter"),
        ({"style": "vivid"}, f"{SCHNELL} has no 'style' parameter"),
        ({"background": "transparent"}, f"{SCHNELL} has no 'background' parameter"),
        ({"output_compression": 80}, f"{SCHNELL} has no 'output_compression' parameter"),
        (
            {"output_format": "webp"},
            f"{SCHNELL}'s output_format takes 'jpeg', 'png', and none of them means 'webp'",
        ),
    ],
)
def test_strict_refuses_with_the_reason_before_sending(
    client: FalClient, server: FakeFalServer, arguments: dict[str, object], reason: str
) -> None:
    with pytest.raises(InvalidArgumentsError) as caught:
        client.images.generate(model=SCHNELL, prompt="a fox", **arguments)  # type: ignore[arg-type]
    assert reason in str(caught.value)
    assert "openai_params='drop'" in str(caught.value)
    assert server.count() == 0


def test_strict_refuses_a_value_the_field_does_not_take(client: FalClient) -> None:
    with pytest.raises(InvalidArgumentsError, match="none of them means 'vivid'"):
        client.images.generate(model="fal-ai/ideogram/v2", prompt="a fox", style="vivid")


def test_drop_sends_the_rest_and_reports_each_dropped_argument(
    client: FalClient, server: FakeFalServer
) -> None:
    result = client.images.generate(
        model=SCHNELL,
        prompt="a fox",
        quality="hd",
        style="vivid",
        output_format="png",
        output_compression=80,
        openai_params="drop",
    )
    assert server.requests[-1].json() == {
        "prompt": "a fox",
        "output_format": "png",
        "num_images": 1,
    }
    assert result.notes == [
        f"OpenAI's quality='hd' was dropped: {SCHNELL} has no 'quality' parameter",
        f"OpenAI's style='vivid' was dropped: {SCHNELL} has no 'style' parameter",
        f"OpenAI's output_compression=80 was dropped: {SCHNELL} has no "
        "'output_compression' parameter",
    ]


def test_an_unknown_policy_is_refused(client: FalClient) -> None:
    with pytest.raises(InvalidArgumentsError, match="openai_params must be"):
        client.images.generate(model=SCHNELL, prompt="x", openai_params="loose")  # type: ignore[arg-type]


def test_model_defaults_to_the_clients_default_image_model(server: FakeFalServer) -> None:
    with server.client(default_image_model=SCHNELL) as fal:
        assert fal.images.generate(prompt="a fox").model == SCHNELL
        assert fal.with_options(timeout=5).images.generate(prompt="a fox").model == SCHNELL
        assert fal.images.generate(model=GPT_IMAGE, prompt="a fox").model == GPT_IMAGE
    with server.client() as fal, pytest.raises(InvalidArgumentsError, match="default_image_model"):
        fal.images.generate(prompt="a fox")


def test_timeout_is_per_call(client: FalClient, server: FakeFalServer) -> None:
    server.inject(Fault.slow(2.0), route="run", times=1)
    with pytest.raises(FalTimeoutError):
        client.images.generate(model=SCHNELL, prompt="a fox", timeout=0.2)
    assert server.count(route="run") == 1  # a POST that reached fal is not resent


def test_timeout_with_the_queue_is_the_client_timeout(server: FakeFalServer) -> None:
    server.inject(Fault.never_complete(), route="submit", times=1)
    with server.client() as fal, pytest.raises(FalTimeoutError):
        fal.images.generate(model=SCHNELL, prompt="a fox", timeout=0.3, use_queue=True)
    assert server.count(route="cancel") == 1


async def test_async_openai_arguments(async_client: AsyncFalClient, server: FakeFalServer) -> None:
    async_client.default_image_model = GPT_IMAGE
    result = await async_client.images.generate(
        prompt="a fox", n=2, quality="standard", style="natural", openai_params="drop"
    )
    assert len(result.data) == 2
    assert server.requests[-1].json()["quality"] == "medium"
    assert result.notes == [
        "OpenAI's quality='standard' was sent as quality='medium'",
        f"OpenAI's style='natural' was dropped: {GPT_IMAGE} has no 'style' parameter",
    ]
    server.inject(Fault.slow(2.0), route="run", times=1)
    with pytest.raises(FalTimeoutError):
        await async_client.images.generate(prompt="a fox", timeout=0.2)


def test_a_misplaced_call_option_names_the_option(client: FalClient, server: FakeFalServer) -> None:
    with pytest.raises(
        InvalidArgumentsError, match="did you mean the call option `extra_headers=`"
    ):
        client.images.generate(model=SCHNELL, prompt="a fox", headers={"X-A": "1"})
    assert server.count() == 0
