"""The gateway's metrics (falbind.serve.metrics): every method, label bounding, the text format
read back with prometheus_client's own parser, and the sum over ``uvicorn --workers 2`` on a real
127.0.0.1 socket (a small Starlette app of this module's, served by a child process)."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from falbind.serve.metrics import (
    MULTIPROC_ENV,
    GatewayMetrics,
    mark_dead,
    prepare_multiprocess,
)

from serve_support import free_port

ROUTE = "/v1/images/generations"


def read(body: bytes) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of an exposition, parsed by prometheus_client's parser."""
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    ]


def value(body: bytes, name: str, **labels: str) -> float | None:
    """The sum of ``name``'s samples carrying ``labels`` (None when there are none)."""
    found = [v for n, ls, v in read(body) if n == name and labels.items() <= ls.items()]
    return math.fsum(found) if found else None


def rendered(metrics: GatewayMetrics) -> bytes:
    body, content_type = metrics.render()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    return body


# -- one process ----------------------------------------------------------------------------


def test_request_done_counts_by_route_model_key_alias_and_status() -> None:
    metrics = GatewayMetrics()
    metrics.request_done(route=ROUTE, model="flux", key_alias="team-a", status=200, seconds=0.2)
    metrics.request_done(route=ROUTE, model="flux", key_alias="team-a", status=200, seconds=12.0)
    metrics.request_done(route=ROUTE, model="flux", key_alias=None, status=429, seconds=0.003)

    body = rendered(metrics)
    ok = {"route": ROUTE, "model": "flux", "key_alias": "team-a", "status_code": "200"}
    assert value(body, "falbind_requests_total", **ok) == 2
    assert value(body, "falbind_requests_total", key_alias="-", status_code="429") == 1
    histogram = {"http_route": ROUTE, "http_response_status_code": "200"}
    assert value(body, "http_server_request_duration_seconds_count", **histogram) == 2
    assert value(body, "http_server_request_duration_seconds_sum", **histogram) == 12.2
    # OTel's buckets, extended past 10 s: a 12 s image generation lands in the 30 s bucket.
    assert value(body, "http_server_request_duration_seconds_bucket", le="10.0", **histogram) == 1
    assert value(body, "http_server_request_duration_seconds_bucket", le="30.0", **histogram) == 2
    assert value(body, "http_server_request_duration_seconds_bucket", le="600.0", **histogram) == 2


def test_in_flight_counts_while_the_block_runs_even_when_it_raises() -> None:
    metrics = GatewayMetrics()
    with metrics.in_flight(ROUTE), metrics.in_flight(ROUTE):
        assert value(rendered(metrics), "http_server_active_requests", http_route=ROUTE) == 2
    with pytest.raises(ValueError), metrics.in_flight(ROUTE):
        assert value(rendered(metrics), "http_server_active_requests", http_route=ROUTE) == 1
        raise ValueError("the handler failed")
    assert value(rendered(metrics), "http_server_active_requests", http_route=ROUTE) == 0


def test_fal_done_times_fal_and_counts_its_errors_by_type() -> None:
    metrics = GatewayMetrics()
    metrics.fal_done(model="flux", endpoint_id="fal-ai/flux/dev", seconds=3.5, error_type=None)
    metrics.fal_done(
        model="flux", endpoint_id="fal-ai/flux/dev", seconds=90.0, error_type="request_timeout"
    )
    metrics.fal_done(model=None, endpoint_id=None, seconds=0.5, error_type="runner_unavailable")

    body = rendered(metrics)
    convention = {"gen_ai_operation_name": "generate_content", "gen_ai_provider_name": "fal"}
    success = {"model": "flux", "gen_ai_request_model": "fal-ai/flux/dev", "error_type": ""}
    name = "gen_ai_client_operation_duration_seconds"
    assert value(body, f"{name}_count", **convention, **success) == 1
    assert value(body, f"{name}_sum", **success) == 3.5
    # The GenAI buckets double from 0.01 to 81.92, then on to 655.36 for long jobs.
    assert value(body, f"{name}_bucket", le="81.92", error_type="request_timeout") == 0
    assert value(body, f"{name}_bucket", le="163.84", error_type="request_timeout") == 1
    errors = "falbind_upstream_errors_total"
    assert value(body, errors, model="flux", fal_error_type="request_timeout") == 1
    assert value(body, errors, model="-", gen_ai_request_model="-") == 1
    assert value(body, errors, fal_error_type="") is None  # a success is no error
    assert value(body, errors) == 2


def test_images_delivered_adds_counts_and_ignores_none() -> None:
    metrics = GatewayMetrics()
    metrics.images_delivered(model="flux", key_alias="team-a", count=2)
    metrics.images_delivered(model="flux", key_alias="team-a", count=3)
    metrics.images_delivered(model="flux", key_alias="team-b", count=0)

    body = rendered(metrics)
    assert value(body, "falbind_images_total", model="flux", key_alias="team-a") == 5
    assert value(body, "falbind_images_total", key_alias="team-b") is None


