"""The gateway's ``/metrics``: Prometheus' text format through ``prometheus_client``.

What is measured, and why these names (research/media-batch-observability.md, section 5):

======================================================  =========  ==================================
name                                                    type       labels
======================================================  =========  ==================================
``falbind_requests_total``                              counter    route, model, key_alias,
                                                                   status_code
``http_server_request_duration_seconds``                histogram  http_route,
                                                                   http_response_status_code
``http_server_active_requests``                         gauge      http_route
``gen_ai_client_operation_duration_seconds``            histogram  gen_ai_operation_name,
                                                                   gen_ai_provider_name, model,
                                                                   gen_ai_request_model, error_type
``falbind_upstream_errors_total``                       counter    model, gen_ai_request_model,
                                                                   fal_error_type
``falbind_images_total``                                counter    model, key_alias
``falbind_spend_usd_total``                             counter    model, key_alias
``falbind_refusals_total``                              counter    route, model, reason
======================================================  =========  ==================================

- Where an OpenTelemetry convention exists, its Prometheus name is used, so dashboards built for
  any OTel-instrumented service read the gateway unchanged: the stable HTTP server metrics
  (``http.server.request.duration``, ``http.server.active_requests``) and the GenAI client
  duration (``gen_ai.client.operation.duration``) for the time spent at fal, with
  ``gen_ai_operation_name="generate_content"`` (the convention's value for multimodal
  generation; it has none for images) and ``gen_ai_provider_name="fal"`` (a custom value, which
  the convention allows). ``error_type`` is empty on success: Prometheus treats an empty label as
  absent, which is OTel's "set only on error".
- The rest mirror LiteLLM Proxy's metrics (``litellm_proxy_total_requests_metric``,
  ``litellm_spend_metric`` in USD, ``litellm_images_generated_metric``) under the ``falbind_``
  prefix, with LiteLLM's label choice of key alias instead of key. Images get a counter of their
  own rather than the proposal's ``falbind_outputs_total{kind}``: Prometheus' naming rule is that
  a sum over a metric's labels must mean something, and images plus seconds of video do not add.
  Refusals are one counter with a bounded ``reason`` (``invalid_value``, ``rate_limited``,
  ``over_budget``, ...), which covers the proposal's validation rejections and rate limits.
- The HTTP histogram has no ``http_request_method``: every gateway route takes one method, so the
  route names it. It is not labelled by model either (route x status x model x buckets grows
  fast); the time per model is the GenAI histogram's.
- Buckets: OTel's advice, extended upwards because an image generation routinely takes tens of
  seconds and a video minutes (the convention's top is 10 s for HTTP and 81.92 s for GenAI).

Label values are bounded (:func:`label`): a configured model name or fal endpoint id (200
characters), a key alias or display name or ``"master key"`` (64), codes (64); ``None`` is
``"-"``. Never a raw key, token digest, prompt, request id or client address.

Several worker processes (``falbind serve --workers N``): :func:`prepare_multiprocess` gives the
workers a private ``PROMETHEUS_MULTIPROC_DIR`` before uvicorn starts them; each worker's metrics
then live in memory-mapped files there, and whichever worker answers ``/metrics`` renders the sum
over all of them with ``prometheus_client``'s ``MultiProcessCollector``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

__all__ = [
    "MULTIPROC_ENV",
    "GatewayMetrics",
    "label",
    "mark_dead",
    "multiprocess_dir",
    "prepare_multiprocess",
]

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's switch to multiprocess mode (a directory; not a secret)."""

HTTP_BUCKETS: Final = (
    *(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
    *(30.0, 60.0, 120.0, 300.0, 600.0),
)
"""OTel's ``http.server.request.duration`` buckets, then up to 10 minutes (a request waits for
fal's answer)."""

GENAI_BUCKETS: Final = tuple(round(0.01 * 2**i, 2) for i in range(17))
"""OTel's ``gen_ai.client.operation.duration`` buckets (0.01 doubling to 81.92), then on to 655.36
seconds for video."""

MODEL_CHARS: Final = 200
KEY_ALIAS_CHARS: Final = 64
CODE_CHARS: Final = 64
ROUTE_CHARS: Final = 128
MISSING: Final = "-"

_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db\Z")


def label(value: str | None, limit: int, missing: str = MISSING) -> str:
    """A bounded label value: ``missing`` for None or empty, else at most ``limit`` characters."""
    if not value:
        return missing
    return value[:limit]


def multiprocess_dir() -> str | None:
    """The multiprocess directory from the environment, if this process is in that mode."""
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower()) or None


