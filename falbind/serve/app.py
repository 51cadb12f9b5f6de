"""The gateway's ASGI app: :func:`create_app` (Starlette).

Routes (OpenAI's wire format; LiteLLM Proxy's names for key management):

- ``POST /v1/images/generations`` (and ``/images/generations``), ``POST /v1/images/edits``
  (and ``/images/edits``): virtual key or master key;
- ``GET /v1/models``, ``GET /v1/models/{id}`` (and without ``/v1``): the configured names;
- ``POST /key/generate``, ``GET /key/info``, ``GET /key/list``, ``POST /key/delete``,
  ``GET /spend/logs``: master key (``/key/info`` also answers a virtual key about itself);
- ``GET /health`` (liveness) and ``GET /health/readiness`` (the database answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .auth import MASTER_KEY_NAME, Caller, authenticate, bearer_key, require_master
from .body import EditForm, HeaderLimits, read_form, read_json
from .config import FalTarget, GatewayConfig, ModelEntry, order_deployments
from .errors import GatewayError
from .images import (
    Outcome,
    coerce_form_value,
    elapsed_ms,
    image_fields,
    model_not_found,
    openai_body,
    parse_generation,
    plan,
    response_headers,
    run_job,
)
from .keys import key_routes, owner_filters
from .metrics import GatewayMetrics
from .pricing import Price, PriceBook
from .recovery import PLACEHOLDER_URL, fetch_history, find_unrecorded, history_window, inputs_of
from .store import (
    Admission,
    LogEntry,
    LogWriter,
    Orphan,
    Settlement,
    Store,
    Ticket,
    hash_key,
)

__all__ = ["Gateway", "create_app"]

log = logging.getLogger("falbind.serve")
T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


@dataclass(slots=True)
class _Request:
    """One images request as it goes through the pipeline (for its log row and settlement)."""

    route: str
    started: float
    caller: Caller
    outcome: Outcome = field(default_factory=Outcome)
    ticket: Ticket | None = None
    reserved_micros: int = 0
    price: Price | None = None
    fal_started: float | None = None
    jobs_recorded: bool = False
    """A fal job id was written down for it (its rows go when it settles)."""
    settled: bool = False


Planned = tuple[Any, Callable[[Any], Coroutine[Any, Any, Any]] | None]
"""One deployment's plan: the validated job and, for an edit, the step that uploads its files
(given the fal client) and plans again with their URLs."""
Prepared = tuple[str, list[ModelEntry], Callable[[ModelEntry], Planned]]
"""What a route's ``prepare`` gives the pipeline: the model name, its deployments in the
order to try them, and how to plan the request on one of them."""
CALLER_CACHE_SECONDS: Final = 2.0
CALLER_CACHE_SIZE: Final = 10_000
SETTLE_WAIT_SECONDS: Final = 10.0
"""How long a delivering request waits for its settlement to be committed before answering."""
_FALLBACK_CODES: Final = frozenset(
    {"deployment_rate_limited", "upstream_rate_limited", "upstream_unreachable"}
)


def _may_fall_back(error: GatewayError, state: _Request) -> bool:
    """Whether another deployment may take a request that failed with ``error``: only when
    fal accepted nothing, and the refusal was the deployment's (its rpm, fal's 429 or 5xx, fal
    out of reach), never the key's (its limits and budget hold on every deployment)."""
    if state.outcome.accepted:
        return False
    return error.code in _FALLBACK_CODES or error.status >= 500


