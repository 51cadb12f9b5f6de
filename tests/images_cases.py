"""What ``client.images.generate`` must send and return, shared by the sync and async tests.

Each table row is run by both twins (``test_images.py``, ``test_images_async.py``) over real
sockets against the fake fal server:

- ``SIZE_CASES``: every starting-set endpoint × every OpenAI size, with the exact JSON body fal
  must receive (size parameters from ``test_sizing.EXPECTED``, the count field from
  ``COUNT_MAX`` below: facts read off the vendored schemas, not from the code under test);
- ``SCENARIOS``: one call each (n, response_format, model names, parameters) and its checks;
- ``REFUSALS``: calls that must fail before any byte is sent.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from test_sizing import EXPECTED, SIZES

import falbind
from falbind.images.generate import ImagesResponse
from falbind.images.sizing import SizeError, plan_for
from falbind.models.index import UnknownEndpointError
from falbind.testing.server import FakeFalServer

from starting_set import STARTING_SET
from support import example_input

PROMPT = "a red fox in the snow"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

COUNT_MAX: dict[str, int | None] = {
    "fal-ai/flux/schnell": 4,
    "fal-ai/flux/dev": 4,
    "fal-ai/flux-pro/v1.1": 4,
    "fal-ai/flux-pro/v1.1-ultra": 4,
    "fal-ai/bytedance/seedream/v3/text-to-image": 4,
    "fal-ai/bytedance/dreamina/v3.1/text-to-image": 4,
    "fal-ai/imagen4/preview": 4,
    "fal-ai/recraft/v3/text-to-image": None,
    "fal-ai/recraft-v3": None,
    "fal-ai/ideogram/v3": 8,
    "fal-ai/stable-diffusion-v35-medium": 4,
    "bria/text-to-image/3.2": None,
    "fal-ai/fast-sdxl": 8,
}
"""Each endpoint's ``num_images`` maximum; ``None``: the model has no count field."""


def size_params(endpoint_id: str, size: str) -> dict[str, Any]:
    """The size parameters ``test_sizing.EXPECTED`` gives for ``endpoint_id`` and ``size``."""
    params = EXPECTED[endpoint_id][size]
    assert isinstance(params, dict)
    return params


def expected_body(endpoint_id: str, size: str) -> dict[str, Any]:
    """The exact body of ``generate(model=endpoint_id, prompt=PROMPT, size=size)``."""
    count = {"num_images": 1} if COUNT_MAX[endpoint_id] is not None else {}
    return {"prompt": PROMPT, **size_params(endpoint_id, size), **count}


SIZE_CASES = [(endpoint_id, size) for endpoint_id in STARTING_SET for size in SIZES]


def check_size_case(
    server: FakeFalServer, result: ImagesResponse, endpoint_id: str, size: str
) -> None:
    """One request with exactly the expected body; the result reports the plan's adjustment."""
    assert [(r.method, r.path) for r in server.requests] == [("POST", f"/run/{endpoint_id}")]
    assert server.requests[0].json() == expected_body(endpoint_id, size)
    plan = plan_for(endpoint_id, size)
    assert result.model == endpoint_id
    assert (result.size.requested, result.size.delivered) == (size, plan.delivered)
    assert result.size.size_adjusted is plan.adjusted
    assert result.size.notes == ([plan.note] if plan.adjusted else [])
    assert len(result.data) == 1 and result.data[0].url
    assert isinstance(result.outputs[0], falbind.ENDPOINTS[endpoint_id].output_model)
    sent = result.size.parameters.get("image_size")
    if isinstance(sent, dict) and result.data[0].width is not None:
        # The image reported is the size sent (orientation kept; shrunk only when reported).
        assert (result.data[0].width, result.data[0].height) == (sent["width"], sent["height"])


# -- every text-to-image endpoint ------------------------------------------------------------

TEXT_TO_IMAGE = sorted(
    endpoint_id
    for endpoint_id, spec in falbind.ENDPOINTS.items()
    if spec.category == "text-to-image" and "prompt" in spec.input_model.model_fields
)
"""Every bound text-to-image endpoint that takes a prompt."""


def every_model_kwargs(endpoint_id: str) -> dict[str, Any]:
    """Two base64 images at 1536x1024, plus the model's other required parameters."""
    required = example_input(falbind.ENDPOINTS[endpoint_id].input_model)
    required.pop("prompt", None)
    return {
        "model": endpoint_id,
        "prompt": PROMPT,
        "n": 2,
        "size": "1536x1024",
        "response_format": "b64_json",
        **required,
    }