def prepare_multiprocess(workers: int) -> Callable[[], None] | None:
    """For ``workers > 1``: create a private temporary directory, point
    ``PROMETHEUS_MULTIPROC_DIR`` at it, and return the cleanup (restores the variable's previous
    value and removes the directory). For one worker: None, nothing changes.

    Call it in the parent BEFORE ``uvicorn.run(..., workers=N)``: uvicorn starts its workers with
    the ``spawn`` method, so each is a fresh interpreter that inherits the environment and
    imports prometheus_client with the variable set (prometheus_client picks its storage once, at
    import). A directory of our own, new on every start, means no counts from an earlier run are
    added in (prometheus_client's docs ask for the directory to be wiped between runs); a
    directory the operator had set is replaced for the run and restored afterwards.
    """
    if workers <= 1:
        return None
    previous = os.environ.get(MULTIPROC_ENV)
    path = tempfile.mkdtemp(prefix="falbind-metrics-")  # mode 0700: this user only
    os.environ[MULTIPROC_ENV] = path

    def cleanup() -> None:
        if os.environ.get(MULTIPROC_ENV) == path:
            if previous is None:
                del os.environ[MULTIPROC_ENV]
            else:
                os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)

    return cleanup


def mark_dead(pid: int, path: str | None = None) -> None:
    """Forget the live gauges (in-flight requests) of a worker process that has exited.

    prometheus_client needs this on a worker's exit, or the dead worker's last in-flight count
    stays in the ``livesum``. Gunicorn has a ``child_exit`` hook for it; uvicorn's supervisor has
    none (it restarts a dead worker silently), so :meth:`GatewayMetrics.render` calls this for
    every worker whose process is gone, each time ``/metrics`` is read. Counters and histograms
    of dead workers stay, as they must for totals to keep rising.
    """
    directory = path or multiprocess_dir()
    if directory is None:
        raise ValueError(f"no multiprocess directory: pass path= or set {MULTIPROC_ENV}")
    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]  # unannotated


def _sweep_dead_workers(path: str) -> None:
    """Call :func:`mark_dead` for each process with live-gauge files that no longer runs.

    Hand-written because neither prometheus_client nor uvicorn does it (see :func:`mark_dead`).
    ``os.kill(pid, 0)`` only asks whether the process exists: the workers are this process's
    siblings, in the same PID namespace. A reused PID keeps a stale file a little longer; a live
    worker's file is never removed.
    """
    for file in glob.glob(os.path.join(glob.escape(path), "gauge_live*_*.db")):
        match = _LIVE_GAUGE_FILE.search(os.path.basename(file))
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_dead(pid, path)
        except PermissionError:
            pass  # exists, owned by someone else


