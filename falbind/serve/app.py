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
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .auth import Caller, authenticate, bearer_key, require_master
from .config import FalTarget, GatewayConfig, ModelEntry
from .errors import GatewayError
from .images import (
    ImageRequest,
    Outcome,
    coerce_form_value,
    elapsed_ms,
    first_upload_fields,
    image_fields,
    model_not_found,
    openai_body,
    parse_generation,
    plan,
    response_headers,
    run_job,
)
from .keys import key_routes
from .store import LogEntry, LogWriter, Store, hash_key

__all__ = ["Gateway", "create_app"]

log = logging.getLogger("falbind.serve")
T = TypeVar("T")
_PLACEHOLDER_URL = "https://placeholder.invalid/upload.png"
"""Stands in for an uploaded file while an edit is validated, so nothing is uploaded for a
request that would be refused."""


class EditForm(dict[str, Any]):
    """An edit's multipart form: its text fields (also readable as a mapping, like a JSON
    body), the ``image``/``image[]`` files and the ``mask``, each as (bytes, type, name)."""

    def __init__(
        self,
        fields: dict[str, str],
        images: list[tuple[bytes, str | None, str | None]],
        mask: tuple[bytes, str | None, str | None] | None,
    ) -> None:
        super().__init__(fields)
        self.fields = fields
        self.images = images
        self.mask = mask


def _requested_n(raw: Any) -> int:
    """The request's ``n`` for the budget estimate (1 when absent or not a number yet)."""
    n = raw.get("n", 1) if isinstance(raw, Mapping) else 1
    if isinstance(n, str) and n.strip().isdigit():
        n = int(n)
    return n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 10 else 1


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


