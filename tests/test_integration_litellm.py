"""falbind as a LiteLLM provider, through the real ``litellm`` package, over real sockets.

Every call goes ``litellm.image_generation`` / ``aimage_generation`` / ``image_edit`` →
LiteLLM's custom-provider dispatch → ``FalbindLiteLLM`` → falbind's client → the fake fal server
on 127.0.0.1, whose recorded requests are the evidence.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket

# LiteLLM fetches its model cost map from GitHub at import unless told to use its bundled copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import litellm
import openai
import pytest
from images_cases import PNG_SIGNATURE, PROMPT, expected_body

from falbind.integrations import litellm as falbind_litellm
from falbind.testing import FakeFalServer, Fault

from starting_set import STARTING_SET
from support import FAST_RETRY

# LiteLLM's own types trigger pydantic warnings about TypedDict ReadOnly items: not ours.
pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly.*:UserWarning")

SIZES = ("1024x1024", "1792x1024", "1024x1792")
KEY = "test-fal-key-5d1c"
EDIT_MODEL = "fal-ai/flux-2/klein/9b/edit"


@pytest.fixture
def server() -> Iterator[FakeFalServer]:
    with FakeFalServer(key=KEY) as fake:
        yield fake


@pytest.fixture
def provider() -> Iterator[falbind_litellm.FalbindLiteLLM]:
    """A handler registered as ``falbind`` (fast retries), unregistered afterwards."""
    handler = falbind_litellm.FalbindLiteLLM(retry=FAST_RETRY)
    falbind_litellm.register(handler=handler)
    yield handler
    handler.close()
    litellm.custom_provider_map = [
        e for e in litellm.custom_provider_map if e["provider"] != falbind_litellm.PROVIDER
    ]


@pytest.fixture
async def async_provider(
    provider: falbind_litellm.FalbindLiteLLM,
) -> AsyncIterator[falbind_litellm.FalbindLiteLLM]:
    yield provider
    await provider.aclose()


def posted(server: FakeFalServer) -> list[tuple[str, dict[str, Any]]]:
    return [(r.path, r.json()) for r in server.requests if r.method == "POST"]


def check_generation(server: FakeFalServer, response: Any, endpoint_id: str, size: str) -> None:
    assert posted(server) == [(f"/run/{endpoint_id}", expected_body(endpoint_id, size))]
    assert all(r.headers["authorization"] == f"Key {KEY}" for r in server.requests)
    assert isinstance(response, litellm.ImageResponse)
    assert len(response.data) == 1
    image = response.data[0]
    assert image.url and image.b64_json is None
    fields = image.provider_specific_fields
    assert fields["endpoint_id"] == endpoint_id
    assert isinstance(fields["request_id"], str) and fields["request_id"]
    assert response._hidden_params["fal_request_ids"] == [fields["request_id"]]
    if image.provider_specific_fields["width"]:
        assert response.size == f"{fields['width']}x{fields['height']}"


# -- every starting-set model × sizes ---------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("endpoint_id", STARTING_SET)
def test_image_generation_sends_the_schema_mapped_body(
    server: FakeFalServer, provider: object, endpoint_id: str, size: str
) -> None:
    response = litellm.image_generation(
        model=f"falbind/{endpoint_id}",
        prompt=PROMPT,
        size=size,
        api_base=server.run_url,
        api_key=KEY,
    )
    check_generation(server, response, endpoint_id, size)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("endpoint_id", STARTING_SET)
async def test_aimage_generation_sends_the_schema_mapped_body(
    server: FakeFalServer, async_provider: object, endpoint_id: str, size: str
) -> None:
    response = await litellm.aimage_generation(
        model=f"falbind/{endpoint_id}",
        prompt=PROMPT,
        size=size,
        api_base=server.run_url,
        api_key=KEY,
    )
    check_generation(server, response, endpoint_id, size)


def test_litellm_spelling_and_aliases_reach_the_same_endpoint(
    server: FakeFalServer, provider: object
) -> None:
    for model in ("falbind/fal_ai/fal-ai/imagen4/preview", "falbind/fal-ai/imagen4/preview"):
        litellm.image_generation(model=model, prompt=PROMPT, api_base=server.run_url, api_key=KEY)
    assert [path for path, _ in posted(server)] == ["/run/fal-ai/imagen4/preview"] * 2


def test_the_proxy_config_path_loads_the_handler_instance() -> None:
    """What ``custom_provider_map: [{custom_handler: <module>.handler}]`` resolves to."""
    from litellm.llms.custom_llm import CustomLLM
    from litellm.proxy.types_utils.utils import get_instance_fn

    loaded = get_instance_fn(f"{falbind_litellm.__name__}.handler")
    assert loaded is falbind_litellm.handler
    assert isinstance(loaded, CustomLLM)


# -- validation before anything is sent -------------------------------------------------------


def test_misspelt_parameter_is_a_400_with_did_you_mean_and_nothing_is_sent(
    server: FakeFalServer, provider: object
) -> None:
    with pytest.raises(litellm.BadRequestError) as caught:
        litellm.image_generation(
            model="falbind/fal-ai/flux/schnell",
            prompt=PROMPT,
            num_image=2,
            api_base=server.run_url,
            api_key=KEY,
        )
    assert caught.value.status_code == 400
    message = str(caught.value)
    assert "unknown parameter 'num_image'" in message
    assert "did you mean 'num_images'" in message
    assert "fal_extra_body=" in message  # the escape hatch, named as this provider spells it
    assert server.requests == []


async def test_misspelt_parameter_async_in_extra_body(
    server: FakeFalServer, async_provider: object
) -> None:
    with pytest.raises(litellm.BadRequestError) as caught:
        await litellm.aimage_generation(
            model="falbind/fal-ai/flux/dev",
            prompt=PROMPT,
            extra_body={"num_inference_step": 20},
            api_base=server.run_url,
            api_key=KEY,
        )
    assert caught.value.status_code == 400
    assert "did you mean 'num_inference_steps'" in str(caught.value)
    assert server.requests == []


def test_unknown_model_is_a_400_with_suggestions(server: FakeFalServer, provider: object) -> None:
    with pytest.raises(litellm.BadRequestError) as caught:
        litellm.image_generation(
            model="falbind/fal-ai/flux/schnel", prompt=PROMPT, api_base=server.run_url
        )
    assert "did you mean" in str(caught.value) and "fal-ai/flux/schnell" in str(caught.value)
    assert server.requests == []


def test_strict_size_error_is_a_400(server: FakeFalServer, provider: object) -> None:
    with pytest.raises(litellm.BadRequestError):
        litellm.image_generation(
            model="falbind/fal-ai/flux-pro/v1.1-ultra",
            prompt=PROMPT,
            size="1000x1003",
            strict_size=True,
            api_base=server.run_url,
            api_key=KEY,
        )
    assert server.requests == []


def test_openai_only_parameter_is_refused_or_dropped(
    server: FakeFalServer, provider: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(litellm.BadRequestError) as caught:
        litellm.image_generation(
            model="falbind/fal-ai/flux/schnell",
            prompt=PROMPT,
            quality="hd",
            api_base=server.run_url,
            api_key=KEY,
        )
    assert "quality" in str(caught.value) and "drop_params" in str(caught.value)
    assert server.requests == []
    monkeypatch.setattr(litellm, "drop_params", True)
    response = litellm.image_generation(
        model="falbind/fal-ai/flux/schnell",
        prompt=PROMPT,
        quality="hd",
        user="end-user-1",
        api_base=server.run_url,
        api_key=KEY,
    )
    assert posted(server) == [("/run/fal-ai/flux/schnell", {"prompt": PROMPT, "num_images": 1})]
    assert "dropped OpenAI parameter(s) quality" in response._hidden_params["falbind_notes"]


def test_openai_parameter_the_model_has_is_sent(server: FakeFalServer, provider: object) -> None:
    litellm.image_generation(
        model="falbind/fal-ai/recraft/v3/text-to-image",
        prompt=PROMPT,
        style="digital_illustration",
        api_base=server.run_url,
        api_key=KEY,
    )
    assert posted(server)[0][1]["style"] == "digital_illustration"


# -- n, b64_json, parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint_id", ["fal-ai/recraft/v3/text-to-image", "bria/text-to-image/3.2"]
)
def test_n_on_a_model_without_a_count_field_makes_n_requests(
    server: FakeFalServer, provider: object, endpoint_id: str
) -> None:
    response = litellm.image_generation(
        model=f"falbind/{endpoint_id}", prompt=PROMPT, n=2, api_base=server.run_url, api_key=KEY
    )
    assert posted(server) == [(f"/run/{endpoint_id}", {"prompt": PROMPT})] * 2
    assert len(response.data) == 2
    assert len(response._hidden_params["fal_request_ids"]) == 2
    assert any("made 2 requests" in note for note in response._hidden_params["falbind_notes"])


def test_n_uses_the_count_field_and_parameters_pass_through(
    server: FakeFalServer, provider: object
) -> None:
    response = litellm.image_generation(
        model="falbind/fal-ai/flux-pro/v1.1-ultra",
        prompt=PROMPT,
        n=2,
        size="1024x1792",
        seed=42,
        api_base=server.run_url,
        api_key=KEY,
    )
    assert posted(server) == [
        (
            "/run/fal-ai/flux-pro/v1.1-ultra",
            {"prompt": PROMPT, "aspect_ratio": "9:16", "seed": 42, "num_images": 2},
        )
    ]
    assert len(response.data) == 2
    assert {image.provider_specific_fields["seed"] for image in response.data} == {42}


async def test_b64_json_is_real_base64_inline_when_the_model_has_sync_mode(
    server: FakeFalServer, async_provider: object
) -> None:
    response = await litellm.aimage_generation(
        model="falbind/fal-ai/flux/schnell",
        prompt=PROMPT,
        n=2,
        response_format="b64_json",
        api_base=server.run_url,
        api_key=KEY,
    )
    assert posted(server) == [
        ("/run/fal-ai/flux/schnell", {"prompt": PROMPT, "sync_mode": True, "num_images": 2})
    ]
    assert server.count(route="file") == 0
    assert len(response.data) == 2
    for image in response.data:
        assert image.url is None
        assert base64.b64decode(image.b64_json).startswith(PNG_SIGNATURE)
        assert image.provider_specific_fields["content_type"] == "image/png"


def test_b64_json_downloads_when_the_model_has_no_sync_mode(
    server: FakeFalServer, provider: object
) -> None:
    response = litellm.image_generation(
        model="falbind/fal-ai/recraft/v3/text-to-image",
        prompt=PROMPT,
        response_format="b64_json",
        api_base=server.run_url,
        api_key=KEY,
    )
    assert server.count(route="file") == 1
    assert base64.b64decode(response.data[0].b64_json).startswith(PNG_SIGNATURE)


def test_nested_extra_body_is_validated_and_fal_extra_body_is_sent_as_is(
    server: FakeFalServer, provider: object
) -> None:
    litellm.image_generation(
        model="falbind/fal-ai/flux/dev",
        prompt=PROMPT,
        extra_body={"guidance_scale": 3},
        fal_extra_body={"brand_new_fal_field": True},
        api_base=server.run_url,
        api_key=KEY,
    )
    assert posted(server) == [
        (
            "/run/fal-ai/flux/dev",
            {"prompt": PROMPT, "guidance_scale": 3, "num_images": 1, "brand_new_fal_field": True},
        )
    ]


def test_queue_is_used_when_asked(server: FakeFalServer, provider: object) -> None:
    response = litellm.image_generation(
        model="falbind/fal-ai/flux/dev",
        prompt=PROMPT,
        use_queue=True,
        queue_url=server.queue_url,
        api_key=KEY,
    )
    assert [r.route for r in server.requests][:1] == ["submit"]
    assert server.count(route="run") == 0
    request_id = response.data[0].provider_specific_fields["request_id"]
    result = next(r for r in server.requests if r.route == "result")
    assert result.path.endswith(f"/requests/{request_id}")


# -- keys --------------------------------------------------------------------------------------


def test_key_falls_back_to_the_environment(
    server: FakeFalServer, provider: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FAL_AI_API_KEY", KEY)
    litellm.image_generation(
        model="falbind/fal-ai/flux/schnell", prompt=PROMPT, api_base=server.run_url
    )
    assert server.requests[0].headers["authorization"] == f"Key {KEY}"


def test_wrong_key_is_a_401_without_the_key(server: FakeFalServer, provider: object) -> None:
    wrong = "wrong-key-9f8e7d"
    with pytest.raises(litellm.AuthenticationError) as caught:
        litellm.image_generation(
            model="falbind/fal-ai/flux/schnell",
            prompt=PROMPT,
            api_base=server.run_url,
            api_key=wrong,
        )
    assert caught.value.status_code == 401
    assert wrong not in str(caught.value)
    assert server.count(route="run") == 1


# -- errors and retries ------------------------------------------------------------------------


def router(server: FakeFalServer, **litellm_params: Any) -> litellm.Router:
    return litellm.Router(
        model_list=[
            {
                "model_name": "fox-maker",
                "litellm_params": {
                    "model": "falbind/fal-ai/flux/dev",
                    "api_key": KEY,
                    "api_base": server.run_url,
                    **litellm_params,
                },
            }
        ],
        num_retries=2,
        retry_after=0,
        disable_cooldowns=True,
    )


async def test_router_passes_deployment_parameters(
    server: FakeFalServer, async_provider: object
) -> None:
    response = await router(server, seed=7).aimage_generation(
        model="fox-maker", prompt=PROMPT, size="1536x1024"
    )
    assert posted(server) == [
        (
            "/run/fal-ai/flux/dev",
            {
                "prompt": PROMPT,
                "image_size": {"width": 1536, "height": 1024},
                "seed": 7,
                "num_images": 1,
            },
        )
    ]
    assert response.data[0].provider_specific_fields["seed"] == 7


async def test_failed_queued_job_is_not_retried_and_names_the_request_id(
    server: FakeFalServer, async_provider: object
) -> None:
    server.inject(Fault.completed_with_error("the model crashed"), times=None)
    with pytest.raises(litellm.BadRequestError) as caught:
        await router(server, use_queue=True, queue_url=server.queue_url).aimage_generation(
            model="fox-maker", prompt=PROMPT
        )
    assert server.count(route="submit") == 1
    message = str(caught.value)
    submitted = server.requests[0]
    assert "not retried" in message and "the model crashed" in message
    assert submitted.route == "submit"
    polled = [r.path for r in server.requests if "/requests/" in r.path]
    assert polled
    request_id = polled[0].split("/requests/")[1].split("/")[0]
    assert request_id in message


@pytest.mark.parametrize(
    "fault",
    [Fault.http(500, detail="runner exploded"), Fault.reset()],
    ids=["500-after-sending", "reset-after-sending"],
)
async def test_failure_after_sending_is_not_retried(
    server: FakeFalServer, async_provider: object, fault: Fault
) -> None:
    server.inject(fault, route="run", times=None)
    with pytest.raises(litellm.BadRequestError) as caught:
        await router(server).aimage_generation(model="fox-maker", prompt=PROMPT)
    assert server.count(route="run") == 1
    assert "not retried" in str(caught.value)


async def test_download_failure_after_the_job_ran_is_not_retried(
    server: FakeFalServer, async_provider: object
) -> None:
    server.inject(Fault.http(503, detail="cdn down"), route="file", times=None)
    with pytest.raises(litellm.BadRequestError) as caught:
        await router(server, model="falbind/fal-ai/recraft/v3/text-to-image").aimage_generation(
            model="fox-maker", prompt=PROMPT, response_format="b64_json"
        )
    assert server.count(route="run") == 1
    assert "fal request id(s): " in str(caught.value)


async def test_rate_limit_before_acceptance_is_retryable(
    server: FakeFalServer, async_provider: object
) -> None:
    # falbind retries the 429 itself (FAST_RETRY: 3 retries), then LiteLLM sees a 429.
    server.inject(Fault.rate_limit(), route="run", times=None)
    with pytest.raises(litellm.RateLimitError):
        await litellm.aimage_generation(
            model="falbind/fal-ai/flux/dev", prompt=PROMPT, api_base=server.run_url, api_key=KEY
        )
    server.clear_faults()
    response = await router(server).aimage_generation(model="fox-maker", prompt=PROMPT)
    assert response.data


# -- image edit --------------------------------------------------------------------------------


def png_bytes(server: FakeFalServer) -> bytes:
    """A real PNG, taken from a generation on the fake server."""
    with server.client(retry=FAST_RETRY) as client:
        result = client.images.generate(
            model="fal-ai/flux/schnell", prompt=PROMPT, response_format="b64_json"
        )
    server.clear_requests()
    return base64.b64decode(result.data[0].b64_json or "")


async def test_image_edit_filters_litellm_internals_and_sends_data_uris(
    server: FakeFalServer, async_provider: object
) -> None:
    import io

    png = png_bytes(server)
    image = io.BytesIO(png)
    image.name = "fox.png"
    response = await litellm.aimage_edit(
        model=f"falbind/{EDIT_MODEL}",
        image=image,
        prompt="make it night",
        n=2,
        api_base=server.run_url,
        api_key=KEY,
        metadata={"team": "a"},
    )
    ((path, body),) = posted(server)
    assert path == f"/run/{EDIT_MODEL}"
    assert set(body) == {"prompt", "image_urls", "num_images"}
    assert body["num_images"] == 2
    assert body["image_urls"] == ["data:image/png;base64," + base64.b64encode(png).decode()]
    assert len(response.data) == 2


def test_form_values_are_coerced_by_the_schema(server: FakeFalServer, provider: object) -> None:
    """Multipart edits (the proxy's /v1/images/edits) deliver every value as a string."""
    png = png_bytes(server)
    response = provider.image_edit(  # type: ignore[attr-defined]
        model=EDIT_MODEL,
        image=[("fox.png", png, "image/png")],
        prompt="make it night",
        model_response=litellm.ImageResponse(),
        api_key=KEY,
        api_base=server.run_url,
        optional_params={
            "n": "1",
            "seed": "12",
            "enable_safety_checker": "false",
            "litellm_call_id": "internal",
            "proxy_server_request": {"headers": {"authorization": "Bearer sk-secret"}},
            "secret_fields": {"raw_headers": {"authorization": "Bearer sk-secret"}},
            "api_key": "sk-secret",
        },
        logging_obj=None,
    )
    ((_, body),) = posted(server)
    assert body["seed"] == 12 and body["enable_safety_checker"] is False
    assert "sk-secret" not in server.requests[0].body.decode()
    assert response.data


def test_image_edit_with_a_mask_image_url_model(server: FakeFalServer, provider: object) -> None:
    """The mask goes where the model takes it (mask_image_url here), as in the gateway."""
    png = png_bytes(server)
    response = litellm.image_edit(
        model="falbind/fal-ai/fooocus/inpaint",
        image=("fox.png", png, "image/png"),
        mask=("mask.png", png, "image/png"),
        prompt="a hat",
        api_base=server.run_url,
        api_key=KEY,
    )
    ((path, body),) = posted(server)
    assert path == "/run/fal-ai/fooocus/inpaint"
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    assert body["inpaint_image_url"] == uri and body["mask_image_url"] == uri
    assert response.data


def test_image_edit_refusals_name_the_endpoint(server: FakeFalServer, provider: object) -> None:
    """A mask for a model without a mask field is refused before anything is sent."""
    png = png_bytes(server)
    with pytest.raises(litellm.BadRequestError, match=f"{EDIT_MODEL} takes no mask"):
        litellm.image_edit(
            model=f"falbind/{EDIT_MODEL}",
            image=("fox.png", png, "image/png"),
            mask=("mask.png", png, "image/png"),
            prompt="a hat",
            api_base=server.run_url,
            api_key=KEY,
        )
    assert server.requests == []


# -- LiteLLM's built-in fal_ai/ provider and falbind, side by side ------------------------------

COMPARED_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("fal-ai/imagen4/preview/ultra", {}),
    ("fal-ai/ideogram/v2", {}),
    ("fal-ai/qwen-image", {"n": 2, "size": "1024x1024", "response_format": "b64_json"}),
    ("fal-ai/flux-pro/v1.1-ultra", {"size": "900x1200"}),
    ("fal-ai/flux/schnell", {"size": "1792x1024"}),
    ("fal-ai/recraft/v3/text-to-image", {"n": 2}),
    ("bria/text-to-image/3.2", {"n": 2}),
    ("fal-ai/flux/schnell", {"num_image": 2}),
    ("fal-ai/flux/dev", {"response_format": "b64_json"}),
    ("fal-ai/flux/dev", {"extra_body": {"seed": 5}}),
]
"""The calls the comparison table in docs/integrations.md is measured from."""
TABLE_START = "<!-- measured-comparison:start -->"
TABLE_END = "<!-- measured-comparison:end -->"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"


