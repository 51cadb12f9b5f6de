"""`falbind serve` end to end: the real OpenAI SDK over a real socket, the gateway (SQLite in a
temporary file) in a uvicorn thread, and the fake fal server behind it."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from falbind.testing import FakeFalServer, Fault

from serve_support import (
    MASTER_KEY,
    ThreadedGateway,
    avoid_minute_boundary,
    build_config,
    config_data,
    png_bytes,
)
from starting_set import STARTING_SET

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

EDIT_MODELS = {
    "klein-edit": "fal-ai/flux-2/klein/9b/edit",  # image_urls
    "inpaint": "fal-ai/flux-lora/inpainting",  # image_url + mask_url
    "fooocus-inpaint": "fal-ai/fooocus/inpaint",  # inpaint_image_url + mask_image_url
}
MODELS: dict[str, str] = {
    **{endpoint_id: endpoint_id for endpoint_id in STARTING_SET},
    "flux-ultra": "fal_ai/fal-ai/flux-pro/v1.1-ultra",
    "recraft": "fal-ai/recraft/v3/text-to-image",  # no image-count field
    **EDIT_MODELS,
}


@pytest.fixture(scope="module")
def fal() -> Iterator[FakeFalServer]:
    with FakeFalServer() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    fal: FakeFalServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadedGateway]:
    database = tmp_path_factory.mktemp("gateway") / "gateway.db"
    data = config_data(fal, MODELS, database_url=f"sqlite:///{database}", cost=0.01)
    data["model_list"].append({"model_name": "fal/*", "litellm_params": {"model": "fal_ai/*"}})
    with ThreadedGateway(build_config(data)) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(fal: FakeFalServer) -> Iterator[None]:
    fal.clear_faults()
    fal.clear_requests()
    yield
    fal.clear_faults()


def sdk(gateway: ThreadedGateway, key: str = MASTER_KEY, **options: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, **options)  # type: ignore[arg-type]


def new_key(gateway: ThreadedGateway, **fields: object) -> str:
    response = httpx.post(
        f"{gateway.url}/key/generate",
        json=fields,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert response.status_code == 200, response.text
    key: str = response.json()["key"]
    return key


@pytest.mark.parametrize("endpoint_id", STARTING_SET)
def test_generation_for_every_starting_set_model(
    gateway: ThreadedGateway, fal: FakeFalServer, endpoint_id: str
) -> None:
    result = sdk(gateway).images.generate(
        model=endpoint_id, prompt="a red fox", n=1, size="1024x1024"
    )
    assert len(result.data) == 1
    assert result.data[0].url and result.data[0].url.startswith(fal.url)
    assert result.created > 0
    submitted = [r for r in fal.requests if r.route == "submit"]
    assert [r.endpoint_id for r in submitted] == [endpoint_id]
    assert submitted[0].json()["prompt"] == "a red fox"


def test_alias_config_and_size_headers(gateway: ThreadedGateway, fal: FakeFalServer) -> None:
    raw = sdk(gateway).images.with_raw_response.generate(
        model="flux-ultra", prompt="a fox", n=1, size="1792x1024"
    )
    assert raw.headers["x-falbind-model"] == "fal-ai/flux-pro/v1.1-ultra"
    assert raw.headers["x-falbind-size-adjusted"] == "true"
    assert "16:9" in raw.headers["x-falbind-size"]
    assert raw.headers["x-fal-request-id"]
    assert raw.parse().data[0].url
    body = fal.requests[0].json()
    assert body["aspect_ratio"] == "16:9"


def test_n_3_on_a_model_without_a_count_field(gateway: ThreadedGateway, fal: FakeFalServer) -> None:
    result = sdk(gateway).images.generate(model="recraft", prompt="a fox", n=3)
    assert len(result.data) == 3
    assert fal.count(route="submit") == 3
    assert all("num_images" not in r.json() for r in fal.requests if r.route == "submit")


def test_b64_json(gateway: ThreadedGateway) -> None:
    result = sdk(gateway).images.generate(
        model="fal-ai/flux/schnell", prompt="a fox", response_format="b64_json", n=2
    )
    assert len(result.data) == 2
    for image in result.data:
        assert image.url is None
        assert base64.b64decode(image.b64_json or "").startswith(b"\x89PNG")


def test_model_parameters_through_extra_body_are_validated_and_sent(
    gateway: ThreadedGateway, fal: FakeFalServer
) -> None:
    sdk(gateway).images.generate(
        model="fal-ai/flux/dev", prompt="a fox", extra_body={"seed": 7, "num_inference_steps": 3}
    )
    body = fal.requests[0].json()
    assert body["seed"] == 7 and body["num_inference_steps"] == 3


def test_misspelt_parameter_is_a_400_and_nothing_reaches_fal(
    gateway: ThreadedGateway, fal: FakeFalServer
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway).images.generate(
            model="fal-ai/flux/dev", prompt="a fox", extra_body={"num_inference_step": 3}
        )
    error = caught.value
    assert error.status_code == 400
    assert error.param == "num_inference_step"
    assert error.code == "unknown_parameter"
    assert "did you mean 'num_inference_steps'" in error.message
    assert fal.requests == []


def test_openai_only_parameter_the_model_lacks_is_refused(
    gateway: ThreadedGateway, fal: FakeFalServer
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway).images.generate(model="fal-ai/flux/dev", prompt="a fox", quality="hd")
    assert caught.value.param == "quality"
    assert fal.requests == []


def test_unknown_model_is_404_model_not_found(gateway: ThreadedGateway, fal: FakeFalServer) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(gateway).images.generate(model="dall-e-3", prompt="a fox")
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert fal.requests == []


def test_wildcard_entry_routes_any_bound_model(
    gateway: ThreadedGateway, fal: FakeFalServer
) -> None:
    result = sdk(gateway).images.generate(model="fal/fal-ai/flux/schnell", prompt="a fox")
    assert result.data[0].url
    submitted = [r for r in fal.requests if r.route == "submit"]  # after the price look-up
    assert submitted[0].endpoint_id == "fal-ai/flux/schnell"
    with pytest.raises(openai.NotFoundError):
        sdk(gateway).images.generate(model="fal/fal-ai/no-such-model", prompt="a fox")


def test_stream_is_refused(gateway: ThreadedGateway) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/images/generations",
        json={"model": "fal-ai/flux/dev", "prompt": "a fox", "stream": True},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stream"


def test_routes_without_v1_prefix(gateway: ThreadedGateway) -> None:
    response = httpx.post(
        f"{gateway.url}/images/generations",
        json={"model": "fal-ai/flux/dev", "prompt": "a fox"},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert response.status_code == 200
    assert set(response.json()) == {"created", "data"}


def test_fal_5xx_on_submit_is_unbilled_and_says_so(
    gateway: ThreadedGateway, fal: FakeFalServer
) -> None:
    # fal bills successful outputs only: a submit it answered 500 made no job, so the client
    # is told the truth (it may send the request again).
    fal.inject(Fault.http(500, error_type="runner_server_error"), route="submit", times=None)
    client = sdk(gateway, max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(model="fal-ai/flux/dev", prompt="a fox")
    assert caught.value.response.headers["x-should-retry"] == "true"
    assert fal.count(method="POST") == 1


def test_fal_5xx_after_acceptance_is_not_retried_and_the_job_is_cancelled(
    gateway: ThreadedGateway, fal: FakeFalServer
) -> None:
    fal.inject(Fault.http(500, error_type="runner_server_error"), route="status", times=None)
    fal.inject(Fault.http(500, error_type="runner_server_error"), route="stream", times=None)
    client = sdk(gateway, max_retries=2)  # the SDK's default: it would retry a plain 500
    with pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(model="fal-ai/flux/dev", prompt="a fox")
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert fal.count(method="POST") == 1
    assert fal.count(route="cancel") == 1  # polling failed: the job is not left running


def test_model_failure_after_acceptance_names_the_request(
    gateway: ThreadedGateway, fal: FakeFalServer
) -> None:
    fal.inject(Fault.completed_with_error("boom"))
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway, max_retries=2).images.generate(model="fal-ai/flux/dev", prompt="a fox")
    response = caught.value.response
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["x-fal-request-id"] in caught.value.message
    assert fal.count(method="POST") == 1


def test_client_disconnect_cancels_the_fal_request(
    gateway: ThreadedGateway, fal: FakeFalServer
) -> None:
    fal.inject(Fault.never_complete())
    with pytest.raises(openai.APITimeoutError):
        sdk(gateway, max_retries=0, timeout=1.0).images.generate(
            model="fal-ai/flux/dev", prompt="a fox"
        )
    deadline = time.monotonic() + 10
    while fal.count(route="cancel") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fal.count(route="cancel") == 1
    assert fal.count(route="submit") == 1


def test_edit_with_an_uploaded_png(gateway: ThreadedGateway, fal: FakeFalServer) -> None:
    png = png_bytes()
    result = sdk(gateway).images.edit(
        model="klein-edit",
        image=("fox.png", io.BytesIO(png), "image/png"),
        prompt="make it blue",
        n=1,
        extra_body={"seed": "42"},
    )
    assert result.data[0].url
    assert fal.count(route="upload_put") == 1
    put = next(r for r in fal.requests if r.route == "upload_put")
    assert put.body == png
    body = next(r for r in fal.requests if r.route == "submit").json()
    assert body["seed"] == 42  # the form string became the schema's integer
    assert len(body["image_urls"]) == 1
    assert httpx.get(body["image_urls"][0]).content == png


def test_edit_with_a_mask(gateway: ThreadedGateway, fal: FakeFalServer) -> None:
    result = sdk(gateway).images.edit(
        model="inpaint",
        image=("fox.png", png_bytes(), "image/png"),
        mask=("mask.png", png_bytes(), "image/png"),
        prompt="a hat",
    )
    assert result.data
    body = next(r for r in fal.requests if r.route == "submit").json()
    assert body["image_url"].startswith(fal.url) and body["mask_url"].startswith(fal.url)
    assert fal.count(route="upload_put") == 2


def test_edit_with_a_mask_image_url_model(gateway: ThreadedGateway, fal: FakeFalServer) -> None:
    """A model whose fields are inpaint_image_url and mask_image_url (the shared mapping)."""
    result = sdk(gateway).images.edit(
        model="fooocus-inpaint",
        image=("fox.png", png_bytes(), "image/png"),
        mask=("mask.png", png_bytes(), "image/png"),
        prompt="a hat",
    )
    assert result.data
    body = next(r for r in fal.requests if r.route == "submit").json()
    assert body["inpaint_image_url"].startswith(fal.url)
    assert body["mask_image_url"].startswith(fal.url)
    assert "image_url" not in body and "mask_url" not in body


def test_edit_misspelt_parameter_uploads_nothing(
    gateway: ThreadedGateway, fal: FakeFalServer
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway).images.edit(
            model="klein-edit",
            image=("fox.png", png_bytes(), "image/png"),
            prompt="x",
            extra_body={"sed": "1"},
        )
    assert caught.value.param == "sed"
    assert fal.requests == []


def test_edit_on_a_text_to_image_model_is_refused(
    gateway: ThreadedGateway, fal: FakeFalServer
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway).images.edit(
            model="fal-ai/flux/dev", image=("fox.png", png_bytes(), "image/png"), prompt="x"
        )
    assert caught.value.param == "image"
    assert fal.requests == []


def test_auth_no_key_wrong_key_and_revoked_key(gateway: ThreadedGateway) -> None:
    anonymous = httpx.post(
        f"{gateway.url}/v1/images/generations", json={"model": "fal-ai/flux/dev", "prompt": "x"}
    )
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway, key="sk-fb-not-a-real-key").images.generate(
            model="fal-ai/flux/dev", prompt="x"
        )
    key = new_key(gateway)
    assert sdk(gateway, key=key).images.generate(model="fal-ai/flux/dev", prompt="x").data
    deleted = httpx.post(
        f"{gateway.url}/key/delete",
        json={"keys": [key]},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert deleted.status_code == 200 and len(deleted.json()["deleted_keys"]) == 1
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(gateway, key=key).images.generate(model="fal-ai/flux/dev", prompt="x")
    assert "revoked" in caught.value.message
    assert key not in caught.value.message


def test_key_model_list_is_enforced(gateway: ThreadedGateway, fal: FakeFalServer) -> None:
    key = new_key(gateway, models=["flux-ultra"])
    with pytest.raises(openai.PermissionDeniedError):
        sdk(gateway, key=key).images.generate(model="fal-ai/flux/dev", prompt="x")
    assert fal.requests == []
    names = [m.id for m in sdk(gateway, key=key).models.list()]
    assert names == ["flux-ultra"]


def test_rpm_limit_answers_429(gateway: ThreadedGateway, fal: FakeFalServer) -> None:
    avoid_minute_boundary(10)
    key = new_key(gateway, rpm_limit=2)
    client = sdk(gateway, key=key, max_retries=0)
    for _ in range(2):
        client.images.generate(model="fal-ai/flux/dev", prompt="x")
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(model="fal-ai/flux/dev", prompt="x")
    assert caught.value.code == "rate_limit_exceeded"
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
    assert fal.count(route="submit") == 2


def test_budget_is_enforced_before_sending(gateway: ThreadedGateway, fal: FakeFalServer) -> None:
    key = new_key(gateway, max_budget=0.025)  # 0.01 per image
    client = sdk(gateway, key=key, max_retries=0)
    client.images.generate(model="fal-ai/flux/dev", prompt="x", n=2)
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="fal-ai/flux/dev", prompt="x", n=1)
    assert caught.value.code == "budget_exceeded"
    assert fal.count(route="submit") == 1
    info = httpx.get(
        f"{gateway.url}/key/info",
        params={"key": key},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    ).json()["info"]
    assert info["spend"] == pytest.approx(0.02)
    assert info["max_budget"] == 0.025


def test_failed_request_refunds_the_budget(gateway: ThreadedGateway, fal: FakeFalServer) -> None:
    key = new_key(gateway, max_budget=1.0)
    fal.inject(Fault.completed_with_error("boom"))
    with pytest.raises(openai.APIStatusError):
        sdk(gateway, key=key, max_retries=0).images.generate(model="fal-ai/flux/dev", prompt="x")
    own = httpx.get(f"{gateway.url}/key/info", headers={"Authorization": f"Bearer {key}"})
    assert own.json()["info"]["spend"] == 0.0


def test_key_routes_need_the_master_key(gateway: ThreadedGateway) -> None:
    key = new_key(gateway)
    for method, path in (("POST", "/key/generate"), ("GET", "/key/list"), ("GET", "/spend/logs")):
        response = httpx.request(
            method, f"{gateway.url}{path}", headers={"Authorization": f"Bearer {key}"}, json={}
        )
        assert response.status_code == 403, path
    bad = httpx.post(
        f"{gateway.url}/key/generate",
        json={"rpm_limt": 3},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "rpm_limt"
    assert "rpm_limit" in bad.json()["error"]["message"]


def test_key_is_stored_hashed_and_shown_once(gateway: ThreadedGateway) -> None:
    created = httpx.post(
        f"{gateway.url}/key/generate",
        json={"key_alias": "team-a", "duration": "1h", "metadata": {"team": "a"}},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    ).json()
    key = created["key"]
    assert key.startswith("sk-fb-")
    listed = httpx.get(
        f"{gateway.url}/key/list", headers={"Authorization": f"Bearer {MASTER_KEY}"}
    ).text
    assert key not in listed and "team-a" in listed
    raw = Path(gateway.config.database_url.removeprefix("sqlite:///")).read_bytes()
    assert key.encode() not in raw
    assert created["expires"] is not None and created["metadata"] == {"team": "a"}


def test_spend_log_records_every_request(gateway: ThreadedGateway) -> None:
    key = new_key(gateway, key_alias="spender")
    client = sdk(gateway, key=key, max_retries=0)
    client.images.generate(model="flux-ultra", prompt="x", n=2)
    with pytest.raises(openai.BadRequestError):
        client.images.generate(model="flux-ultra", prompt="x", extra_body={"sed": 1})
    response = httpx.get(
        f"{gateway.url}/spend/logs",
        params={"key": "spender"},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    ).json()
    assert response["totals"] == [
        {
            "key_name": response["totals"][0]["key_name"],
            "model": "flux-ultra",
            "requests": 2,
            "images": 2,
            "spend": pytest.approx(0.02),
        }
    ]
    ok, refused = sorted(response["logs"], key=lambda row: row["status"])
    assert ok["status"] == 200 and ok["endpoint_id"] == "fal-ai/flux-pro/v1.1-ultra"
    assert ok["images"] == 2 and len(ok["fal_request_ids"]) == 1 and ok["latency_ms"] > 0
    assert refused["status"] == 400 and refused["error_type"] == "unknown_parameter"


def test_models_routes(gateway: ThreadedGateway) -> None:
    client = sdk(gateway)
    names = [m.id for m in client.models.list()]
    assert "flux-ultra" in names and "fal/*" not in names
    assert client.models.retrieve("flux-ultra").owned_by == "fal-ai"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_health_routes(gateway: ThreadedGateway) -> None:
    assert httpx.get(f"{gateway.url}/health").json() == {"status": "healthy"}
    ready = httpx.get(f"{gateway.url}/health/readiness").json()
    assert ready["db"] == "connected" and ready["schema_version"] == 2


def test_unknown_routes_answer_in_openai_shape(gateway: ThreadedGateway) -> None:
    missing = httpx.get(f"{gateway.url}/v1/chat/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = httpx.get(f"{gateway.url}/v1/images/generations")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


def test_server_timing_reports_the_gateways_own_time(gateway: ThreadedGateway) -> None:
    raw = sdk(gateway).images.with_raw_response.generate(model="fal-ai/flux/dev", prompt="x")
    parts = dict(p.strip().split(";dur=") for p in raw.headers["server-timing"].split(","))
    assert float(parts["gateway"]) >= 0 and float(parts["fal"]) > 0


def test_expired_key_is_refused(gateway: ThreadedGateway) -> None:
    key = new_key(gateway, duration="1s")
    time.sleep(1.1)
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(gateway, key=key, max_retries=0).images.generate(model="fal-ai/flux/dev", prompt="x")
    assert "expired" in caught.value.message


def test_fal_rate_limit_before_acceptance_may_be_retried(
    gateway: ThreadedGateway, fal: FakeFalServer
) -> None:
    fal.inject(Fault.rate_limit(), route="submit", times=None)
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(gateway, max_retries=0).images.generate(model="fal-ai/flux/dev", prompt="x")
    assert caught.value.code == "upstream_rate_limited"
    assert "x-should-retry" not in caught.value.response.headers  # fal did not take the job


def test_a_key_may_read_only_its_own_info(gateway: ThreadedGateway) -> None:
    mine, other = new_key(gateway), new_key(gateway)
    own = httpx.get(f"{gateway.url}/key/info", headers={"Authorization": f"Bearer {mine}"})
    assert own.status_code == 200 and own.json()["info"]["revoked"] is False
    theirs = httpx.get(
        f"{gateway.url}/key/info",
        params={"key": other},
        headers={"Authorization": f"Bearer {mine}"},
    )
    assert theirs.status_code == 403


WARM_UP_CHECK = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from falbind import ENDPOINTS
from falbind.serve.app import Gateway
from serve_support import build_config, config_data

class Urls:  # config_data reads only these
    run_url = queue_url = storage_url = api_url = "http://127.0.0.1:9"

data = config_data(Urls(), {"dev": "fal-ai/flux/dev"}, database_url=sys.argv[2])

def built(model):
    return type(model.__dict__.get("__pydantic_validator__")).__name__ == "SchemaValidator"

spec = ENDPOINTS["fal-ai/flux/dev"]
before = built(spec.input_model), built(spec.output_model)
gateway = Gateway(build_config(data))
asyncio.run(gateway.start())
after = built(spec.input_model), built(spec.output_model)
asyncio.run(gateway.stop())
print(json.dumps({"before": before, "after": after}))
"""