def check_every_model(server: FakeFalServer, result: ImagesResponse, endpoint_id: str) -> None:
    """Two decodable PNGs; the size plan's parameters in every body; no note unless adjusted."""
    assert len(png_bytes_of(result)) == 2
    size_params = plan_for(endpoint_id, "1536x1024").params
    sent = bodies(server)
    assert sent and all(body.items() >= size_params.items() for body in sent)
    assert sum(body.get("num_images", 1) for body in sent) == 2
    assert bool(result.size.notes) is result.size.size_adjusted


# -- scenarios --------------------------------------------------------------------------------


Check = Callable[[FakeFalServer, ImagesResponse], None]


@dataclass(frozen=True)
class Scenario:
    """``generate(**kwargs)``, then ``check(server, result)``; ``prepare`` sets the server up."""

    id: str
    kwargs: dict[str, Any]
    check: Check
    prepare: Callable[[FakeFalServer], None] | None = None


@dataclass(frozen=True)
class Refusal:
    """``generate(**kwargs)`` raises ``error`` matching ``match``, having sent nothing."""

    id: str
    kwargs: dict[str, Any]
    error: type[Exception]
    match: str
    also: tuple[str, ...] = field(default=())
    """More fragments the message must contain."""


def bodies(server: FakeFalServer, route: str = "run") -> list[dict[str, Any]]:
    return [r.json() for r in server.requests if r.route == route]


def png_bytes_of(result: ImagesResponse) -> list[bytes]:
    """The decoded b64_json of every image, each checked to be a PNG."""
    decoded = []
    for image in result.data:
        assert image.url is None and image.b64_json is not None
        raw = base64.b64decode(image.b64_json, validate=True)
        assert raw.startswith(PNG_SIGNATURE), raw[:16]
        assert image.content_type == "image/png"
        decoded.append(raw)
    return decoded


def _three_without_count_field(endpoint_id: str) -> Check:
    def check(server: FakeFalServer, result: ImagesResponse) -> None:
        assert bodies(server) == [{"prompt": PROMPT, **size_params(endpoint_id, "1024x1024")}] * 3
        assert server.count() == 3
        assert len(result.data) == 3 and all(image.url for image in result.data)
        assert len(result.outputs) == 3
        assert result.notes == [
            f"{endpoint_id} has no image-count field: made 3 requests of one image each"
        ]

    return check


def _count_field_in_one_request(server: FakeFalServer, result: ImagesResponse) -> None:
    assert bodies(server) == [{"prompt": PROMPT, "num_images": 3}]
    assert len(result.data) == 3 and len(result.outputs) == 1
    assert result.notes == []


def _split_over_max(counts: list[int], endpoint_id: str) -> Check:
    def check(server: FakeFalServer, result: ImagesResponse) -> None:
        assert bodies(server) == [{"prompt": PROMPT, "num_images": c} for c in counts]
        assert len(result.data) == sum(counts) and len(result.outputs) == len(counts)
        maximum = COUNT_MAX[endpoint_id]
        assert result.notes == [
            f"n={sum(counts)} exceeds {endpoint_id}'s num_images maximum of {maximum}: "
            f"made {len(counts)} requests ({' + '.join(map(str, counts))})"
        ]

    return check


def _b64_via_sync_mode(server: FakeFalServer, result: ImagesResponse) -> None:
    assert bodies(server) == [{"prompt": PROMPT, "num_images": 2, "sync_mode": True}]
    assert server.count() == 1  # data URIs decoded locally: no download
    assert [len(raw) for raw in png_bytes_of(result)] == [len(png_bytes_of(result)[0])] * 2
    assert result.outputs[0].images[0].url.startswith("data:image/png;base64,")  # type: ignore[attr-defined]


def _b64_via_download(server: FakeFalServer, result: ImagesResponse) -> None:
    assert bodies(server) == [{"prompt": PROMPT, "image_size": {"width": 1200, "height": 800}}] * 2
    # Both outputs point at the same file here: it is downloaded once.
    assert [(r.method, r.path) for r in server.requests if r.route == "file"] == [
        ("GET", "/files/image-1200x800.png")
    ]
    for raw in png_bytes_of(result):
        assert raw[16:24] == (1200).to_bytes(4, "big") + (800).to_bytes(4, "big")  # IHDR size
    assert len(result.data) == 2


