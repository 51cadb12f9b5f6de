"""``client.stream`` as a stream object: the final output typed as the endpoint's Output model
(decoded leniently, strictly on request), typed partial outputs, early close with ``with``,
sync and async, over the loopback fake server."""

from __future__ import annotations

import asyncio
import time
import warnings
from typing import Any

import pytest

from falbind import (
    AsyncFalClient,
    AsyncFalStream,
    FalClient,
    FalConnectionError,
    FalDecodeError,
    FalStream,
    FluxSchnellOutput,
    OutputSchemaWarning,
)
from falbind.testing import FakeFalServer, Fault

SCHNELL = "fal-ai/flux/schnell"
DRIFTED = {"images": [{"url": 7}], "seed": 5, "prompt": "x"}  # url not a string; fields missing


def _no_images_yet(output: dict[str, Any]) -> list[dict[str, Any]]:
    """Partial outputs in the output's own shape, as an app that streams its output sends."""
    return [
        {"status": "IN_PROGRESS", "progress": 0.5},
        {**output, "images": [], "has_nsfw_concepts": []},
    ]


def _wait_for(condition: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def test_the_final_output_is_the_typed_output_model(
    client: FalClient, server: FakeFalServer
) -> None:
    stream = client.stream(SCHNELL, {"prompt": "a fox", "seed": 3})
    assert isinstance(stream, FalStream)
    events = list(stream)
    assert len(events) == 3 and all(type(event) is dict for event in events)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        output = stream.get_final_output()
    assert isinstance(output, FluxSchnellOutput)
    assert output.seed == 3 and output.images[0].url == events[-1]["images"][0]["url"]
    assert output.schema_mismatch is None
    assert stream.get_final_output() is output
    assert stream.request_id is not None and len(stream.request_id) == 36  # fal's header


def test_get_final_output_reads_the_whole_stream_itself(
    client: FalClient, server: FakeFalServer
) -> None:
    stream = client.stream(SCHNELL, prompt="a fox", seed=4)
    assert server.count(route="run_stream") == 0  # nothing sent before it is read
    output = stream.get_final_output()
    assert isinstance(output, FluxSchnellOutput) and output.seed == 4
    assert server.count(route="run_stream") == 1
    assert list(stream) == []  # every event was read


def test_get_final_output_reads_what_iteration_left(client: FalClient) -> None:
    stream = client.stream(SCHNELL, prompt="a fox", seed=6)
    assert next(stream) == {"status": "IN_PROGRESS", "progress": 0.333}
    assert stream.get_final_output().seed == 6


def test_a_drifted_output_is_kept_with_its_mismatch(
    client: FalClient, server: FakeFalServer
) -> None:
    server.add_endpoint(SCHNELL, lambda body: DRIFTED)
    stream = client.stream(SCHNELL, prompt="x")
    assert list(stream)[-1] == DRIFTED  # the events stay what fal sent
    with pytest.warns(OutputSchemaWarning, match="last event of the stream") as caught:
        output = stream.get_final_output()
    assert len(caught) == 1
    assert isinstance(output, FluxSchnellOutput)
    kept: object = output.images[0].url  # kept as it arrived, though typed str
    assert output.seed == 5 and kept == 7
    assert output.schema_mismatch is not None
    assert "images.0.url: Input should be a valid string (got 7)" in output.schema_mismatch
    assert "timings: Field required" in output.schema_mismatch


def test_strict_outputs_raise_on_a_drifted_output(server: FakeFalServer) -> None:
    server.add_endpoint(SCHNELL, lambda body: DRIFTED)
    with server.client(strict_outputs=True) as fal:
        stream = fal.stream(SCHNELL, prompt="x")
        with pytest.raises(FalDecodeError, match="does not match FluxSchnellOutput") as caught:
            stream.get_final_output()
    assert caught.value.body == DRIFTED and caught.value.status_code == 200


def test_an_untyped_endpoint_gives_the_dict(client: FalClient, server: FakeFalServer) -> None:
    server.add_endpoint("acme/writer", lambda body: {"text": f"hello {body['name']}"})
    stream = client.stream("acme/writer", {"name": "fox"}, untyped=True)
    assert stream.get_final_output() == {"text": "hello fox"}
    assert stream.current_output is None  # no schema tells an output from progress
    assert server.requests[-1].route == "run_stream"


def test_partial_outputs_are_typed_as_they_arrive(client: FalClient, server: FakeFalServer) -> None:
    server.stream_partials = _no_images_yet
    seen: list[tuple[dict[str, Any], FluxSchnellOutput | None]] = []
    with client.stream(SCHNELL, prompt="a fox", seed=2) as stream:
        for event in stream:
            seen.append((event, stream.current_output))
    (progress, none_yet), (partial, typed_partial), (last, typed_last) = seen
    assert progress == {"status": "IN_PROGRESS", "progress": 0.5} and none_yet is None
    assert partial["images"] == [] and isinstance(typed_partial, FluxSchnellOutput)
    assert typed_partial.images == [] and typed_partial.seed == 2
    assert isinstance(typed_last, FluxSchnellOutput) and typed_last.images
    assert typed_last.images[0].url == last["images"][0]["url"]
    assert stream.get_final_output() is typed_last


def test_leaving_with_closes_the_connection_without_reading_on(server: FakeFalServer) -> None:
    server.stream_progress_events = 50
    server.processing_time = 5.0  # 0.1 s between events: the stream would last 5 s
    with server.client() as fal:
        with fal.stream(SCHNELL, prompt="x") as stream:
            assert next(stream)["status"] == "IN_PROGRESS"
        assert _wait_for(lambda: server.streams_cut_short == 1)
        assert list(stream) == []
        with pytest.raises(RuntimeError, match="closed before its end"):
            stream.get_final_output()
        assert fal.flux_schnell(prompt="x").images  # the client carries on
    assert server.count(route="run_stream") == 1


def test_closing_before_reading_sends_nothing(client: FalClient, server: FakeFalServer) -> None:
    with client.stream(SCHNELL, prompt="x") as stream:
        pass
    assert list(stream) == []
    assert server.count() == 0


def test_a_failed_stream_raises_its_error_again(client: FalClient, server: FakeFalServer) -> None:
    server.stream_break_after = 1
    stream = client.stream(SCHNELL, prompt="x")
    with pytest.raises(FalConnectionError) as first:
        list(stream)
    with pytest.raises(FalConnectionError) as again:
        stream.get_final_output()
    assert again.value is first.value
    assert server.count(route="run_stream") == 1


def test_a_stream_without_events_has_no_output(client: FalClient, server: FakeFalServer) -> None:
    empty = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 0\r\n\r\n"
    server.inject(Fault.raw(empty), route="run_stream")
    stream = client.stream(SCHNELL, prompt="x")
    with pytest.raises(FalDecodeError, match="ended without an event"):
        stream.get_final_output()


def test_a_plain_json_answer_is_the_typed_output(client: FalClient, server: FakeFalServer) -> None:
    whole = client.flux_schnell(prompt="x", seed=8).model_dump(mode="json")
    server.add_endpoint(f"{SCHNELL}/stream", lambda body: whole)
    stream = client.stream(SCHNELL, prompt="x")
    output = stream.get_final_output()
    assert isinstance(output, FluxSchnellOutput) and output.seed == 8
    assert server.requests[-1].route == "run"


# -- async -------------------------------------------------------------------------------------


async def test_async_final_output_is_typed(
    async_client: AsyncFalClient, server: FakeFalServer
) -> None:
    stream = async_client.stream(SCHNELL, {"prompt": "a fox", "seed": 9})
    assert isinstance(stream, AsyncFalStream)
    events = [event async for event in stream]
    assert len(events) == 3 and all(type(event) is dict for event in events)
    output = await stream.get_final_output()
    assert isinstance(output, FluxSchnellOutput) and output.seed == 9
    assert output.schema_mismatch is None


async def test_async_get_final_output_reads_the_stream_itself(
    async_client: AsyncFalClient, server: FakeFalServer
) -> None:
    server.stream_partials = _no_images_yet
    async with async_client.stream(SCHNELL, prompt="a fox", seed=1) as stream:
        output = await stream.get_final_output()
        assert isinstance(output, FluxSchnellOutput) and output.seed == 1 and output.images
        assert stream.current_output is output
        assert [event async for event in stream] == []
    assert server.count(route="run_stream") == 1


async def test_async_drifted_and_strict(
    async_client: AsyncFalClient, server: FakeFalServer
) -> None:
    server.add_endpoint(SCHNELL, lambda body: DRIFTED)
    with pytest.warns(OutputSchemaWarning):
        output = await async_client.stream(SCHNELL, prompt="x").get_final_output()
    assert isinstance(output, FluxSchnellOutput) and output.schema_mismatch
    async with server.async_client(strict_outputs=True) as fal:
        with pytest.raises(FalDecodeError, match="does not match FluxSchnellOutput"):
            await fal.stream(SCHNELL, prompt="x").get_final_output()


async def test_async_untyped_gives_the_dict(
    async_client: AsyncFalClient, server: FakeFalServer
) -> None:
    server.add_endpoint("acme/writer", lambda body: {"text": "hi"})
    stream = async_client.stream("acme/writer", untyped=True)
    assert await stream.get_final_output() == {"text": "hi"}


async def test_async_leaving_with_closes_the_connection(
    async_client: AsyncFalClient, server: FakeFalServer
) -> None:
    server.stream_progress_events = 50
    server.processing_time = 5.0
    async with async_client.stream(SCHNELL, prompt="x") as stream:
        first = await anext(stream)
        assert first["status"] == "IN_PROGRESS"
    deadline = time.monotonic() + 5
    while server.streams_cut_short == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert server.streams_cut_short == 1
    assert [event async for event in stream] == []
    with pytest.raises(RuntimeError, match="closed before its end"):
        await stream.get_final_output()
    assert (await async_client.flux_schnell(prompt="x")).images  # the client carries on
