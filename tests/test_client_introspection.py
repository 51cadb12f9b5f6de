"""Endpoint methods as a REPL or IDE user meets them: ``help()`` and ``inspect.signature`` show
the endpoint's parameters and description, ``dir()`` lists the methods, a misspelt attribute
gets a helpful error, and ``with_options`` gives a configured copy sharing the pool."""

from __future__ import annotations

import inspect
import pydoc
import time

import httpx
import pytest

from falbind import ENDPOINTS
from falbind.client.clients import AsyncFalClient, FalClient
from falbind.client.errors import FalTimeoutError, RateLimitError
from falbind.testing.server import FakeFalServer, Fault

from support import FAST_RETRY


def test_signature_shows_the_real_parameters(client: FalClient) -> None:
    spec = ENDPOINTS["fal-ai/flux/schnell"]
    signature = inspect.signature(client.flux_schnell)
    parameters = signature.parameters
    assert next(iter(parameters)) == "input"
    assert parameters["input"].kind is inspect.Parameter.POSITIONAL_ONLY
    assert parameters["prompt"].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["prompt"].default is inspect.Parameter.empty  # required
    assert parameters["prompt"].annotation is str
    assert parameters["num_images"].default == 1
    assert parameters["timeout"].kind is inspect.Parameter.KEYWORD_ONLY  # a call option
    assert "untyped" not in parameters
    assert signature.return_annotation is spec.output_model
    fields = set(spec.input_model.model_fields)
    assert fields <= set(parameters)
    # Forward references resolved: image_size's type is defined below the Input model.
    assert "ForwardRef" not in str(signature)
    assert signature.bind(prompt="a fox", image_size="square_hd")


def test_queue_signature_has_the_queue_options(client: FalClient) -> None:
    parameters = inspect.signature(client.queue.flux_schnell).parameters
    assert {"webhook_url", "priority", "on_queue_update", "prompt"} <= set(parameters)
    assert "timeout" not in parameters  # subscribe has client_timeout instead


def test_help_shows_the_signature_and_the_endpoint_description(client: FalClient) -> None:
    text = pydoc.render_doc(client.flux_schnell, renderer=pydoc.plaintext)
    assert "flux_schnell(input: " in text
    assert "prompt: str" in text
    assert "fal-ai/flux/schnell (text-to-image): returns FluxSchnellOutput" in text
    assert "https://fal.ai/models/fal-ai/flux/schnell" in text
    assert "prompt: str (required)" in text
    assert "The prompt to generate an image from." in text
    assert "see FalClient.run()" in text
    assert inspect.getdoc(client.flux_schnell) == client.flux_schnell.__doc__
    assert "invoke(endpoint id" in (type(client.flux_schnell).__doc__ or "")


def test_the_signature_is_built_lazily(server: FakeFalServer) -> None:
    with server.client() as fal:
        method = fal.bagel
        assert method._signature is None
        inspect.signature(method)
        assert method._signature is not None


@pytest.mark.parametrize("via_queue", [False, True])
def test_dir_lists_the_endpoint_methods(client: FalClient, via_queue: bool) -> None:
    names = dir(client.queue if via_queue else client)
    assert {spec.name for spec in ENDPOINTS.values()} <= set(names)
    assert ("subscribe" in names) is not via_queue
    assert names == sorted(names)


async def test_async_client_dir_and_signature(async_client: AsyncFalClient) -> None:
    assert "flux_schnell" in dir(async_client)
    assert "flux_schnell" in dir(async_client.queue)
    assert "prompt" in inspect.signature(async_client.flux_schnell).parameters
    assert "see AsyncFalClient.run()" in (async_client.flux_schnell.__doc__ or "")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "with_optons",
            "no endpoint or attribute named 'with_optons'; did you mean 'with_options'?",
        ),
        ("clsoe", "no endpoint or attribute named 'clsoe'; did you mean 'close'?"),
        ("flux_schnel", "did you mean 'flux_schnell'"),
        ("broadcast", "'FalClient' object has no endpoint or attribute named 'broadcast'"),
        ("generate", "'FalClient' object has no endpoint or attribute named 'generate'"),
    ],
)
def test_a_bad_attribute_suggests_only_close_names(
    client: FalClient, name: str, message: str
) -> None:
    with pytest.raises(AttributeError) as info:
        getattr(client, name)
    assert message in str(info.value)
    if "did you mean" not in message:
        assert "did you mean" not in str(info.value)
    assert info.value.name == name
    assert not hasattr(client.queue, name)


def test_with_options_is_a_configured_copy_sharing_the_pool(
    server: FakeFalServer, client: FalClient
) -> None:
    cached = client.flux_schnell  # cached on the original: the copy must not reuse it
    copy = client.with_options(timeout=7, max_retries=0)
    assert copy.flux_schnell is not cached and client.flux_schnell is cached
    assert isinstance(copy, FalClient) and copy is not client
    assert copy._http is client._http
    assert copy.retry.max_retries == 0 and client.retry == FAST_RETRY
    assert copy.retry.initial_backoff == FAST_RETRY.initial_backoff
    assert copy._config.timeout == httpx.Timeout(7)
    assert client._config.timeout != httpx.Timeout(7)
    assert copy.queue._client is copy

    server.inject(Fault.rate_limit(), route="run", times=None)
    with pytest.raises(RateLimitError):
        copy.flux_schnell(prompt="a fox")
    assert server.count(route="run") == 1  # the copy does not retry
    server.clear_faults()
    server.clear_requests()
    copy.close()  # the copy does not own the pool: the original still works through it
    assert client.flux_schnell(prompt="a fox").images
    assert copy.queue.flux_schnell(prompt="a fox").images
    assert server.count(route="submit") == 1


def test_with_options_timeout_reaches_the_wire(server: FakeFalServer, client: FalClient) -> None:
    server.inject(Fault.slow(1.0), route="run")
    started = time.monotonic()
    with pytest.raises(FalTimeoutError):
        client.with_options(timeout=0.2, max_retries=0).flux_schnell(prompt="a fox")
    assert time.monotonic() - started < 0.9


async def test_async_with_options(server: FakeFalServer, async_client: AsyncFalClient) -> None:
    copy = async_client.with_options(max_retries=0)
    assert isinstance(copy, AsyncFalClient) and copy._http is async_client._http
    server.inject(Fault.rate_limit(), route="run", times=None)
    with pytest.raises(RateLimitError):
        await copy.flux_schnell(prompt="a fox")
    assert server.count(route="run") == 1
    server.clear_faults()
    await copy.aclose()
    assert (await async_client.flux_schnell(prompt="a fox")).images