def _b64_single_image_field(server: FakeFalServer, result: ImagesResponse) -> None:
    assert bodies(server) == [{"prompt": PROMPT, "sync_mode": True}] * 2
    assert server.count(route="file") == 0
    assert len(png_bytes_of(result)) == 2


def _ran(endpoint_id: str) -> Check:
    def check(server: FakeFalServer, result: ImagesResponse) -> None:
        assert [r.path for r in server.requests] == [f"/run/{endpoint_id}"]
        assert result.model == endpoint_id and len(result.data) == 1

    return check


def _typed_outputs_and_params(server: FakeFalServer, result: ImagesResponse) -> None:
    assert bodies(server) == [
        {
            "prompt": PROMPT,
            "image_size": {"width": 1024, "height": 1024},
            "num_images": 1,
            "seed": 7,
            "num_inference_steps": 12,
            "output_format": "png",
            "enable_safety_checker": False,
        }
    ]
    (output,) = result.outputs
    assert isinstance(output, falbind.ENDPOINTS["fal-ai/flux/dev"].output_model)
    assert output.seed == 7  # type: ignore[attr-defined]
    assert output.has_nsfw_concepts == [False]  # type: ignore[attr-defined]
    assert result.data[0].revised_prompt == PROMPT
    assert result.model_dump(mode="json")["outputs"][0]["seed"] == 7


def _adjusted_size_noted(server: FakeFalServer, result: ImagesResponse) -> None:
    assert bodies(server) == [{"prompt": PROMPT, "aspect_ratio": "4:3", "num_images": 1}]
    assert result.size.size_adjusted is True
    assert result.size.delivered == "aspect ratio 4:3"
    (note,) = result.size.notes
    assert "1536x1024" in note and "4:3" in note


def _explicit_size_wins(expected: dict[str, Any], given: str) -> Check:
    def check(server: FakeFalServer, result: ImagesResponse) -> None:
        assert bodies(server) == [{"prompt": PROMPT, **expected, "num_images": 1}]
        assert result.size.size_adjusted is False
        assert result.size.parameters == expected
        assert result.size.notes == [
            f"{given} given explicitly wins over size='1792x1024', which was not mapped"
        ]

    return check


def _pass_through(server: FakeFalServer, result: ImagesResponse) -> None:
    (request,) = server.requests
    assert request.json() == {"prompt": PROMPT, "num_images": 1, "x_beta_flag": True}
    assert request.headers["x-trace-id"] == "trace-1"
    assert len(result.data) == 1


def _through_the_queue(server: FakeFalServer, result: ImagesResponse) -> None:
    assert server.count(route="run") == 0
    assert bodies(server, "submit") == [{"prompt": PROMPT, "num_images": 2}]
    assert server.count(route="result") == 1
    assert len(result.data) == 2


def _data_uri_stays_a_url(server: FakeFalServer, result: ImagesResponse) -> None:
    assert bodies(server) == [{"prompt": PROMPT, "num_images": 1, "sync_mode": True}]
    assert result.data[0].b64_json is None
    assert (result.data[0].url or "").startswith("data:image/png;base64,")


def _pipecat_num_images(server: FakeFalServer, result: ImagesResponse) -> None:
    assert bodies(server) == [{"prompt": PROMPT, "num_images": 2}]
    assert len(result.data) == 2


def _seed_repeated_noted(server: FakeFalServer, result: ImagesResponse) -> None:
    assert bodies(server) == [{"prompt": PROMPT, "seed": 5}] * 2
    assert (
        result.notes[-1]
        == "seed=5 was sent with each of the 2 requests, so their images may repeat"
    )


def _one_image_flagged(server: FakeFalServer) -> None:
    """flux/schnell answers with one image whatever is asked (the other "filtered")."""

    def handler(body: dict[str, Any]) -> dict[str, Any]:
        image = {"url": f"{server.url}/files/image-512x512.png", "width": 512, "height": 512}
        return {
            "images": [{**image, "content_type": "image/png"}],
            "timings": {},
            "seed": 1,
            "has_nsfw_concepts": [False, True],
            "prompt": body["prompt"],
        }

    server.add_endpoint("fal-ai/flux/schnell", handler)


