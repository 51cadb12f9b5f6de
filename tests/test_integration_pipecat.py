"""FalbindImageGenService in real Pipecat pipelines, against the fake fal server over sockets.

Each test pushes ``TextFrame``\\ s through a real ``Pipeline``/``PipelineTask`` (Pipecat's own
``pipecat.tests.utils.run_test``) and checks the frames that come out and the requests the
fake fal server recorded.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import aiohttp
import pytest
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    ServiceUpdateSettingsFrame,
    TextFrame,
    URLImageRawFrame,
)
from pipecat.tests.utils import run_test
from pipecat.utils.errors import ErrorCategory
from pydantic import ValidationError

from falbind.integrations.pipecat import FalbindImageGenService
from falbind.testing import FakeFalServer, Fault

from support import FAST_RETRY

KEY = "test-fal-key-77aa"
PROMPT = "a red fox in the snow"
Settings = FalbindImageGenService.Settings


@pytest.fixture
def server() -> Iterator[FakeFalServer]:
    with FakeFalServer(key=KEY) as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http
        # The service must never close the session it was given.
        assert not http.closed


def service(
    server: FakeFalServer, session: aiohttp.ClientSession, **settings: Any
) -> FalbindImageGenService:
    return FalbindImageGenService(
        aiohttp_session=session,
        key=KEY,
        run_url=server.run_url,
        retry=FAST_RETRY,
        settings=Settings(**settings),
    )


async def run(
    image_gen: FalbindImageGenService, *prompts: str
) -> tuple[Sequence[Frame], Sequence[Frame]]:
    return await run_test(image_gen, frames_to_send=[TextFrame(p) for p in prompts or (PROMPT,)])


def images(frames: Sequence[Frame]) -> list[URLImageRawFrame]:
    return [f for f in frames if isinstance(f, URLImageRawFrame)]


def bodies(server: FakeFalServer) -> list[tuple[str, dict[str, Any]]]:
    return [(r.path, r.json()) for r in server.requests if r.method == "POST"]


def check_rgb(frame: URLImageRawFrame) -> None:
    width, height = frame.size
    assert frame.format == "RGB"
    assert width > 0 and height > 0 and len(frame.image) == width * height * 3


# -- only what the user set is sent ------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        # bria's schema demands >= 20 steps; Pipecat's FalImageGenService sends 8 (a 422).
        ("bria/text-to-image/3.2", {"prompt": PROMPT, "sync_mode": True}),
        ("fal-ai/flux/dev", {"prompt": PROMPT, "sync_mode": True, "num_images": 1}),
        ("fal-ai/fast-sdxl", {"prompt": PROMPT, "sync_mode": True, "num_images": 1}),
        ("fal-ai/flux-pro/v1.1-ultra", {"prompt": PROMPT, "sync_mode": True, "num_images": 1}),
        ("fal-ai/recraft/v3/text-to-image", {"prompt": PROMPT}),
    ],
)
async def test_only_what_was_set_is_sent_and_one_frame_comes_out(
    server: FakeFalServer, session: aiohttp.ClientSession, model: str, expected: dict[str, Any]
) -> None:
    down, up = await run(service(server, session, model=model))
    assert bodies(server) == [(f"/run/{model}", expected)]
    (frame,) = images(down)
    check_rgb(frame)
    assert up == []
    if "sync_mode" in expected:
        assert frame.url is None and server.count(route="file") == 0  # inline: no download
    else:
        assert frame.url and frame.url.startswith(server.url) and server.count(route="file") == 1
    assert isinstance(down[0], TextFrame)  # the prompt is passed on, as Pipecat's services do


async def test_settings_map_to_the_model(
    server: FakeFalServer, session: aiohttp.ClientSession
) -> None:
    await run(
        service(
            server,
            session,
            model="fal-ai/flux-pro/v1.1-ultra",
            size="1024x1792",
            seed=7,
            extra={"output_format": "png", "raw": True},
        )
    )
    assert bodies(server) == [
        (
            "/run/fal-ai/flux-pro/v1.1-ultra",
            {
                "prompt": PROMPT,
                "aspect_ratio": "9:16",
                "output_format": "png",
                "raw": True,
                "seed": 7,
                "sync_mode": True,
                "num_images": 1,
            },
        )
    ]


async def test_size_may_be_the_models_own_value(
    server: FakeFalServer, session: aiohttp.ClientSession
) -> None:
    await run(service(server, session, model="fal-ai/flux/schnell", size="landscape_16_9"))
    assert bodies(server)[0][1]["image_size"] == "landscape_16_9"


@pytest.mark.parametrize(
    ("model", "requests"), [("fal-ai/flux/schnell", 1), ("bria/text-to-image/3.2", 2)]
)
async def test_num_images_two_gives_two_frames(
    server: FakeFalServer, session: aiohttp.ClientSession, model: str, requests: int
) -> None:
    down, _ = await run(service(server, session, model=model, num_images=2))
    frames = images(down)
    assert len(frames) == 2
    for frame in frames:
        check_rgb(frame)
    assert len(bodies(server)) == requests


async def test_single_image_output_with_download(
    server: FakeFalServer, session: aiohttp.ClientSession
) -> None:
    """fal-ai/layer-diffusion answers ``{"image": {...}}`` and has no sync_mode: downloaded."""
    down, up = await run(service(server, session, model="fal-ai/layer-diffusion"))
    (frame,) = images(down)
    check_rgb(frame)  # RGBA or not, frames are RGB
    assert frame.url and server.count(route="file") == 1
    assert up == []


async def test_prefer_inline_off_keeps_urls(
    server: FakeFalServer, session: aiohttp.ClientSession
) -> None:
    image_gen = FalbindImageGenService(
        aiohttp_session=session,
        key=KEY,
        run_url=server.run_url,
        prefer_inline=False,
        settings=Settings(model="fal-ai/flux/schnell"),
    )
    down, _ = await run(image_gen)
    assert bodies(server)[0][1] == {"prompt": PROMPT, "num_images": 1}
    assert images(down)[0].url


async def test_several_prompts_through_the_queue(
    server: FakeFalServer, session: aiohttp.ClientSession
) -> None:
    image_gen = FalbindImageGenService(
        aiohttp_session=session,
        key=KEY,
        queue_url=server.queue_url,
        use_queue=True,
        settings=Settings(model="fal-ai/flux/schnell"),
    )
    down, _ = await run(image_gen, "a fox", "a hare")
    assert len(images(down)) == 2
    assert server.count(route="submit") == 2 and server.count(route="run") == 0


# -- refused at construction -------------------------------------------------------------------


def test_misspelt_setting_is_refused_at_construction(server: FakeFalServer) -> None:
    with pytest.raises(ValidationError) as caught:
        FalbindImageGenService(
            key=KEY,
            run_url=server.run_url,
            settings=Settings(model="fal-ai/flux/dev", extra={"num_inference_step": 8}),
        )
    assert "did you mean 'num_inference_steps'" in str(caught.value)
    assert server.requests == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (Settings(model="bria/text-to-image/3.2", extra={"num_inference_steps": 8}), "20"),
        (Settings(model="fal-ai/flux/schnel"), "did you mean"),
        (Settings(model="fal-ai/flux/dev", extra={"format": "png"}), "output_format"),
        (Settings(model="fal-ai/imagen4/preview", size="1000x1003"), "size"),
    ],
    ids=["below-bria-minimum", "unknown-model", "pipecat-format-name", "strict-size"],
)
def test_invalid_settings_are_refused_at_construction(
    server: FakeFalServer, settings: Any, message: str
) -> None:
    with pytest.raises((ValidationError, KeyError, ValueError)) as caught:
        FalbindImageGenService(key=KEY, run_url=server.run_url, strict_size=True, settings=settings)
    assert message in str(caught.value)
    assert server.requests == []


def test_a_model_that_is_not_text_to_image_is_refused(server: FakeFalServer) -> None:
    with pytest.raises(ValueError, match="text-to-image"):
        FalbindImageGenService(key=KEY, settings=Settings(model="fal-ai/clarity-upscaler"))


# -- the user's session and environment ---------------------------------------------------------


async def test_session_stays_open_and_environment_untouched(
    server: FakeFalServer, session: aiohttp.ClientSession
) -> None:
    before = dict(os.environ)
    image_gen = service(server, session, model="fal-ai/flux/schnell")
    await run(image_gen)
    await image_gen.cleanup()
    assert not session.closed
    assert dict(os.environ) == before
    assert KEY not in repr(image_gen) and KEY not in repr(image_gen._client)
    # The same session still works for the user.
    async with session.get(f"{server.url}/files/nonexistent") as response:
        assert response.status == 404


# -- errors ------------------------------------------------------------------------------------


async def test_wrong_key_is_an_authentication_error(
    server: FakeFalServer, session: aiohttp.ClientSession
) -> None:
    image_gen = FalbindImageGenService(
        aiohttp_session=session,
        key="wrong-key-0000",
        run_url=server.run_url,
        settings=Settings(model="fal-ai/flux/schnell"),
    )
    down, up = await run(image_gen)
    (error,) = up
    assert isinstance(error, ErrorFrame)
    assert error.category is ErrorCategory.AUTHENTICATION
    assert "wrong-key-0000" not in error.error
    assert images(down) == []
    assert not image_gen.is_usable


async def test_a_refused_prompt_does_not_disable_the_service(
    server: FakeFalServer, session: aiohttp.ClientSession
) -> None:
    server.inject(Fault.http(422, detail="prompt refused by the content filter"), route="run")
    image_gen = service(server, session, model="fal-ai/flux/schnell")
    down, up = await run(image_gen, "a forbidden prompt", "a fox")
    (error,) = up
    assert isinstance(error, ErrorFrame)
    assert error.category is ErrorCategory.APPLICATION
    assert image_gen.is_usable
    assert len(images(down)) == 1  # the next prompt still works


async def test_rate_limit_and_server_errors_keep_their_category(
    server: FakeFalServer, session: aiohttp.ClientSession
) -> None:
    server.inject(Fault.rate_limit(), route="run", times=None)
    _, up = await run(service(server, session, model="fal-ai/flux/schnell"))
    assert [e.category for e in up] == [ErrorCategory.RATE_LIMIT]


async def test_a_failed_download_is_an_error_frame(
    server: FakeFalServer, session: aiohttp.ClientSession
) -> None:
    server.inject(Fault.http(503, detail="cdn down"), route="file", times=None)
    down, up = await run(service(server, session, model="fal-ai/recraft/v3/text-to-image"))
    assert images(down) == []
    (error,) = up
    assert isinstance(error, ErrorFrame) and error.category is ErrorCategory.SERVER


# -- settings updates --------------------------------------------------------------------------


async def test_a_settings_update_is_validated_and_a_bad_one_keeps_the_old_settings(
    server: FakeFalServer, session: aiohttp.ClientSession
) -> None:
    image_gen = service(server, session, model="fal-ai/flux/schnell")
    bad = Settings(extra={"num_image": 2})
    good = Settings(model="fal-ai/flux/dev", num_images=2, extra={"guidance_scale": 4})
    down, up = await run_test(
        image_gen,
        frames_to_send=[
            ServiceUpdateSettingsFrame(delta=bad, service=image_gen),
            TextFrame("after the bad update"),
            ServiceUpdateSettingsFrame(delta=good, service=image_gen),
            TextFrame("after the good update"),
        ],
    )
    (error,) = up
    assert isinstance(error, ErrorFrame) and "did you mean 'num_images'" in error.error
    assert image_gen.is_usable
    assert bodies(server) == [
        (
            "/run/fal-ai/flux/schnell",
            {"prompt": "after the bad update", "sync_mode": True, "num_images": 1},
        ),
        (
            "/run/fal-ai/flux/dev",
            {
                "prompt": "after the good update",
                "guidance_scale": 4,
                "sync_mode": True,
                "num_images": 2,
            },
        ),
    ]
    assert len(images(down)) == 3


async def test_update_settings_none_in_extra_removes_a_parameter(
    server: FakeFalServer, session: aiohttp.ClientSession
) -> None:
    image_gen = service(server, session, model="fal-ai/flux/dev", extra={"guidance_scale": 4})
    changed = await image_gen.update_settings(Settings(extra={"guidance_scale": None}, seed=3))
    assert "seed" in changed
    assert image_gen.settings.extra == {}
    await run(image_gen)
    assert bodies(server)[0][1] == {"prompt": PROMPT, "seed": 3, "sync_mode": True, "num_images": 1}


async def test_a_ready_client_is_used_and_left_open(server: FakeFalServer) -> None:
    async with server.async_client(retry=FAST_RETRY) as client:
        image_gen = FalbindImageGenService(
            client=client, settings=Settings(model="fal-ai/flux/schnell", num_images=3)
        )
        down, _ = await run(image_gen)
        await image_gen.cleanup()
        assert len(images(down)) == 3
        # Still usable: the service did not close a client it does not own.
        output = await client.flux_schnell(prompt=PROMPT)
        assert output.images


async def test_the_deprecated_settings_mapping_is_validated_too(
    server: FakeFalServer, session: aiohttp.ClientSession
) -> None:
    image_gen = service(server, session, model="fal-ai/flux/schnell")
    _, up = await run_test(
        image_gen,
        frames_to_send=[
            ServiceUpdateSettingsFrame(settings={"num_image": 2}, service=image_gen),
            ServiceUpdateSettingsFrame(settings={"seed": 11}, service=image_gen),
            TextFrame(PROMPT),
        ],
    )
    assert len(up) == 1 and "did you mean 'num_images'" in up[0].error
    assert bodies(server)[0][1]["seed"] == 11


async def test_a_download_that_is_not_an_image_is_an_error_frame(
    server: FakeFalServer, session: aiohttp.ClientSession
) -> None:
    with server.client() as client:
        not_an_image = client.upload(b"<html>login page</html>", content_type="text/html")
    model = "fal-ai/recraft/v3/text-to-image"
    server.add_endpoint(model, lambda body: {"images": [{"url": not_an_image}]})
    down, up = await run(service(server, session, model=model))
    assert images(down) == []
    (error,) = up
    assert error.category is ErrorCategory.SERVER and "text/html" in error.error