class Gateway:
    """The state behind one app: config, database, and one fal client per fal target."""

    def __init__(self, config: GatewayConfig, store: Store | None = None) -> None:
        self.config = config
        self.store = store or Store(config.database_url)
        self.log_writer = LogWriter(self.store)
        self._clients: dict[FalTarget, Any] = {}

    def __repr__(self) -> str:
        return f"<Gateway {self.config.source} models={len(self.config.models)}>"

    async def start(self) -> None:
        await self.store.setup()
        self.warm_up()

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
        await self.log_writer.flush()
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
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

    # -- helpers -----------------------------------------------------------------------------

    def route_model(self, caller: Caller, name: str) -> ModelEntry:
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

    async def admit(self, request: Request, model_name: str | None, n: int) -> Caller:
        """Authenticate an images request and enforce the key's model list, rpm limit and
        budget: one database transaction (see :meth:`Store.admit`), each limit atomic so
        replicas share it. The caller carries the amount reserved from the budget."""
        key = bearer_key(request)
        if key is None:
            raise GatewayError(
                401, "no API key: send 'Authorization: Bearer <key>'", code="invalid_api_key"
            )
        if hmac.compare_digest(key.encode(), self.config.master_key.encode()):
            return Caller(None)
        entry = self.config.entry(model_name) if model_name else None
        estimate = (entry.cost_per_image or 0.0) * n if entry is not None else 0.0
        admission = await self.store.admit(
            hash_key(key), model_name=model_name if entry else None, estimate=estimate
        )
        record = admission.record
        verdict = admission.verdict
        if record is None or verdict == "invalid":
            raise GatewayError(401, "invalid API key", code="invalid_api_key")
        if verdict in ("revoked", "expired"):
            raise GatewayError(
                401, f"API key {record.key_name} has {verdict}", code="invalid_api_key"
            )
        error: GatewayError | None = None
        if verdict == "model_not_allowed":
            error = GatewayError(
                403,
                f"API key {record.key_name} may not use model {model_name!r}",
                type="permission_error",
                code="model_not_allowed",
                param="model",
            )
        if verdict == "rate_limited":
            wait = admission.retry_after or 1.0
            error = GatewayError(
                429,
                f"API key {record.key_name} is over its limit of {record.rpm_limit} "
                "requests per minute",
                type="rate_limit_error",
                code="rate_limit_exceeded",
                headers={"retry-after": str(max(1, int(wait + 0.999)))},
            )
        if verdict == "over_budget":
            error = GatewayError(
                400,
                f"API key {record.key_name} is over its budget "
                f"(spent {record.spend:.4f} of {record.max_budget})",
                type="budget_exceeded",
                code="budget_exceeded",
            )
        if error is not None:
            error.caller = Caller(record)
            raise error
        return Caller(record, admission.reserved)

    def record(
        self,
        *,
        route: str,
        caller: Caller | None,
        started: float,
        status: int,
        model_name: str | None = None,
        outcome: Outcome | None = None,
        cost: float | None = None,
        error_type: str | None = None,
        reserved: float | None = None,
    ) -> None:
        """Log the request and settle the key's spend (the reservation replaced by the cost of
        what was delivered), in one transaction."""
        entry = LogEntry(
            route=route,
            status=status,
            latency_ms=elapsed_ms(started),
            token=caller.token if caller else None,
            key_name=caller.key_name if caller else None,
            model_name=model_name,
            endpoint_id=outcome.endpoint_id if outcome else None,
            fal_request_ids=tuple(outcome.fal_request_ids) if outcome else (),
            images=outcome.images if outcome else 0,
            cost=cost,
            error_type=error_type,
        )
        settle = None
        if caller is not None and caller.token is not None and reserved is not None:
            settle = (caller.token, (cost or 0.0) - reserved)
        self.log_writer.submit(entry, settle)

    # -- images ------------------------------------------------------------------------------

    async def images(
        self,
        request: Request,
        route: str,
        load: Callable[[], Awaitable[Any]],
        prepare: Callable[[Caller, Any], Awaitable[tuple[ImageRequest, Any, ModelEntry, Any]]],
    ) -> Response:
        """The common path of generations and edits: read, authenticate and admit (limits),
        plan (validation), run, then log and settle the spend."""
        started = time.perf_counter()
        caller: Caller | None = None
        outcome = Outcome()
        reserved: float | None = None
        try:
            raw = await load()
            model = raw.get("model") if isinstance(raw, Mapping) else None
            outcome.model_name = model if isinstance(model, str) and model else None
            caller = await self.admit(request, outcome.model_name, _requested_n(raw))
            reserved = caller.reserved
            _, job, entry, finish = await prepare(caller, raw)
            client = self.client(entry.fal)
            if finish is not None:  # an edit: upload, then plan again with the real URLs
                job = await _until_disconnect(request, finish(client))
            fal_started = time.perf_counter()
            result = await _until_disconnect(request, run_job(client, entry, job, outcome))
            fal_ms = elapsed_ms(fal_started)
        except GatewayError as error:
            self.record(
                route=route,
                caller=caller or error.caller,
                started=started,
                status=error.status,
                model_name=outcome.model_name,
                outcome=outcome,
                error_type=error.code or error.type,
                reserved=reserved,
            )
            return error.response()
        except ClientGone:
            self.record(
                route=route,
                caller=caller,
                started=started,
                status=499,
                model_name=outcome.model_name,
                outcome=outcome,
                error_type="client_disconnected",
                reserved=reserved,
            )
            return Response(status_code=499)
        cost = self._cost(entry, outcome.images)
        self.record(
            route=route,
            caller=caller,
            started=started,
            status=200,
            model_name=outcome.model_name,
            outcome=outcome,
            cost=cost,
            reserved=reserved,
        )
        body = openai_body(result)
        headers = response_headers(result, outcome, cost)
        # Server-Timing (a W3C header browsers and proxies show): the gateway's own time
        # (reading, keys and limits, validation, encoding) beside the time spent on fal.
        own_ms = elapsed_ms(started) - fal_ms
        headers["server-timing"] = f"gateway;dur={own_ms:.2f}, fal;dur={fal_ms:.2f}"
        return JSONResponse(body, headers=headers)

    @staticmethod
    def _cost(entry: ModelEntry, images: int) -> float | None:
        return entry.cost_per_image * images if entry.cost_per_image is not None else None

    async def generations(self, request: Request) -> Response:
        async def load() -> Any:
            return await _json_body(request, self.config.max_body_bytes)

        async def prepare(caller: Caller, body: Any) -> tuple[ImageRequest, Any, ModelEntry, Any]:
            image_request = parse_generation(body)
            entry = self.route_model(caller, image_request.model)
            return image_request, plan(entry, image_request), entry, None

        return await self.images(request, "/v1/images/generations", load, prepare)

    async def edits(self, request: Request) -> Response:
        async def load() -> Any:
            return await self._read_form(request)

        async def prepare(caller: Caller, form: Any) -> tuple[ImageRequest, Any, ModelEntry, Any]:
            return self._prepare_edit(caller, form)

        return await self.images(request, "/v1/images/edits", load, prepare)

    async def _read_form(self, request: Request) -> EditForm:
        _check_length(request, self.config.max_body_bytes)
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise GatewayError(
                400,
                "images/edits takes multipart/form-data with 'image' (or 'image[]') files",
                code="invalid_request",
            )
        try:
            form = await request.form(
                max_files=40, max_fields=1000, max_part_size=self.config.max_body_bytes
            )
        except Exception as exc:
            raise GatewayError(
                400, f"could not read the form: {exc}", code="invalid_request"
            ) from None
        images: list[tuple[bytes, str | None, str | None]] = []
        mask: tuple[bytes, str | None, str | None] | None = None
        fields: dict[str, str] = {}
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields[name] = value
                continue
            data = await value.read()
            item = (data, value.content_type, value.filename)
            if name in ("image", "image[]"):
                images.append(item)
            elif name == "mask":
                mask = item
            else:
                raise GatewayError(
                    400, f"unexpected file field {name!r}", code="unknown_parameter", param=name
                )
        return EditForm(fields, images, mask)

    def _prepare_edit(
        self, caller: Caller, form: EditForm
    ) -> tuple[ImageRequest, Any, ModelEntry, Any]:
        from .images import _image_request

        fields, images, mask = form.fields, form.images, form.mask
        model_name = fields.get("model")
        if not model_name:
            raise GatewayError(400, "'model' is required", code="invalid_value", param="model")
        entry = self.route_model(caller, model_name)
        if not images:
            raise GatewayError(400, "'image' is required", code="invalid_value", param="image")
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
        list_field, single_field, mask_field = first_upload_fields(properties)
        if list_field is None and single_field is None:
            raise GatewayError(
                400,
                f"model {model_name!r} ({endpoint_id}) takes no input image; use "
                "/v1/images/generations",
                code="invalid_value",
                param="image",
            )
        if list_field is None and len(images) > 1:
            raise GatewayError(
                400,
                f"model {model_name!r} ({endpoint_id}) takes one image ({single_field}), "
                f"not {len(images)}",
                code="invalid_value",
                param="image",
            )
        if mask is not None and mask_field is None:
            raise GatewayError(
                400,
                f"model {model_name!r} ({endpoint_id}) takes no mask",
                code="unknown_parameter",
                param="mask",
            )

        def with_urls(urls: list[str], mask_url: str | None) -> dict[str, Any]:
            mapped = dict(body)
            if list_field is not None:
                mapped[list_field] = urls
            else:
                assert single_field is not None
                mapped[single_field] = urls[0]
            if mask_url is not None and mask_field is not None:
                mapped[mask_field] = mask_url
            return mapped

        placeholders = with_urls(
            [_PLACEHOLDER_URL] * len(images), _PLACEHOLDER_URL if mask else None
        )
        image_request = _image_request(placeholders)
        job = plan(entry, image_request)  # validated before anything is uploaded

        async def finish(client: Any) -> Any:
            from falbind import FalError

            from .errors import error_from_fal

            try:
                urls = list(
                    await asyncio.gather(
                        *(client.upload(d, content_type=t, file_name=f) for d, t, f in images)
                    )
                )
                mask_url = (
                    await client.upload(mask[0], content_type=mask[1], file_name=mask[2])
                    if mask is not None
                    else None
                )
            except FalError as exc:
                raise error_from_fal(exc, accepted=False) from None
            return plan(entry, _image_request(with_urls(urls, mask_url)))

        return image_request, job, entry, finish

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
        limit = int(request.query_params.get("limit", "100"))
        totals = await self.store.spend_totals(token=token, since=since)
        logs = await self.store.logs(token=token, since=since, limit=max(0, min(limit, 1000)))
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


def _model_object(entry: ModelEntry | None, name: str) -> dict[str, Any]:
    endpoint = (entry.endpoint_id if entry else None) or name
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": endpoint.split("/", 1)[0],
    }


def _check_length(request: Request, limit: int) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise GatewayError(
            413,
            f"the request body is larger than this gateway's limit of {limit} bytes",
            code="request_too_large",
        )


async def _json_body(request: Request, limit: int) -> Any:
    _check_length(request, limit)
    raw = await request.body()
    if len(raw) > limit:
        raise GatewayError(
            413, f"the request body is larger than {limit} bytes", code="request_too_large"
        )
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GatewayError(400, "the request body is not valid JSON", code="invalid_json") from None


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

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: wrong_method},
    )
    app.state.gateway = gateway
    return app