def _fewer_images_reported(server: FakeFalServer, result: ImagesResponse) -> None:
    assert len(result.data) == 1  # not padded
    assert result.notes == [
        "asked for 2 image(s), fal-ai/flux/schnell returned 1 over 1 request(s) "
        "(images may have been withheld, e.g. by the safety checker)"
    ]
    assert result.outputs[0].has_nsfw_concepts == [False, True]  # type: ignore[attr-defined]


SCENARIOS = [
    Scenario(
        "n3-recraft-no-count-field",
        {"model": "fal-ai/recraft-v3", "prompt": PROMPT, "n": 3, "size": "1024x1024"},
        _three_without_count_field("fal-ai/recraft-v3"),
    ),
    Scenario(
        "n3-bria-no-count-field",
        {"model": "bria/text-to-image/3.2", "prompt": PROMPT, "n": 3, "size": "1024x1024"},
        _three_without_count_field("bria/text-to-image/3.2"),
    ),
    Scenario(
        "n3-count-field",
        {"model": "fal-ai/flux/dev", "prompt": PROMPT, "n": 3},
        _count_field_in_one_request,
    ),
    Scenario(
        "n6-splits-4-2",
        {"model": "fal-ai/flux/schnell", "prompt": PROMPT, "n": 6},
        _split_over_max([4, 2], "fal-ai/flux/schnell"),
    ),
    Scenario(
        "n16-splits-8-8",
        {"model": "fal-ai/fast-sdxl", "prompt": PROMPT, "n": 16},
        _split_over_max([8, 8], "fal-ai/fast-sdxl"),
    ),
    Scenario(
        "b64-via-sync-mode",
        {"model": "fal-ai/flux/schnell", "prompt": PROMPT, "n": 2, "response_format": "b64_json"},
        _b64_via_sync_mode,
    ),
    Scenario(
        "b64-via-download",
        {
            "model": "fal-ai/recraft-v3",
            "prompt": PROMPT,
            "n": 2,
            "size": "1200x800",
            "response_format": "b64_json",
        },
        _b64_via_download,
    ),
    Scenario(
        "b64-single-image-field",
        {"model": "bria-3.2", "prompt": PROMPT, "n": 2, "response_format": "b64_json"},
        _b64_single_image_field,
    ),
    Scenario(
        "litellm-prefix",
        {"model": "fal_ai/fal-ai/flux-pro/v1.1-ultra", "prompt": PROMPT},
        _ran("fal-ai/flux-pro/v1.1-ultra"),
    ),
    Scenario(
        "alias", {"model": "flux-ultra", "prompt": PROMPT}, _ran("fal-ai/flux-pro/v1.1-ultra")
    ),
    Scenario(
        "litellm-prefix-and-alias",
        {"model": "fal_ai/seedream-v3", "prompt": PROMPT},
        _ran("fal-ai/bytedance/seedream/v3/text-to-image"),
    ),
    Scenario(
        "typed-outputs-and-model-params",
        {
            "model": "fal-ai/flux/dev",
            "prompt": PROMPT,
            "size": "1024x1024",
            "seed": 7,
            "num_inference_steps": 12,
            "output_format": "png",
            "enable_safety_checker": False,
        },
        _typed_outputs_and_params,
    ),
    Scenario(
        "adjusted-size-noted",
        {"model": "fal-ai/imagen4/preview", "prompt": PROMPT, "size": "1536x1024"},
        _adjusted_size_noted,
    ),
    Scenario(
        "explicit-image-size-wins",
        {
            "model": "fal-ai/flux/dev",
            "prompt": PROMPT,
            "size": "1792x1024",
            "image_size": "square",
        },
        _explicit_size_wins({"image_size": "square"}, "image_size"),
    ),
    Scenario(
        "explicit-aspect-ratio-wins",
        {
            "model": "fal-ai/flux-pro/v1.1-ultra",
            "prompt": PROMPT,
            "size": "1792x1024",
            "aspect_ratio": "21:9",
        },
        _explicit_size_wins({"aspect_ratio": "21:9"}, "aspect_ratio"),
    ),
    Scenario(
        "extra-body-and-headers",
        {
            "model": "fal-ai/flux/schnell",
            "prompt": PROMPT,
            "extra_body": {"x_beta_flag": True},
            "extra_headers": {"X-Trace-Id": "trace-1"},
        },
        _pass_through,
    ),
    Scenario(
        "use-queue",
        {"model": "fal-ai/flux/schnell", "prompt": PROMPT, "n": 2, "use_queue": True},
        _through_the_queue,
    ),
    Scenario(
        "data-uri-stays-a-url",
        {"model": "fal-ai/flux/schnell", "prompt": PROMPT, "sync_mode": True},
        _data_uri_stays_a_url,
    ),
    Scenario(
        "pipecat-num-images",
        {"model": "fal-ai/flux/schnell", "prompt": PROMPT, "num_images": 2},
        _pipecat_num_images,
    ),
    Scenario(
        "seed-repeated-noted",
        {"model": "bria/text-to-image/3.2", "prompt": PROMPT, "n": 2, "seed": 5},
        _seed_repeated_noted,
    ),
    Scenario(
        "fewer-images-reported",
        {"model": "fal-ai/flux/schnell", "prompt": PROMPT, "n": 2},
        _fewer_images_reported,
        prepare=_one_image_flagged,
    ),
]