class Gateway:
    """The state behind one app: config, database, prices, and one fal client per target.

    Every images request goes through one pipeline (:meth:`images`): authenticate from the
    headers → read the body under its caps → parse, route and validate (nothing is reserved
    or sent yet) → price it and admit it (model list, limits, a budget reservation and a row
    in flight, one transaction) → run on fal (each accepted fal request id recorded before
    the gateway waits on it) → settle the reservation against what was delivered and log,
    on every path, failures and disconnects included.
    """

    def __init__(
        self,
        config: GatewayConfig,
        store: Store | None = None,
        *,
        heartbeat_seconds: float = 5.0,
        stale_after: float = 30.0,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.config = config
        self.store = store or Store(config.database_url)
        self.metrics = metrics or GatewayMetrics()
        self.log_writer = LogWriter(self.store)
        self.prices = PriceBook(self.store)
        self.instance = str(uuid.uuid4())
        """This process's id in the database (its requests in flight are its own)."""
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after = stale_after
        self._clients: dict[FalTarget, Any] = {}
        self._callers: dict[str, tuple[float, Caller]] = {}
        """Live virtual keys recently authenticated (see :meth:`caller`), by token."""
        self._rng = random.Random()
        """Draws the deployment order (LiteLLM's simple-shuffle)."""
        self._keeper: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Gateway {self.config.source} models={len(self.config.models)}>"

    async def start(self) -> None:
        await self.store.setup()
        await self.store.register_instance(self.instance)
        self.warm_up()
        for note in await self.prices.load(self.config.models):
            log.warning("%s", note)
        await self.reconcile()
        self._keeper = asyncio.get_running_loop().create_task(self._keep_alive())

    def warm_up(self) -> None:
        """Pay at start what the first request would: each entry's fal client (and its HTTP
        library's import), its endpoint's models and validators, and its size data."""
        from falbind import ENDPOINTS
        from falbind.images.generate import model_traits
        from falbind.images.sizing import capability_for

        for entry in self.config.models:
            self.client(entry.fal)
            if entry.endpoint_id is None:
                continue  # a wildcard: its models are known per request
            spec = ENDPOINTS[entry.endpoint_id]
            for model in (spec.input_model, spec.output_model):
                model.model_rebuild()  # builds the deferred validator and serializer
            model_traits(entry.endpoint_id)
            capability_for(entry.endpoint_id)

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        await self.log_writer.flush()
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
        with contextlib.suppress(Exception):  # the database may be gone: orphans reconcile
            await self.store.retire_instance(self.instance)
        await self.store.close()

    def client(self, target: FalTarget) -> Any:
        """The shared :class:`~falbind.AsyncFalClient` for ``target`` (one connection pool)."""
        client = self._clients.get(target)
        if client is None:
            from falbind import AsyncFalClient

            client = AsyncFalClient(
                target.key,
                run_url=target.run_url,
                queue_url=target.queue_url,
                storage_url=target.storage_url,
            )
            self._clients[target] = client
        return client

    # -- recovery ----------------------------------------------------------------------------

    async def _keep_alive(self) -> None:
        """Heartbeat, and take over what gateways that died left in flight."""
        since_reconcile = 0.0
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            since_reconcile += self.heartbeat_seconds
            try:
                await self.store.heartbeat(self.instance)
                if since_reconcile >= self.stale_after:
                    since_reconcile = 0.0
                    await self.reconcile()
            except Exception as exc:  # the database may be away for a while: keep trying
                log.error("heartbeat or reconciliation failed: %s", type(exc).__name__)

    async def reconcile(self) -> int:
        """Settle every request a dead gateway left in flight: each fal job it had accepted
        is collected when it completed or cancelled when it had not, and its reservation is
        released (nothing was delivered to its client, so nothing is charged). How many."""
        orphans = await self.store.claim_orphans(self.instance, stale_after=self.stale_after)
        for orphan in orphans:
            try:
                outcome = await self._recover_jobs(orphan)
            except Exception as exc:  # settled all the same: a claimed orphan is never lost
                log.error("could not recover request %s: %s", orphan.id, type(exc).__name__)
                outcome = "interrupted_unreachable"
            self.log_writer.submit(
                Settlement(
                    inflight_id=orphan.id,
                    token=orphan.token,
                    reserved_micros=orphan.reserved_micros,
                    cost_micros=0,
                    entry=LogEntry(
                        route=orphan.route,
                        status=500,
                        latency_ms=max(0.0, (time.time() - orphan.started_at) * 1000),
                        token=orphan.token,
                        key_name=orphan.key_name,
                        model_name=orphan.model_name,
                        endpoint_id=orphan.jobs[0][0] if orphan.jobs else None,
                        fal_request_ids=[request_id for _, request_id in orphan.jobs],
                        cost_micros=0,
                        error_type=outcome,
                    ),
                )
            )
        if orphans:
            log.warning(
                "reconciled %d request(s) left in flight by a stopped gateway", len(orphans)
            )
            await self.log_writer.flush()
        return len(orphans)

    async def _recover_jobs(self, orphan: Orphan) -> str:
        from falbind import Completed, FalError

        entry = self.config.entry(orphan.model_name) if orphan.model_name else None
        if not orphan.jobs and not orphan.inputs:
            return "interrupted"
        if entry is None:
            log.error(
                "cannot collect or cancel %d fal job(s) of model %r: it is no longer configured",
                len(orphan.jobs),
                orphan.model_name,
            )
            return "interrupted_unreachable"
        client = self.client(entry.fal)
        outcomes: set[str] = set()
        jobs = list(orphan.jobs)
        if orphan.endpoint_id and orphan.inputs:
            try:
                jobs += await self._unrecorded_jobs(orphan, entry)
            except (httpx.HTTPError, ValueError) as exc:
                log.warning(
                    "fal's request history did not answer for request %s: %s",
                    orphan.id,
                    type(exc).__name__,
                )
                outcomes.add("interrupted_unreachable")
        if not jobs:
            return "interrupted" if not outcomes else "+".join(sorted(outcomes))
        for endpoint_id, request_id in jobs:
            try:
                handle = client.get_handle(endpoint_id, request_id, untyped=True)
                if isinstance(await handle.status(), Completed):
                    await handle.result()
                    outcomes.add("interrupted_collected")
                else:
                    await handle.cancel()
                    outcomes.add("interrupted_cancelled")
            except FalError as exc:
                log.warning("fal job %s of a stopped gateway: %s", request_id, type(exc).__name__)
                outcomes.add("interrupted_unreachable")
        return "+".join(sorted(outcomes))

    async def _unrecorded_jobs(self, orphan: Orphan, entry: ModelEntry) -> list[tuple[str, str]]:
        """Jobs fal accepted for ``orphan`` whose ids were never written down (see
        :mod:`.recovery`), from fal's request history."""
        assert orphan.endpoint_id is not None and orphan.inputs is not None
        prints = orphan.inputs.get("fingerprints") or []
        if len(prints) <= len(orphan.jobs):
            return []
        start, end = history_window(orphan.started_at)
        async with httpx.AsyncClient(timeout=10.0) as http:
            history = await fetch_history(http, entry.fal, orphan.endpoint_id, start, end)
        known = await self.store.recorded_request_ids(orphan.endpoint_id)
        found = find_unrecorded(orphan.inputs, len(orphan.jobs), history, known)
        return [(orphan.endpoint_id, request_id) for request_id in found]

    # -- the pipeline ------------------------------------------------------------------------

    async def caller(self, request: Request) -> Caller:
        """The caller, from the headers alone (before any body is read).

        A live virtual key found here is remembered for :data:`CALLER_CACHE_SECONDS`, so a
        busy key is not read twice per request: this check only keeps unauthenticated bodies
        out; :meth:`Store.admit` reads the key again in the transaction that reserves its
        budget, so a revocation, an expiry or a new model list holds at once for anything
        fal could bill. Unknown keys are never remembered."""
        key = bearer_key(request)
        if key is not None:
            token = hash_key(key)
            cached = self._callers.get(token)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
        caller = await authenticate(request, self.config.master_key, self.store)
        if caller.record is not None:
            if len(self._callers) >= CALLER_CACHE_SIZE:
                self._callers.clear()
            self._callers[caller.record.token] = (
                time.monotonic() + CALLER_CACHE_SECONDS,
                caller,
            )
        return caller

    def route_model(self, caller: Caller, name: str) -> ModelEntry:
        """The (first) entry serving ``name``; a 404 or 403 in OpenAI's shape otherwise."""
        entry = self.config.entry(name)
        if entry is None:
            raise model_not_found(name)
        if not caller.may_use(name):
            raise GatewayError(
                403,
                f"API key {caller.key_name} may not use model {name!r}",
                type="permission_error",
                code="model_not_allowed",
                param="model",
            )
        return entry

    def route_deployments(self, caller: Caller, name: str) -> list[ModelEntry]:
        """Every deployment serving ``name``, in the order to try them (LiteLLM's
        simple-shuffle); a 404 or 403 in OpenAI's shape otherwise."""
        self.route_model(caller, name)
        return order_deployments(self.config.deployments(name), self._rng)

    async def images(
        self,
        request: Request,
        route: str,
        prepare: Callable[[Caller, Outcome], Awaitable[Prepared]],
    ) -> Response:
        """The pipeline of generations and edits (see the class docstring)."""
        with self.metrics.in_flight(route):
            return await self._images(request, route, prepare)

    async def _images(
        self,
        request: Request,
        route: str,
        prepare: Callable[[Caller, Outcome], Awaitable[Prepared]],
    ) -> Response:
        started = time.perf_counter()
        try:
            caller = await self.caller(request)
        except GatewayError as error:
            # Counted, never logged: unauthenticated noise stays out of the database.
            self.metrics.refused(route=route, model=None, reason=error.code or error.type)
            self.metrics.request_done(
                route=route,
                model=None,
                key_alias=None,
                status=error.status,
                seconds=time.perf_counter() - started,
            )
            return error.response()
        state = _Request(route, started, caller)
        try:
            model_name, candidates, make = await prepare(caller, state.outcome)
            result = None
            for index, entry in enumerate(candidates):
                try:
                    result = await self._attempt(request, state, model_name, entry, make)
                    break
                except GatewayError as error:
                    if index + 1 == len(candidates) or not _may_fall_back(error, state):
                        raise
                    # Refused before fal accepted anything: the next deployment, LiteLLM's
                    # fallback. This attempt's reservation goes back, unlogged.
                    log.info("model %r: %s; trying another deployment", model_name, error.code)
                    self._release(state)
            assert result is not None and state.fal_started is not None
            fal_ms = elapsed_ms(state.fal_started)
            cost = self._cost(state.price, state.outcome.images)
            committed = self._settle(state, 200, cost=cost)
            if committed is not None:
                # Charged before the images are handed over: a crash after the answer could
                # otherwise let the restart release a reservation whose images were delivered.
                # Bounded, so a database outage delays answers without holding them forever.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(committed), SETTLE_WAIT_SECONDS)
            body = openai_body(result)
            headers = response_headers(result, state.outcome, cost)
            # Server-Timing (a W3C header browsers and proxies show): the gateway's own time
            # (reading, keys and limits, validation, encoding) beside the time spent on fal.
            own_ms = elapsed_ms(started) - fal_ms
            headers["server-timing"] = f"gateway;dur={own_ms:.2f}, fal;dur={fal_ms:.2f}"
            return JSONResponse(body, headers=headers)
        except GatewayError as error:
            self._settle(state, error.status, error_type=error.code or error.type)
            return error.response()
        except (ClientGone, ClientDisconnect):
            self._settle(state, 499, error_type="client_disconnected")
            return Response(status_code=499)
        except Exception as exc:
            # Whatever went wrong, the reservation is released and the request logged; the
            # client gets OpenAI's shape, told not to retry once fal may have a job.
            log.error("unexpected error on %s (%s): %s", route, type(exc).__name__, _one_line(exc))
            self._settle(state, 500, error_type="internal_error")
            return GatewayError(
                500,
                "the gateway failed on this request; it was not charged"
                + ("" if not state.outcome.accepted else " (fal may have run it: do not retry)"),
                type="api_error",
                code="internal_error",
                should_retry=False if state.outcome.accepted else None,
            ).response()
        finally:
            if not state.settled:  # cancelled (the server is stopping): release, log
                self._settle(state, 499, error_type="cancelled")

    async def _attempt(
        self,
        request: Request,
        state: _Request,
        model_name: str,
        entry: ModelEntry,
        make: Callable[[ModelEntry], Planned],
    ) -> Any:
        """One deployment's try: plan (validate), cap, price, admit (reserve), run."""
        job, finish = make(entry)
        self._check_count(entry, job, model_name)
        state.price = await self.prices.price_for(entry, job.endpoint_id)
        per_image = state.price.per_image_micros if state.price is not None else None
        state.ticket = Ticket(
            id=str(uuid.uuid4()),
            instance=self.instance,
            route=state.route,
            model_name=model_name,
            estimate_micros=per_image * job.expected_images if per_image is not None else None,
            deployment_limit=(entry.deployment_id, entry.rpm) if entry.rpm else None,
            endpoint_id=job.endpoint_id,
            inputs=inputs_of(job.bodies),
        )
        admission = await self.store.admit(state.caller.token, state.ticket)
        if admission.verdict != "ok":
            state.ticket = None
            raise self._refusal(admission, model_name, state.price)
        state.reserved_micros = admission.reserved_micros
        client = self.client(entry.fal)
        if finish is not None:  # an edit: upload, then plan again with the real URLs
            job = await _until_disconnect(request, finish(client))
        state.fal_started = time.perf_counter()
        retries = entry.max_retries if entry.max_retries is not None else self.config.num_retries
        return await _until_disconnect(
            request,
            run_job(client, entry, job, state.outcome, self._recorder(state), retries=retries),
        )

    def _release(self, state: _Request) -> None:
        """Give back an attempt's reservation (no log row: the request goes on elsewhere)."""
        if state.ticket is not None:
            self.log_writer.submit(
                Settlement(
                    state.ticket.id, state.caller.token, state.reserved_micros, 0, entry=None
                )
            )
        state.ticket, state.reserved_micros, state.fal_started = None, 0, None
        state.outcome.fal_request_ids.clear()

    def _check_count(self, entry: ModelEntry, job: Any, model_name: str) -> None:
        """Refuse a request that would produce more images than the gateway allows (OpenAI's
        ``n`` and the model's own count field, its default included)."""
        expected = int(job.expected_images)
        if expected <= self.config.max_images:
            return
        from falbind.images.generate import model_traits

        field_name = model_traits(job.endpoint_id).count_field
        param = field_name if field_name and field_name in entry.defaults else "n"
        raise GatewayError(
            400,
            f"this request for model {model_name!r} would produce {expected} images; this "
            f"gateway allows at most {self.config.max_images} per request",
            code="too_many_images",
            param=param,
        )

    def _recorder(self, state: _Request) -> Callable[[str, str], Awaitable[None]]:
        async def record(endpoint_id: str, request_id: str) -> None:
            if state.ticket is not None:
                state.jobs_recorded = True  # before the write: a failed write may have landed
                await self.store.record_job(state.ticket.id, endpoint_id, request_id)

        return record

    def _refusal(self, admission: Admission, model_name: str, price: Price | None) -> GatewayError:
        record = admission.record
        name = record.key_name if record is not None else MASTER_KEY_NAME
        verdict = admission.verdict
        if verdict in ("invalid", "revoked", "expired"):
            why = {"invalid": "is not valid", "revoked": "has been revoked"}.get(
                verdict, "has expired"
            )
            return GatewayError(401, f"API key {name} {why}", code="invalid_api_key")
        if verdict == "model_not_allowed":
            return GatewayError(
                403,
                f"API key {name} may not use model {model_name!r}",
                type="permission_error",
                code="model_not_allowed",
                param="model",
            )
        if verdict in ("rate_limited", "deployment_rate_limited", "parallel_limited"):
            wait = admission.retry_after or 1.0
            what = {
                "rate_limited": f"API key {name} is over its limit of "
                f"{record.rpm_limit if record else '?'} requests per minute",
                "deployment_rate_limited": f"model {model_name!r} is over its requests per minute",
                "parallel_limited": f"API key {name} has {record.max_parallel_requests if record else '?'} "
                "requests running already, its limit",
            }[verdict]
            return GatewayError(
                429,
                what,
                type="rate_limit_error",
                code="rate_limit_exceeded"
                if verdict != "parallel_limited"
                else "max_parallel_requests",
                headers={"retry-after": str(max(1, math.ceil(wait)))},
            )
        if verdict == "price_unknown":
            reason = (
                f"fal prices it per {price.unit}, not per image"
                if price is not None
                else "neither the config nor fal's pricing API gives it a price"
            )
            return GatewayError(
                400,
                f"model {model_name!r} has no known price per image ({reason}), and API key "
                f"{name} has a budget; the operator can set model_info.output_cost_per_image",
                code="price_unknown",
                param="model",
            )
        assert record is not None
        return GatewayError(
            400,
            f"API key {name} is over its budget (spent {record.spend:.6f} of {record.max_budget})",
            type="budget_exceeded",
            code="budget_exceeded",
        )

    def _measure(
        self,
        state: _Request,
        model_name: str | None,
        status: int,
        cost: int | None,
        error_type: str | None,
    ) -> None:
        """The request in the metrics (labels: configured model names and key aliases only)."""
        metrics, outcome, alias = self.metrics, state.outcome, state.caller.alias
        now = time.perf_counter()
        metrics.request_done(
            route=state.route,
            model=model_name,
            key_alias=alias,
            status=status,
            seconds=now - state.started,
        )
        if state.fal_started is not None:
            metrics.fal_done(
                model=model_name,
                endpoint_id=outcome.endpoint_id,
                seconds=now - state.fal_started,
                error_type=None if status == 200 else error_type,
            )
        if status == 200 and outcome.images:
            metrics.images_delivered(model=model_name, key_alias=alias, count=outcome.images)
        if cost:
            metrics.spend(model=model_name, key_alias=alias, micros=cost)
        if 400 <= status < 500 and status != 499 and error_type and not outcome.accepted:
            metrics.refused(route=state.route, model=model_name, reason=error_type)

    @staticmethod
    def _cost(price: Price | None, images: int) -> int | None:
        per_image = price.per_image_micros if price is not None else None
        return per_image * images if per_image is not None else None

    def _settle(
        self,
        state: _Request,
        status: int,
        *,
        cost: int | None = None,
        error_type: str | None = None,
    ) -> asyncio.Future[None] | None:
        """Log the request and settle its reservation (replaced by the cost of what was
        delivered), in one transaction written off the request path; once per request. The
        future is done when it is committed."""
        if state.settled:
            return None
        state.settled = True
        caller, outcome = state.caller, state.outcome
        record = caller.record
        # Only a configured name is logged: what a caller typed is unbounded and unchecked.
        model_name = (
            outcome.model_name
            if outcome.model_name and self.config.entry(outcome.model_name)
            else None
        )
        entry = LogEntry(
            route=state.route,
            status=status,
            latency_ms=elapsed_ms(state.started),
            token=caller.token,
            key_name=caller.key_name if record is not None else None,
            model_name=model_name,
            endpoint_id=outcome.endpoint_id,
            fal_request_ids=tuple(outcome.fal_request_ids),
            images=outcome.images if status == 200 else 0,
            cost_micros=cost,
            error_type=error_type,
            key_alias=record.key_alias if record is not None else None,
            user_id=record.user_id if record is not None else None,
            team_id=record.team_id if record is not None else None,
        )
        self._measure(state, model_name, status, cost, error_type)
        ticket = state.ticket
        return self.log_writer.submit(
            Settlement(
                inflight_id=ticket.id if ticket is not None else None,
                token=caller.token if ticket is not None else None,
                reserved_micros=state.reserved_micros,
                cost_micros=cost or 0,
                entry=entry,
                jobs=state.jobs_recorded,
            )
        )

    async def generations(self, request: Request) -> Response:
        async def prepare(caller: Caller, outcome: Outcome) -> Prepared:
            body = await read_json(request, max_bytes=self.config.max_body_bytes)
            outcome.model_name = _model_field(body)
            image_request = parse_generation(body)
            candidates = self.route_deployments(caller, image_request.model)

            def make(entry: ModelEntry) -> Planned:
                return plan(entry, image_request), None

            return image_request.model, candidates, make

        return await self.images(request, "/v1/images/generations", prepare)

    async def edits(self, request: Request) -> Response:
        async def prepare(caller: Caller, outcome: Outcome) -> Prepared:
            form = await read_form(
                request,
                max_bytes=self.config.max_body_bytes,
                max_file_bytes=self.config.max_body_bytes,
            )
            outcome.model_name = _model_field(form)
            return self._prepare_edit(caller, form)

        return await self.images(request, "/v1/images/edits", prepare)

    def _prepare_edit(self, caller: Caller, form: EditForm) -> Prepared:
        fields, images = form.fields, form.images
        model_name = fields.get("model")
        if not model_name:
            raise GatewayError(400, "'model' is required", code="invalid_value", param="model")
        candidates = self.route_deployments(caller, model_name)
        if not images:
            raise GatewayError(400, "'image' is required", code="invalid_value", param="image")

        def make(entry: ModelEntry) -> Planned:
            return self._plan_edit(entry, model_name, form)

        return model_name, candidates, make

    def _plan_edit(self, entry: ModelEntry, model_name: str, form: EditForm) -> Planned:
        """An edit on one deployment: form strings typed by its schema, the images and mask
        mapped onto its fields, validated with placeholder URLs before anything is uploaded."""
        from falbind.images.edit_fields import EditRefusedError, edit_fields

        from .images import _image_request

        fields, images, mask = form.fields, form.images, form.mask
        # Form strings become the schema's types (n=2, seed=42, guidance_scale=3.5, ...).
        endpoint_id = self._endpoint_for(entry, model_name)
        properties = image_fields(endpoint_id)
        body: dict[str, Any] = {
            k: (
                v
                if k in ("model", "prompt", "size", "response_format", "user")
                else coerce_form_value(v, properties.get(k))
            )
            for k, v in fields.items()
        }
        if "n" in fields and "n" not in properties:
            body["n"] = coerce_form_value(fields["n"], {"type": "integer"})
        targets = edit_fields(properties)
        try:
            targets.check(
                endpoint_id, images=len(images), mask=mask is not None, model_name=model_name
            )
        except EditRefusedError as exc:
            raise GatewayError(400, str(exc), code=exc.code, param=exc.param) from None

        def with_urls(urls: list[str], mask_url: str | None) -> dict[str, Any]:
            return {**body, **targets.place(urls, mask_url)}

        placeholders = with_urls([PLACEHOLDER_URL] * len(images), PLACEHOLDER_URL if mask else None)
        job = plan(entry, _image_request(placeholders))  # validated before any upload

        async def finish(client: Any) -> Any:
            files = [*images, *([mask] if mask is not None else [])]
            urls = await _file_urls(client, files, inline=entry.fal.inline_files)
            mask_url = urls.pop() if mask is not None else None
            return plan(entry, _image_request(with_urls(urls, mask_url)))

        return job, finish

    def _endpoint_for(self, entry: ModelEntry, name: str) -> str:
        if entry.endpoint_id is not None:
            return entry.endpoint_id
        from falbind import UnknownEndpointError
        from falbind.images.generate import resolve_model

        try:
            return resolve_model(entry.target_for(name))
        except (UnknownEndpointError, ValueError):
            raise model_not_found(name) from None

    # -- models, health, spend ---------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        caller = await authenticate(request, self.config.master_key, self.store)
        data = [
            _model_object(self.config.entry(name), name)
            for name in self.config.public_names()
            if caller.may_use(name)
        ]
        return JSONResponse({"object": "list", "data": data})

    async def get_model(self, request: Request) -> Response:
        caller = await authenticate(request, self.config.master_key, self.store)
        name = request.path_params["model"]
        entry = self.route_model(caller, name)
        return JSONResponse(_model_object(entry, name))

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "healthy"})

    async def readiness(self, request: Request) -> Response:
        if await self.store.ping():
            return JSONResponse(
                {
                    "status": "ready",
                    "db": "connected",
                    "schema_version": await self.store.schema_version(),
                }
            )
        return JSONResponse({"status": "not ready", "db": "unreachable"}, status_code=503)

    async def metrics_page(self, request: Request) -> Response:
        """``GET /metrics``: Prometheus' text format, for the master key (as LiteLLM does)."""
        await require_master(request, self.config.master_key, self.store)
        body, content_type = self.metrics.render()
        return Response(body, headers={"content-type": content_type})

    async def spend_logs(self, request: Request) -> Response:
        await require_master(request, self.config.master_key, self.store)
        await self.log_writer.flush()
        token = None
        if key := request.query_params.get("key"):
            tokens = await self.store.find_tokens(key)
            if not tokens:
                raise GatewayError(404, "no such key", code="key_not_found", param="key")
            token = tokens[0]
        since = parse_since(request.query_params.get("since"))
        owners = owner_filters(request.query_params)
        raw_limit = request.query_params.get("limit", "100")
        if not raw_limit.isdigit():
            raise GatewayError(400, "limit must be a whole number", param="limit")
        limit = min(int(raw_limit), 1000)
        totals = await self.store.spend_totals(token=token, since=since, **owners)
        logs = await self.store.logs(token=token, since=since, limit=limit, **owners)
        return JSONResponse(
            {
                "totals": [
                    {
                        "key_name": t.key_name,
                        "model": t.model_name,
                        "requests": t.requests,
                        "images": t.images,
                        "spend": t.cost,
                    }
                    for t in totals
                ],
                "logs": logs,
            }
        )


