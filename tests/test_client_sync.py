"""FalClient over real sockets against the fake fal server: requests, validation, errors."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

import falbind
from falbind.client.auth import resolve_key
from falbind.client.clients import FalClient
from falbind.client.errors import (
    AuthenticationError,
    FalDecodeError,
    NotFoundError,
    ServerError,
    UnprocessableEntityError,
)
from falbind.testing.server import FakeFalServer, Fault

from support import FAST_RETRY

SCHNELL = "fal-ai/flux/schnell"


def test_typed_method_returns_the_output_model_and_sends_only_set_fields(
    server: FakeFalServer, client: FalClient
) -> None:
    output = client.flux_schnell(prompt="a fox", image_size="landscape_16_9")
    assert isinstance(output, falbind.ENDPOINTS[SCHNELL].output_model)
    assert output.prompt == "a fox"
    assert (output.images[0].width, output.images[0].height) == (1024, 576)
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", f"/run/{SCHNELL}")
    assert request.json() == {"prompt": "a fox", "image_size": "landscape_16_9"}
    assert request.headers["content-type"] == "application/json"


def test_generic_run_takes_a_mapping_a_model_or_both(
    server: FakeFalServer, client: FalClient
) -> None:
    model = falbind.ENDPOINTS[SCHNELL].input_model(prompt="p", seed=7)
    client.run(SCHNELL, {"prompt": "m"})
    client.run(SCHNELL, model)
    client.run(SCHNELL, model, num_images=2)
    bodies = [r.json() for r in server.requests]
    assert bodies == [
        {"prompt": "m"},
        {"prompt": "p", "seed": 7},
        {"prompt": "p", "seed": 7, "num_images": 2},
    ]


def test_a_parameter_given_twice_or_a_foreign_model_is_refused(
    server: FakeFalServer, client: FalClient
) -> None:
    with pytest.raises(TypeError, match="both"):
        client.run(SCHNELL, {"prompt": "a"}, prompt="b")
    other = falbind.ENDPOINTS["fal-ai/flux/dev"].input_model(prompt="x")
    with pytest.raises(TypeError, match="FluxSchnellInput"):
        client.run(SCHNELL, other)
    assert server.count() == 0


def test_unknown_parameter_is_refused_with_did_you_mean_before_sending(
    server: FakeFalServer, client: FalClient
) -> None:
    with pytest.raises(ValidationError, match="did you mean 'num_images'"):
        client.run(SCHNELL, prompt="x", num_image=2)
    with pytest.raises(ValidationError):
        client.queue.flux_schnell(prompt="x", image_size="landscape_16_10")
    assert server.count() == 0


def test_unknown_endpoint_is_refused_unless_untyped(
    server: FakeFalServer, client: FalClient
) -> None:
    with pytest.raises(falbind.UnknownEndpointError, match="did you mean 'fal-ai/flux/schnell'"):
        client.run("fal-ai/flux/schnel", prompt="x")
    assert server.count() == 0
    server.add_endpoint("my-org/private-app", lambda body: {"echo": body})
    assert client.run("my-org/private-app", {"a": 1}, untyped=True) == {"echo": {"a": 1}}
    handle = client.submit("my-org/private-app", {"b": 2}, untyped=True)
    assert handle.result() == {"echo": {"b": 2}}


def test_method_names_resolve_through_the_index(client: FalClient) -> None:
    with pytest.raises(AttributeError, match="did you mean 'flux_schnell'"):
        _ = client.flux_schnel
    with pytest.raises(AttributeError):
        _ = client._not_an_endpoint
    assert client.flux_schnell is client.flux_schnell  # cached after the first lookup
    assert "fal-ai/flux/schnell" in repr(client.flux_schnell)


def test_extra_body_and_options_become_body_fields_and_headers(
    server: FakeFalServer, client: FalClient
) -> None:
    client.flux_schnell(
        prompt="x",
        extra_body={"brand_new_param": True},
        extra_headers={"X-Trace": "t1"},
        start_timeout=30,
        hint="runner-7",
    )
    (request,) = server.requests
    assert request.json() == {"prompt": "x", "brand_new_param": True}
    assert request.headers["x-trace"] == "t1"
    assert request.headers["x-fal-request-timeout"] == "30"
    assert request.headers["x-fal-runner-hint"] == "runner-7"


def test_invalid_options_are_refused_before_sending(
    server: FakeFalServer, client: FalClient
) -> None:
    with pytest.raises(ValueError, match="start_timeout"):
        client.flux_schnell(prompt="x", start_timeout=1)
    with pytest.raises(ValueError, match="priority"):
        client.submit(SCHNELL, prompt="x", priority="urgent")  # type: ignore[arg-type]
    assert server.count() == 0


LIFECYCLE = "x-fal-object-lifecycle-preference"


def test_object_lifecycle_reaches_fal_from_every_call(
    server: FakeFalServer, client: FalClient
) -> None:
    client.run(SCHNELL, prompt="x", object_lifecycle_seconds=3600)
    client.submit(SCHNELL, prompt="x", object_lifecycle_seconds=60).result()
    client.subscribe(SCHNELL, prompt="x", object_lifecycle_seconds=1)
    client.flux_schnell(prompt="x", object_lifecycle_seconds=86400)
    client.queue.flux_schnell(prompt="x", object_lifecycle_seconds=7)
    client.run(SCHNELL, prompt="x")
    sent = [r.headers.get(LIFECYCLE) for r in server.requests if r.route in ("run", "submit")]
    assert sent == [
        '{"expiration_duration_seconds": 3600}',
        '{"expiration_duration_seconds": 60}',
        '{"expiration_duration_seconds": 1}',
        '{"expiration_duration_seconds": 86400}',
        '{"expiration_duration_seconds": 7}',
        None,
    ]
    polls = [r for r in server.requests if r.route not in ("run", "submit")]
    assert polls and all(LIFECYCLE not in r.headers for r in polls)


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-5, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_invalid_object_lifecycle_is_refused_before_sending(
    server: FakeFalServer, client: FalClient, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="object_lifecycle_seconds"):
        client.run(SCHNELL, prompt="x", object_lifecycle_seconds=value)  # type: ignore[arg-type]
    with pytest.raises(error, match="object_lifecycle_seconds"):
        client.subscribe(SCHNELL, prompt="x", object_lifecycle_seconds=value)  # type: ignore[arg-type]
    assert server.count() == 0


def test_connections_are_reused(server: FakeFalServer, client: FalClient) -> None:
    for _ in range(3):
        client.flux_schnell(prompt="x")
    assert len({r.peer for r in server.requests}) == 1


def test_caller_owned_http_client_is_used_and_left_open(server: FakeFalServer) -> None:
    seen: list[str] = []
    with httpx.Client(event_hooks={"request": [lambda r: seen.append(r.method)]}) as http:
        with FalClient(key="", run_url=server.run_url, http_client=http) as client:
            client.flux_schnell(prompt="x")
        assert not http.is_closed
        assert seen == ["POST"]


def test_the_key_is_sent_and_never_shown(server: FakeFalServer) -> None:
    server.key = "sk-topsecret-1"
    with server.client() as client:
        client.flux_schnell(prompt="x")
        assert "sk-topsecret" not in repr(client)
        assert "sk-topsecret" not in repr(client._config)
        assert "key=set" in repr(client)
    assert server.requests[0].headers["authorization"] == "Key sk-topsecret-1"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"FAL_KEY": "a", "FAL_KEY_ID": "i", "FAL_KEY_SECRET": "s", "FAL_AI_API_KEY": "l"}, "a"),
        ({"FAL_KEY_ID": "i", "FAL_KEY_SECRET": "s", "FAL_AI_API_KEY": "l"}, "i:s"),
        ({"FAL_KEY_ID": "i", "FAL_AI_API_KEY": "l"}, "l"),
        ({}, None),
    ],
)
def test_key_resolution_order(environ: dict[str, str], expected: str | None) -> None:
    secret = resolve_key(None, environ)
    assert (secret.reveal() if secret else None) == expected
    assert resolve_key("explicit", environ) is not None
    assert resolve_key("", environ) is None


def test_key_from_environment_reaches_the_server_without_writing_it(
    server: FakeFalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAL_KEY", raising=False)
    monkeypatch.delenv("FAL_AI_API_KEY", raising=False)
    monkeypatch.setenv("FAL_KEY_ID", "kid")
    monkeypatch.setenv("FAL_KEY_SECRET", "ksecret")
    import os

    before = dict(os.environ)
    with FalClient(run_url=server.run_url) as client:
        client.flux_schnell(prompt="x")
    assert dict(os.environ) == before
    assert server.requests[0].headers["authorization"] == "Key kid:ksecret"


def test_422_from_fal_has_structured_field_errors(client: FalClient) -> None:
    # untyped skips our validation, so the fake server's own check answers.
    with pytest.raises(UnprocessableEntityError) as caught:
        client.run(SCHNELL, {"prompt": "x", "num_images": 99}, untyped=True)
    error = caught.value
    assert error.status_code == 422
    (field,) = error.field_errors
    assert field.loc == ("body", "num_images")
    assert field.field == "num_images"
    assert field.type == "less_than_equal"
    assert "num_images" in str(error)


def test_status_errors_carry_fal_headers(server: FakeFalServer, client: FalClient) -> None:
    server.inject(
        Fault.http(
            503,
            headers={"x-fal-request-id": "req-9", "X-Fal-Retryable": "false"},
            error_type="runner_scheduling_failure",
            detail="no runner",
        )
    )
    with pytest.raises(ServerError) as caught:
        client.flux_schnell(prompt="x")
    error = caught.value
    assert (error.status_code, error.request_id) == (503, "req-9")
    assert (error.error_type, error.retryable) == ("runner_scheduling_failure", False)
    assert error.detail == "no runner"
    assert "req-9" in str(error) and "no runner" in str(error)


def test_error_type_falls_back_to_the_header(server: FakeFalServer, client: FalClient) -> None:
    server.inject(Fault.http(400, headers={"X-Fal-Error-Type": "bad_thing"}))
    with pytest.raises(falbind.client.errors.BadRequestError) as caught:
        client.flux_schnell(prompt="x")
    assert caught.value.error_type == "bad_thing"


def test_wrong_key_is_an_authentication_error(server: FakeFalServer) -> None:
    server.key = "right"
    with server.client(key="wrong") as client, pytest.raises(AuthenticationError):
        client.flux_schnell(prompt="x")


def test_unknown_app_is_not_found(client: FalClient) -> None:
    with pytest.raises(NotFoundError):
        client.run("nobody/nothing", {}, untyped=True)


def test_malformed_json_is_a_decode_error(server: FakeFalServer, client: FalClient) -> None:
    server.inject(Fault.malformed_json())
    with pytest.raises(FalDecodeError, match="malformed JSON"):
        client.flux_schnell(prompt="x")


def test_output_that_does_not_match_the_model_is_a_decode_error_with_strict_outputs(
    server: FakeFalServer,
) -> None:
    server.add_endpoint(SCHNELL, lambda body: {"images": "not a list"})
    with (
        server.client(retry=FAST_RETRY, strict_outputs=True) as client,
        pytest.raises(FalDecodeError, match="FluxSchnellOutput") as info,
    ):
        client.flux_schnell(prompt="x")
    assert info.value.body == {"images": "not a list"}
    assert info.value.request_id