REFUSALS = [
    Refusal(
        "unknown-model-parameter",
        {"model": "fal-ai/flux/dev", "prompt": PROMPT, "num_inference_step": 4},
        ValidationError,
        "unknown parameter 'num_inference_step' for fal-ai/flux/dev",
        also=("did you mean 'num_inference_steps'",),
    ),
    Refusal(
        "unknown-parameter-with-n-requests",
        {"model": "fal-ai/recraft-v3", "prompt": PROMPT, "n": 3, "negative_prompt": "blur"},
        ValidationError,
        "unknown parameter 'negative_prompt' for fal-ai/recraft-v3",
    ),
    Refusal(
        "size-field-the-model-lacks",
        {"model": "fal-ai/flux-pro/v1.1-ultra", "prompt": PROMPT, "image_size": "square"},
        ValidationError,
        "unknown parameter 'image_size' for fal-ai/flux-pro/v1.1-ultra",
    ),
    Refusal(
        "invalid-parameter-value",
        {"model": "fal-ai/flux/dev", "prompt": PROMPT, "num_inference_steps": "many"},
        ValidationError,
        "num_inference_steps",
    ),
    Refusal(
        "unknown-model",
        {"model": "fal_ai/fal-ai/flux/shnell", "prompt": PROMPT},
        UnknownEndpointError,
        "'fal_ai/fal-ai/flux/shnell' is not a bound fal endpoint",
        also=("did you mean", "'fal-ai/flux/schnell'"),
    ),
    Refusal(
        "model-without-images",
        {"model": "fal-ai/chatterbox/text-to-speech", "prompt": PROMPT},
        ValueError,
        "fal-ai/chatterbox/text-to-speech returns no images",
    ),
    Refusal(
        "strict-size-ratio",
        {
            "model": "fal-ai/imagen4/preview",
            "prompt": PROMPT,
            "size": "1536x1024",
            "strict_size": True,
        },
        SizeError,
        "fal-ai/imagen4/preview cannot deliver size 1536x1024",
    ),
    Refusal(
        "strict-size-limits",
        {
            "model": "fal-ai/bytedance/seedream/v3/text-to-image",
            "prompt": PROMPT,
            "size": "256x256",
            "strict_size": True,
        },
        SizeError,
        "sides >= 512",
    ),
    Refusal(
        "bad-size",
        {"model": "fal-ai/flux/dev", "prompt": PROMPT, "size": "huge"},
        SizeError,
        "WIDTHxHEIGHT",
    ),
    Refusal("n-zero", {"model": "fal-ai/flux/dev", "prompt": PROMPT, "n": 0}, ValueError, "n must"),
    Refusal(
        "n-and-num-images-disagree",
        {"model": "fal-ai/flux/dev", "prompt": PROMPT, "n": 2, "num_images": 3},
        TypeError,
        "n=2 and num_images=3 disagree",
    ),
    Refusal(
        "bad-response-format",
        {"model": "fal-ai/flux/dev", "prompt": PROMPT, "response_format": "png"},
        ValueError,
        "response_format must be",
    ),
]


def check_refusal(server: FakeFalServer, refusal: Refusal, error: BaseException) -> None:
    """The message says what is wrong, and the fake server saw nothing."""
    for fragment in (refusal.match, *refusal.also):
        assert fragment in str(error), (fragment, str(error))
    assert server.requests == []