def parse_since(value: str | None) -> float | None:
    """``--since``/``?since=``: an ISO date or date-time (UTC unless it says), or epoch seconds."""
    if not value:
        return None
    from datetime import UTC, datetime

    try:
        return float(value)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise GatewayError(
            400, f"since={value!r} is not an ISO date or epoch seconds", param="since"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


async def _file_urls(
    client: Any, files: list[tuple[bytes, str | None, str | None]], *, inline: bool
) -> list[str]:
    """A URL for each file: uploaded to fal storage, or, for an entry whose traffic must stay
    on its ``api_base`` (``inline``), a ``data:`` URI fal reads in place."""
    from falbind import FalError
    from falbind.client.files import to_data_uri

    from .errors import error_from_fal

    if inline:
        return [to_data_uri(data, kind) for data, kind, _ in files]
    try:
        return list(
            await asyncio.gather(
                *(client.upload(d, content_type=t, file_name=f) for d, t, f in files)
            )
        )
    except FalError as exc:
        raise error_from_fal(exc, accepted=False) from None


def _model_field(body: Any) -> str | None:
    """The ``model`` a body names, if it is a string (only logged if it is a configured name)."""
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) and model else None


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:300].encode("utf-8", "replace").decode("utf-8")


def _model_object(entry: ModelEntry | None, name: str) -> dict[str, Any]:
    endpoint = (entry.endpoint_id if entry else None) or name
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": endpoint.split("/", 1)[0],
    }