class GatewayMetrics:
    """The gateway's metrics, and their rendering for ``GET /metrics``.

    One process: each instance has its own registry (a fresh one unless ``registry`` is given),
    so several apps or tests in one process never clash; a fresh registry also carries
    prometheus_client's ``process_*``, ``python_gc_*`` and ``python_info`` metrics.

    Several workers (``PROMETHEUS_MULTIPROC_DIR`` set, see :func:`prepare_multiprocess`): the
    metrics write to the shared directory and :meth:`render` sums every worker's files with
    ``MultiProcessCollector`` (per-process metrics such as ``process_*`` are left out there: they
    cannot be summed). Raises RuntimeError when the variable was set after prometheus_client was
    imported in this process, since it would then count in memory and the sum would miss this
    worker.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir()
        if self.multiprocess_dir is not None:
            if not getattr(values.ValueClass, "_multiprocess", False):
                raise RuntimeError(
                    f"{MULTIPROC_ENV} was set after prometheus_client was imported in this "
                    "process; set it before (falbind.serve.metrics.prepare_multiprocess does, "
                    "before uvicorn starts its workers)"
                )
            self.registry = registry if registry is not None else CollectorRegistry()
            multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]  # unannotated
                self.registry, path=self.multiprocess_dir
            )
            into: CollectorRegistry | None = None  # the values live in the directory's files
        else:
            if registry is None:
                registry = CollectorRegistry()
                ProcessCollector(registry=registry)
                PlatformCollector(registry=registry)
                GCCollector(registry=registry)
            self.registry = into = registry

        self._requests = Counter(
            "falbind_requests",
            "Requests answered by the gateway, by route, model, key alias and status.",
            ["route", "model", "key_alias", "status_code"],
            registry=into,
        )
        self._duration = Histogram(
            "http_server_request_duration_seconds",
            "Time from a request's arrival to its answer, fal's time included (OTel HTTP).",
            ["http_route", "http_response_status_code"],
            buckets=HTTP_BUCKETS,
            registry=into,
        )
        self._active = Gauge(
            "http_server_active_requests",
            "Requests being handled now, summed over the live workers (OTel HTTP).",
            ["http_route"],
            registry=into,
            multiprocess_mode="livesum",
        )
        self._fal_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Time spent waiting on fal for one request's results (OTel GenAI).",
            [
                "gen_ai_operation_name",
                "gen_ai_provider_name",
                "model",
                "gen_ai_request_model",
                "error_type",
            ],
            buckets=GENAI_BUCKETS,
            registry=into,
        )
        self._upstream_errors = Counter(
            "falbind_upstream_errors",
            "Requests fal failed, by fal's error type (X-Fal-Error-Type) or the gateway's.",
            ["model", "gen_ai_request_model", "fal_error_type"],
            registry=into,
        )
        self._images = Counter(
            "falbind_images",
            "Images delivered to clients.",
            ["model", "key_alias"],
            registry=into,
        )
        self._spend = Counter(
            "falbind_spend_usd",
            "Money spent on fal for delivered results, in US dollars.",
            ["model", "key_alias"],
            registry=into,
        )
        self._refusals = Counter(
            "falbind_refusals",
            "Requests refused before anything was spent, by reason.",
            ["route", "model", "reason"],
            registry=into,
        )

    def __repr__(self) -> str:
        mode = f"multiprocess {self.multiprocess_dir}" if self.multiprocess_dir else "in-process"
        return f"<GatewayMetrics {mode}>"

    @contextlib.contextmanager
    def _tracking(self, route: str) -> Iterator[None]:
        gauge = self._active.labels(label(route, ROUTE_CHARS))
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def in_flight(self, route: str) -> contextlib.AbstractContextManager[None]:
        """Count a request as in flight on ``route`` (a route template such as
        ``/v1/images/generations``, never a path with ids in it) while the block runs."""
        return self._tracking(route)

    def request_done(
        self, *, route: str, model: str | None, key_alias: str | None, status: int, seconds: float
    ) -> None:
        """A request answered with ``status`` after ``seconds``: the request counter and the
        gateway latency histogram."""
        route_label = label(route, ROUTE_CHARS)
        self._requests.labels(
            route_label, label(model, MODEL_CHARS), label(key_alias, KEY_ALIAS_CHARS), str(status)
        ).inc()
        self._duration.labels(route_label, str(status)).observe(max(0.0, seconds))

    def fal_done(
        self, *, model: str | None, endpoint_id: str | None, seconds: float, error_type: str | None
    ) -> None:
        """fal answered (or failed) after ``seconds``; ``error_type`` is fal's
        ``X-Fal-Error-Type`` or the gateway's code for the failure, None on success."""
        model_label = label(model, MODEL_CHARS)
        endpoint_label = label(endpoint_id, MODEL_CHARS)
        error_label = label(error_type, CODE_CHARS, missing="")
        self._fal_duration.labels(
            "generate_content", "fal", model_label, endpoint_label, error_label
        ).observe(max(0.0, seconds))
        if error_type is not None:
            self._upstream_errors.labels(model_label, endpoint_label, error_label or MISSING).inc()

    def images_delivered(self, *, model: str | None, key_alias: str | None, count: int) -> None:
        """``count`` images delivered to a client (0 or less counts nothing)."""
        if count > 0:
            self._images.labels(label(model, MODEL_CHARS), label(key_alias, KEY_ALIAS_CHARS)).inc(
                count
            )

    def spend(self, *, model: str | None, key_alias: str | None, micros: int) -> None:
        """``micros`` millionths of a dollar spent (the gateway counts money in integers); the
        counter is in dollars. Nothing for 0 or less: a counter only rises."""
        if micros > 0:
            self._spend.labels(label(model, MODEL_CHARS), label(key_alias, KEY_ALIAS_CHARS)).inc(
                micros / 1_000_000
            )

    def refused(self, *, route: str, model: str | None, reason: str) -> None:
        """A request refused before any spend; ``reason`` is a bounded code (``invalid_value``,
        ``unknown_parameter``, ``rate_limited``, ``over_budget``, ``request_too_large``,
        ``invalid_api_key``, ...)."""
        self._refusals.labels(
            label(route, ROUTE_CHARS), label(model, MODEL_CHARS), label(reason, CODE_CHARS)
        ).inc()

    def render(self) -> tuple[bytes, str]:
        """The body and content type of ``GET /metrics``.

        The classic text format (version 0.0.4), which is what prometheus_client itself serves
        to a scraper that states no preference and what every Prometheus version reads.
        """
        if self.multiprocess_dir is not None:
            _sweep_dead_workers(self.multiprocess_dir)
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4
