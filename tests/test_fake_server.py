"""The fake fal server, spoken to with bare httpx: protocol shapes, outputs, faults, CLI, plugin."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

import falbind
from falbind.testing.fake_outputs import OutputContext, png_bytes, synthesize_output
from falbind.testing.server import FakeFalServer, Fault

SCHNELL = "fal-ai/flux/schnell"


def falbind_command(*args: str) -> list[str]:
    """The installed ``falbind`` entry point, else the CLI module."""
    installed = shutil.which("falbind", path=str(Path(sys.executable).parent))
    return [installed, *args] if installed else [sys.executable, "-m", "falbind.cli.main", *args]


@pytest.fixture
def server() -> Iterator[FakeFalServer]:
    with FakeFalServer() as fake:
        yield fake


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.mark.parametrize("sync_mode", [False, True], ids=["urls", "data-uris"])
def test_synthesised_outputs_validate_for_every_endpoint(sync_mode: bool) -> None:
    failures = []
    context = OutputContext("http://127.0.0.1:1", count=2, sync_mode=sync_mode)
    for endpoint_id, spec in falbind.ENDPOINTS.items():
        try:
            spec.output_model.model_validate(synthesize_output(spec.output_model, context))
        except Exception as exc:
            failures.append(f"{endpoint_id}: {exc}")
    assert len(falbind.ENDPOINTS) > 900
    assert failures == []


def test_png_bytes_are_a_real_png() -> None:
    data = png_bytes(7, 3)
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
    assert data[12:24] == b"IHDR" + (7).to_bytes(4, "big") + (3).to_bytes(4, "big")


def test_sync_endpoint_answers_a_valid_output_with_served_files(
    server: FakeFalServer, http: httpx.Client
) -> None:
    response = http.post(f"{server.run_url}/{SCHNELL}", json={"prompt": "p", "num_images": 3})
    assert response.status_code == 200 and response.headers["x-fal-request-id"]
    output = falbind.ENDPOINTS[SCHNELL].output_model.model_validate(response.json())
    assert len(output.images) == 3 and output.prompt == "p"
    image = http.get(output.images[0].url)
    assert image.headers["content-type"] == "image/png" and image.content == png_bytes(512, 512)
    assert http.get(f"{server.url}/files/nope.png").status_code == 404


def test_bad_input_gets_a_422_in_fals_shape(server: FakeFalServer, http: httpx.Client) -> None:
    response = http.post(f"{server.run_url}/{SCHNELL}", json={"prompt": "p", "num_images": 0})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "num_images"] and error["type"] == "greater_than_equal"
    assert {"msg", "input"} <= set(error)
    ignored = http.post(f"{server.run_url}/{SCHNELL}", json={"prompt": "p", "new_param": 1})
    assert ignored.status_code == 200  # like fal, unknown parameters are ignored
    missing = http.post(f"{server.run_url}/fal-ai/nothing-here", json={})
    assert missing.status_code == 404


def test_queue_protocol_shapes(server: FakeFalServer, http: httpx.Client) -> None:
    submitted = http.post(f"{server.queue_url}/fal-ai/flux/dev", json={"prompt": "q"}).json()
    request_id = submitted["request_id"]
    base = f"{server.queue_url}/fal-ai/flux/requests/{request_id}"
    assert submitted["status_url"] == f"{base}/status"
    assert (submitted["response_url"], submitted["cancel_url"]) == (base, f"{base}/cancel")
    with http.stream("GET", f"{base}/status/stream", params={"logs": "1"}) as stream:
        assert stream.headers["content-type"] == "text/event-stream"
        events = [json.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:")]
    assert events[-1]["status"] == "COMPLETED" and events[-1]["logs"]
    assert http.get(f"{base}/status").json()["status"] == "COMPLETED"
    assert http.get(base).json()["prompt"] == "q"
    assert http.put(f"{base}/cancel").status_code == 400
    assert http.get(f"{server.queue_url}/fal-ai/flux/requests/unknown/status").status_code == 404


def test_queue_phases_and_cancel(server: FakeFalServer, http: httpx.Client) -> None:
    server.queue_time = 30.0
    submitted = http.post(f"{server.queue_url}/{SCHNELL}", json={"prompt": "q"}).json()
    status = http.get(submitted["status_url"]).json()
    assert (status["status"], status["queue_position"]) == ("IN_QUEUE", 0)
    assert http.get(submitted["response_url"]).status_code == 400
    assert http.put(submitted["cancel_url"]).status_code == 202
    status = http.get(submitted["status_url"]).json()
    assert (status["status"], status["error_type"]) == ("COMPLETED", "request_cancelled")


def test_http_faults_are_count_limited_and_per_endpoint(
    server: FakeFalServer, http: httpx.Client
) -> None:
    server.inject(Fault.rate_limit(retry_after=2), endpoint_id=SCHNELL, times=2)
    server.inject(Fault.user_timeout(), endpoint_id="fal-ai/flux/dev", route="run")
    url = f"{server.run_url}/{SCHNELL}"
    first, second, third = (http.post(url, json={"prompt": "p"}) for _ in range(3))
    assert (first.status_code, first.headers["retry-after"]) == (429, "2")
    assert (second.status_code, third.status_code) == (429, 200)
    timed_out = http.post(f"{server.run_url}/fal-ai/flux/dev", json={"prompt": "p"})
    assert timed_out.status_code == 504
    assert timed_out.headers["x-fal-request-timeout-type"] == "user"
    assert timed_out.json()["error_type"] == "request_timeout"


def test_reset_malformed_and_slow_faults(server: FakeFalServer, http: httpx.Client) -> None:
    url = f"{server.run_url}/{SCHNELL}"
    server.inject(Fault.reset())
    with pytest.raises(httpx.TransportError):
        http.post(url, json={"prompt": "p"})
    server.inject(Fault.malformed_json())
    with pytest.raises(json.JSONDecodeError):
        http.post(url, json={"prompt": "p"}).json()
    server.inject(Fault.slow(1.0))
    with pytest.raises(httpx.ReadTimeout):
        http.post(url, json={"prompt": "p"}, timeout=0.1)
    assert http.post(url, json={"prompt": "p"}).status_code == 200


def test_queue_faults(server: FakeFalServer, http: httpx.Client) -> None:
    server.processing_time = 0.0
    server.inject(Fault.never_complete())
    server.inject(Fault.completed_with_error("bad weights", "runner_error"))
    stuck = http.post(f"{server.queue_url}/{SCHNELL}", json={"prompt": "p"}).json()
    failed = http.post(f"{server.queue_url}/{SCHNELL}", json={"prompt": "p"}).json()
    assert http.get(stuck["status_url"]).json()["status"] == "IN_PROGRESS"
    status = http.get(failed["status_url"]).json()
    assert (status["status"], status["error"], status["error_type"]) == (
        "COMPLETED",
        "bad weights",
        "runner_error",
    )
    assert http.get(failed["response_url"]).status_code == 500


def test_inject_refuses_unknown_routes(server: FakeFalServer) -> None:
    with pytest.raises(ValueError, match="route"):
        server.inject(Fault.reset(), route="upload")  # type: ignore[arg-type]


def test_key_is_required_when_set(http: httpx.Client) -> None:
    with FakeFalServer(key="k1") as server:
        url = f"{server.run_url}/{SCHNELL}"
        assert http.post(url, json={"prompt": "p"}).status_code == 401
        ok = http.post(url, json={"prompt": "p"}, headers={"Authorization": "Key k1"})
        assert ok.status_code == 200


def test_request_log(server: FakeFalServer, http: httpx.Client) -> None:
    http.post(f"{server.run_url}/{SCHNELL}?x=1", json={"prompt": "p"}, headers={"X-A": "b"})
    (request,) = server.requests
    assert (request.method, request.path, request.query) == ("POST", f"/run/{SCHNELL}", {"x": "1"})
    assert (request.route, request.endpoint_id, request.headers["x-a"]) == ("run", SCHNELL, "b")
    assert request.json() == {"prompt": "p"}
    assert server.count(route="run", method="POST") == 1
    server.clear_requests()
    assert server.count() == 0


def test_loopback_only_and_stop_closes_everything(http: httpx.Client) -> None:
    with pytest.raises(ValueError, match="loopback"):
        FakeFalServer(host="0.0.0.0")
    server = FakeFalServer().start()
    url = f"{server.run_url}/{SCHNELL}"
    assert http.post(url, json={"prompt": "p"}).status_code == 200
    server.stop()
    with pytest.raises(httpx.TransportError):
        http.post(url, json={"prompt": "p"})
    server.stop()  # idempotent


@contextmanager
def fake_server_command(cwd: Path, *options: str) -> Iterator[tuple[str, str]]:
    """``falbind fake-server`` in a child process: its first line and URL; on leaving, it must
    stop on SIGINT with status 0 (killed by its own PID if it does not)."""
    command = falbind_command("fake-server", *options)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=cwd)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        yield first, first.split()[-1]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_fake_server_command_serves_until_interrupted(tmp_path: Path) -> None:
    with fake_server_command(tmp_path) as (first, url):
        assert first.startswith("fake fal server listening on http://127.0.0.1:")
        response = httpx.post(f"{url}/run/{SCHNELL}", json={"prompt": "p"}, timeout=10)
        assert response.status_code == 200


@pytest.mark.slow
def test_fake_server_command_takes_queue_and_processing_times(tmp_path: Path) -> None:
    options = ("--queue-time", "0.3", "--processing-time", "0.4")
    with fake_server_command(tmp_path, *options) as (_, url):
        submitted = httpx.post(f"{url}/queue/{SCHNELL}", json={"prompt": "p"}, timeout=10)
        status_url = submitted.json()["status_url"]
        assert httpx.get(status_url, timeout=10).json()["status"] == "IN_QUEUE"
        deadline = time.monotonic() + 10
        seen: list[str] = []
        while time.monotonic() < deadline:
            status = httpx.get(status_url, timeout=10).json()["status"]
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == "COMPLETED":
                break
            time.sleep(0.05)
        assert seen[-2:] == ["IN_PROGRESS", "COMPLETED"]


@pytest.mark.slow
def test_fake_server_command_refuses_a_negative_time() -> None:
    result = subprocess.run(
        falbind_command("fake-server", "--processing-time", "-1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "seconds must be 0 or more" in result.stderr


@pytest.mark.slow
def test_pytest_fixtures_work_in_a_users_tests(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "from falbind.testing.pytest_plugin import async_fal_client, fal_client, fal_server\n"
        "__all__ = ['async_fal_client', 'fal_client', 'fal_server']\n"
    )
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            def test_sync(fal_client, fal_server):
                assert fal_client.flux_schnell(prompt="u").prompt == "u"
                assert fal_server.count(route="run") == 1

            async def test_async(async_fal_client):
                assert (await async_fal_client.flux_schnell(prompt="a")).prompt == "a"
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