async def _until_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` while watching the connection: if the client goes away first, ``work`` is
    cancelled (which cancels its fal queue requests) and :class:`ClientGone` is raised.

    Starlette does not cancel a handler when its client disconnects, so the handler listens
    for ASGI's ``http.disconnect`` itself (the request body has been read by now).
    """
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if task.done():
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, ClientDisconnect):
            await watcher
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, GatewayError):
        await task
    raise ClientGone


def _errors_as_openai(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except GatewayError as error:
            return error.response()

    return wrapped


def create_app(config: GatewayConfig, *, store: Store | None = None) -> Starlette:
    """The gateway's ASGI app for ``config`` (run it with any ASGI server)."""
    gateway = Gateway(config, store)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    def route(path: str, handler: Callable[[Request], Awaitable[Response]], method: str) -> Route:
        return Route(path, _errors_as_openai(handler), methods=[method])

    routes = [
        route("/v1/images/generations", gateway.generations, "POST"),
        route("/images/generations", gateway.generations, "POST"),
        route("/v1/images/edits", gateway.edits, "POST"),
        route("/images/edits", gateway.edits, "POST"),
        route("/v1/models", gateway.list_models, "GET"),
        route("/models", gateway.list_models, "GET"),
        route("/v1/models/{model:path}", gateway.get_model, "GET"),
        route("/models/{model:path}", gateway.get_model, "GET"),
        route("/health", gateway.health, "GET"),
        route("/health/liveliness", gateway.health, "GET"),
        route("/health/readiness", gateway.readiness, "GET"),
        route("/spend/logs", gateway.spend_logs, "GET"),
        route("/metrics", gateway.metrics_page, "GET"),
        *(route(path, handler, method) for path, handler, method in key_routes(gateway)),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return GatewayError(
            404, f"no route {request.url.path}", code="not_found", param=None
        ).response()

    async def wrong_method(request: Request, exc: Exception) -> Response:
        return GatewayError(
            405, f"{request.method} is not allowed on {request.url.path}", code="method_not_allowed"
        ).response()

    async def internal_error(request: Request, exc: Exception) -> Response:
        # Starlette's own answer is a plain-text 500, which OpenAI's SDKs retry: an error in
        # OpenAI's shape instead, telling them not to (nothing says fal was not reached).
        log.error("unexpected error on %s: %s", request.url.path, type(exc).__name__)
        return GatewayError(
            500,
            "the gateway failed on this request",
            type="api_error",
            code="internal_error",
            should_retry=False,
        ).response()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(HeaderLimits)],
        exception_handlers={404: not_found, 405: wrong_method, Exception: internal_error},
    )
    app.state.gateway = gateway
    return app