def test_spend_turns_integer_micros_into_dollars() -> None:
    metrics = GatewayMetrics()
    metrics.spend(model="flux", key_alias="master key", micros=25_000)
    metrics.spend(model="flux", key_alias="master key", micros=1_500)
    metrics.spend(model="flux", key_alias="free", micros=0)

    body = rendered(metrics)
    assert value(body, "falbind_spend_usd_total", key_alias="master key") == pytest.approx(0.0265)
    assert value(body, "falbind_spend_usd_total", key_alias="free") is None


def test_refused_counts_by_route_model_and_reason() -> None:
    metrics = GatewayMetrics()
    for reason in ("invalid_value", "invalid_value", "rate_limited", "over_budget"):
        metrics.refused(route=ROUTE, model="flux", reason=reason)
    metrics.refused(route=ROUTE, model=None, reason="invalid_api_key")

    body = rendered(metrics)
    refusals = "falbind_refusals_total"
    assert value(body, refusals, route=ROUTE, model="flux", reason="invalid_value") == 2
    assert value(body, refusals, reason="rate_limited") == 1
    assert value(body, refusals, reason="over_budget") == 1
    assert value(body, refusals, model="-", reason="invalid_api_key") == 1


def test_label_values_are_bounded() -> None:
    metrics = GatewayMetrics()
    model, alias, route, code = "m" * 500, "a" * 100, "/r" * 200, "e" * 100
    metrics.request_done(route=route, model=model, key_alias=alias, status=200, seconds=1)
    metrics.fal_done(model=model, endpoint_id="fal-ai/" + model, seconds=1, error_type=code)
    metrics.images_delivered(model=model, key_alias=alias, count=1)
    metrics.spend(model=model, key_alias=alias, micros=1)
    metrics.refused(route=route, model=model, reason=code)
    with metrics.in_flight(route):
        body = rendered(metrics)

    limits = {
        "model": 200,
        "gen_ai_request_model": 200,
        "key_alias": 64,
        "route": 128,
        "http_route": 128,
        "error_type": 64,
        "fal_error_type": 64,
        "reason": 64,
    }
    seen: set[str] = set()
    for name, labels, _ in read(body):
        if not name.startswith(("falbind_", "http_server_", "gen_ai_")):
            continue
        for key, limit in limits.items():
            if key in labels:
                seen.add(key)
                assert len(labels[key]) == limit, (name, key)
    assert seen == set(limits)
    assert value(body, "falbind_requests_total", model="m" * 200, key_alias="a" * 64) == 1


def test_empty_labels_become_a_dash() -> None:
    metrics = GatewayMetrics()
    metrics.request_done(route=ROUTE, model="", key_alias="", status=401, seconds=0.001)
    assert value(rendered(metrics), "falbind_requests_total", model="-", key_alias="-") == 1


def test_each_instance_counts_on_its_own() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()
    first.images_delivered(model="flux", key_alias=None, count=4)
    second.images_delivered(model="flux", key_alias=None, count=1)
    assert value(rendered(first), "falbind_images_total") == 4
    assert value(rendered(second), "falbind_images_total") == 1


def test_a_fresh_registry_has_process_metrics_a_given_one_is_left_as_is() -> None:
    assert value(rendered(GatewayMetrics()), "process_cpu_seconds_total") is not None

    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    metrics.refused(route=ROUTE, model="flux", reason="request_too_large")
    assert metrics.registry is registry
    assert registry.get_sample_value("falbind_refusals_total", {
        "route": ROUTE, "model": "flux", "reason": "request_too_large"
    }) == 1  # fmt: skip
    assert value(rendered(metrics), "process_cpu_seconds_total") is None


# -- preparing several workers ----------------------------------------------------------------


def test_prepare_multiprocess_does_nothing_for_one_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    assert prepare_multiprocess(1) is None
    assert MULTIPROC_ENV not in os.environ


def test_prepare_multiprocess_makes_a_private_directory_and_cleans_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))  # an operator's own, restored afterwards
    cleanup = prepare_multiprocess(2)
    assert cleanup is not None
    path = Path(os.environ[MULTIPROC_ENV])
    try:
        assert path != tmp_path and path.is_dir() and not any(path.iterdir())
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    finally:
        cleanup()
    assert not path.exists()
    assert os.environ[MULTIPROC_ENV] == str(tmp_path)


def test_multiprocess_variable_set_too_late_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # prometheus_client chose in-memory values when this process imported it; counting in
    # memory while rendering the directory's files would silently leave this worker out.
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    with pytest.raises(RuntimeError, match="set after prometheus_client was imported"):
        GatewayMetrics()