def _outcome(server: FakeFalServer, provider: str, endpoint_id: str, params: dict[str, Any]) -> str:
    """What one provider posted for a call (path under the run URL, body without the prompt),
    and what the caller got back."""
    server.clear_requests()
    try:
        response = litellm.image_generation(
            model=f"{provider}/{endpoint_id}",
            prompt=PROMPT,
            api_base=server.run_url,
            api_key=KEY,
            **params,
        )
    except openai.APIStatusError as error:  # LiteLLM's exceptions with a status subclass it
        result = f"{type(error).__name__} ({error.status_code})"
    else:
        kinds = {"base64" if image.b64_json else "URL" for image in response.data}
        result = f"{len(response.data)} image(s), {' + '.join(sorted(kinds))}"
    posts = []
    for request in server.requests:
        if request.method == "POST":
            body = {k: v for k, v in request.json().items() if k != "prompt"}
            path = request.path.removeprefix("/run") or "/"
            posts.append(f"`{path}` `{json.dumps(body, separators=(',', ':'))}`")
    return f"{'<br>'.join(posts) or 'nothing (refused before sending)'} | {result}"


def _call_label(endpoint_id: str, params: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return f"`{endpoint_id}`" + (f" `{args}`" if args else "")


def test_builtin_fal_ai_provider_compared(server: FakeFalServer, provider: object) -> None:
    """The same calls through LiteLLM's ``fal_ai/`` and falbind's ``falbind/`` provider, on the
    same fake server; the table in docs/integrations.md must be exactly what was measured."""
    rows = [
        "| call | LiteLLM `fal_ai/` posted | it returned | falbind `falbind/` posted | it returned |",
        "|---|---|---|---|---|",
    ]
    for endpoint_id, params in COMPARED_CALLS:
        builtin = _outcome(server, "fal_ai", endpoint_id, params)
        ours = _outcome(server, "falbind", endpoint_id, params)
        rows.append(f"| {_call_label(endpoint_id, params)} | {builtin} | {ours} |")
    table = "\n".join(rows)
    documented = DOCS.read_text().split(TABLE_START)[1].split(TABLE_END)[0].strip()
    assert documented == table, f"docs/integrations.md is out of date; measured:\n{table}"


def test_each_asyncio_run_closes_its_connection_pool(
    server: FakeFalServer, provider: falbind_litellm.FalbindLiteLLM
) -> None:
    """SDK users often call ``asyncio.run(litellm.aimage_generation(...))`` per request."""
    pools = []

    async def generate() -> None:
        await litellm.aimage_generation(
            model="falbind/fal-ai/flux/schnell", prompt=PROMPT, api_base=server.run_url, api_key=KEY
        )
        pools.append(provider._async_http[asyncio.get_running_loop()].http)

    for _ in range(2):
        asyncio.run(generate())
    assert len(pools) == 2 and pools[0] is not pools[1]
    assert all(pool.is_closed for pool in pools)
    assert server.count(route="run") == 2


def test_sync_failure_after_sending_is_not_retried(server: FakeFalServer, provider: object) -> None:
    server.inject(Fault.http(502, detail="runner lost"), route="run", times=None)
    with pytest.raises(litellm.BadRequestError) as caught:
        litellm.image_generation(
            model="falbind/fal-ai/flux/dev", prompt=PROMPT, api_base=server.run_url, api_key=KEY
        )
    assert "not retried" in str(caught.value) and "runner lost" in str(caught.value)
    assert server.count(route="run") == 1


def test_a_connection_never_made_is_retryable(provider: object) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(litellm.ServiceUnavailableError) as caught:
        litellm.image_generation(
            model="falbind/fal-ai/flux/dev",
            prompt=PROMPT,
            api_base=f"http://127.0.0.1:{port}/run",
            api_key=KEY,
        )
    assert caught.value.status_code == 503
    assert "never reached fal" in str(caught.value)


async def test_a_retryable_server_error_before_acceptance_is_retried(
    server: FakeFalServer, async_provider: object
) -> None:
    """fal marks some 5xx ``X-Fal-Retryable: true``: then nothing ran, and a retry is safe."""
    server.inject(
        Fault.http(503, headers={"X-Fal-Retryable": "true"}, detail="no runner"), route="run"
    )
    response = await router(server).aimage_generation(model="fox-maker", prompt=PROMPT)
    assert response.data and server.count(route="run") == 2