def test_start_builds_each_models_validators_before_the_first_request(tmp_path: Path) -> None:
    # A fresh interpreter: in this one, other tests may have built the validators already.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            WARM_UP_CHECK,
            str(Path(__file__).parent),
            f"sqlite:///{tmp_path / 'warm.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    states = json.loads(result.stdout.splitlines()[-1])
    assert states == {"before": [False, False], "after": [True, True]}


def test_metrics_count_requests_by_model_and_alias_never_by_key(
    gateway: ThreadedGateway, fal: FakeFalServer
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    key = new_key(gateway, key_alias="metered")
    sdk(gateway, key=key, max_retries=0).images.generate(model="fal-ai/flux/dev", prompt="x", n=2)
    with pytest.raises(openai.BadRequestError):
        sdk(gateway, key=key, max_retries=0).images.generate(
            model="fal-ai/flux/dev", prompt="x", extra_body={"num_image": 2}
        )
    assert (
        httpx.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {key}"}).status_code
        == 403
    )
    page = httpx.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {MASTER_KEY}"})
    assert page.status_code == 200
    assert key not in page.text
    samples = {
        (family.name, sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(page.text)
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return sum(
            v
            for (_, sample, found), v in samples.items()
            if sample == name and set(labels.items()) <= set(found)
        )

    assert value("falbind_images_total", model="fal-ai/flux/dev", key_alias="metered") == 2
    assert value(
        "falbind_spend_usd_total", model="fal-ai/flux/dev", key_alias="metered"
    ) == pytest.approx(0.02)
    assert value("falbind_refusals_total", model="fal-ai/flux/dev", reason="unknown_parameter") >= 1
    assert value("falbind_requests_total", key_alias="metered", status_code="200") == 1