def test_mark_dead_needs_a_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    monkeypatch.delenv(MULTIPROC_ENV.lower(), raising=False)
    with pytest.raises(ValueError, match=MULTIPROC_ENV):
        mark_dead(12345)


@pytest.mark.slow
def test_mark_dead_drops_a_dead_workers_in_flight_and_keeps_its_counts(tmp_path: Path) -> None:
    # A real worker process: counts one request, then dies inside a request (no cleanup runs).
    worker = textwrap.dedent(
        """
        import os
        from falbind.serve.metrics import GatewayMetrics
        metrics = GatewayMetrics()
        metrics.request_done(route="/w", model="m", key_alias="k", status=200, seconds=0.1)
        metrics.in_flight("/w").__enter__()
        os._exit(0)
        """
    )
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
    child = subprocess.run([sys.executable, "-c", worker], env=env, timeout=60, check=True)
    assert child.returncode == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    live = [n for n in names if n.startswith("gauge_livesum_")]
    assert len(live) == 1 and any(n.startswith("counter_") for n in names)
    pid = int(live[0].removeprefix("gauge_livesum_").removesuffix(".db"))

    mark_dead(pid, str(tmp_path))

    left = sorted(p.name for p in tmp_path.iterdir())
    assert live[0] not in left
    assert set(names) - set(left) == {live[0]}


# -- several workers behind one socket --------------------------------------------------------


def metrics_app() -> Starlette:
    """The uvicorn factory the multi-worker test runs (``--factory``): each worker builds its own
    GatewayMetrics, which finds the shared directory in the environment."""
    metrics = GatewayMetrics()

    async def work(request: Request) -> Response:
        with metrics.in_flight("/work"):
            metrics.request_done(route="/work", model="m", key_alias="k", status=200, seconds=0.001)
            return JSONResponse({"pid": os.getpid()})

    async def crash(request: Request) -> Response:
        with metrics.in_flight("/crash"):
            os._exit(1)  # a worker dying mid-request: uvicorn starts another

    async def expose(request: Request) -> Response:
        with metrics.in_flight("/metrics"):
            body, content_type = metrics.render()
        return Response(body, headers={"content-type": content_type, "x-pid": str(os.getpid())})

    return Starlette(
        routes=[Route("/work", work), Route("/crash", crash), Route("/metrics", expose)]
    )


@contextlib.contextmanager
def uvicorn_workers(workers: int) -> Iterator[str]:
    """``python -m uvicorn --factory test_serve_metrics:metrics_app --workers N`` on 127.0.0.1,
    with the directory from :func:`prepare_multiprocess`; stopped by its PID afterwards."""
    cleanup = prepare_multiprocess(workers)
    assert cleanup is not None
    port = free_port()
    tests = str(Path(__file__).parent)
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "test_serve_metrics:metrics_app",
        "--app-dir", tests, "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own group: the parent and its workers
            process.wait(timeout=10)
        cleanup()


def get(url: str) -> httpx.Response:
    """One request on a connection of its own, so the kernel hands it to either worker."""
    with httpx.Client(timeout=10) as client:
        return client.get(url)


def wait_until_up(base: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if get(f"{base}/metrics").status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"uvicorn did not answer on {base} within {seconds} s")


@pytest.mark.slow
def test_workers_share_one_total_whichever_answers() -> None:
    with uvicorn_workers(2) as base:
        wait_until_up(base)
        served: dict[int, int] = {}
        sent = 0
        while sent < 300 and (sent < 30 or len(served) < 2):
            pid = get(f"{base}/work").json()["pid"]
            served[pid] = served.get(pid, 0) + 1
            sent += 1
        assert len(served) == 2, f"one worker served all {sent} requests: {served}"

        answered: set[str] = set()
        for _ in range(100):
            response = get(f"{base}/metrics")
            body = response.content
            answered.add(response.headers["x-pid"])
            assert value(body, "falbind_requests_total", route="/work") == sent
            assert value(body, "http_server_request_duration_seconds_count") == sent
            # livesum: this scrape is the only request in flight, over both workers.
            assert value(body, "http_server_active_requests", http_route="/metrics") == 1
            assert value(body, "http_server_active_requests", http_route="/work") == 0
            assert all("pid" not in labels for _, labels, _ in read(body))  # summed, not per pid
            if len(answered) == 2:
                break
        assert answered == {str(pid) for pid in served}

        # A worker dies inside a request: its count stays, its in-flight request does not.
        with pytest.raises(httpx.TransportError):
            get(f"{base}/crash")
        deadline = time.monotonic() + 20
        while True:
            body = get(f"{base}/metrics").content
            stuck = value(body, "http_server_active_requests", http_route="/crash")
            assert value(body, "falbind_requests_total", route="/work") == sent
            if not stuck:  # 0, or no series at all once the dead worker's file is gone
                break
            assert time.monotonic() < deadline, f"/crash still in flight: {stuck}"
            time.sleep(0.1)
