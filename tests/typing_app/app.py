"""A small app as a user writes it: type checkers must resolve falbind and catch mistakes.

Each line with a trailing error comment must be reported by both mypy and pyright, naming the
field the comment gives where the checker can (tests/test_packaging.py: a call that matches
neither overload of a typed method, the model form or the keyword form, may get the checker's
"no overload matches" message instead); every other line must check clean.
"""

from __future__ import annotations

import falbind
from falbind import FalClient, FluxSchnellInput, FluxSchnellOutput


def good(client: FalClient) -> str:
    out: FluxSchnellOutput = client.flux_schnell(prompt="a fox", image_size="square_hd")
    model = FluxSchnellInput(prompt="a fox", num_images=2)
    spec: falbind.EndpointSpec = falbind.ENDPOINTS["fal-ai/flux/schnell"]
    return f"{out.images[0].url} {model.prompt} {spec.id}"


def bad_enum(client: FalClient) -> None:
    client.flux_schnell(prompt="a fox", image_size="huge")  # error: image_size


def bad_keyword(client: FalClient) -> None:
    client.flux_schnell(prompt="a fox", num_image=2)  # error: num_image


def bad_model_field() -> None:
    FluxSchnellInput(prompt="a fox", num_image=2)  # error: num_image


def missing_required_parameter(client: FalClient) -> None:
    client.flux_schnell(image_size="square_hd")  # error: prompt


def model_form(client: FalClient) -> FluxSchnellOutput:
    return client.flux_schnell(FluxSchnellInput(prompt="a fox"), timeout=30)


def null_for_a_non_nullable_parameter(client: FalClient) -> None:
    client.bagel(prompt="a fox", seed=None)  # error: seed


def streamed(client: FalClient) -> str:
    with client.stream("fal-ai/flux/schnell", {"prompt": "a fox"}) as stream:
        progress = [event.get("progress") for event in stream]
        out: FluxSchnellOutput = stream.get_final_output()
    return f"{out.images[0].url} {len(progress)} {stream.current_output}"


async def streamed_async(client: falbind.AsyncFalClient) -> FluxSchnellOutput:
    async with client.stream("fal-ai/flux/schnell", prompt="a fox") as stream:
        async for event in stream:
            print(event["progress"])
        output: FluxSchnellOutput = await stream.get_final_output()
    return output


def stream_events_are_dicts(client: FalClient) -> None:
    for event in client.stream("fal-ai/flux/schnell", prompt="a fox"):
        print(event.images)  # error: images
