"""``/v1/images/generations`` and ``/v1/images/edits``: OpenAI requests onto fal, validated first.

A request is planned with falbind's own ``images.generate`` planner (size mapping, ``n``,
``response_format``, every model parameter validated against the endpoint's schema) before a
single byte goes to fal. Then the planned bodies are sent through the fal client's public queue
API (``submit`` → handle ``result``), so that a client that disconnects, or a timeout, cancels
the fal request (``handle.cancel()``) instead of leaving a billed job running unobserved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError

from .config import ModelEntry
from .errors import GatewayError, error_from_fal, error_from_validation

__all__ = [
    "OPENAI_FIELDS",
    "ImageRequest",
    "Outcome",
    "coerce_form_value",
    "image_fields",
    "parse_generation",
    "plan",
    "run_job",
]

T = TypeVar("T")
OPENAI_FIELDS: Final = ("model", "prompt", "n", "size", "response_format", "stream", "user")
"""OpenAI's request fields the gateway handles itself; every other field is a model parameter
(OpenAI-only ones such as ``quality`` or ``style`` are model parameters when the model has a
field of that name, and refused with a did-you-mean otherwise: nothing is dropped silently)."""
MAX_N: Final = 10
MAX_PROMPT_CHARS: Final = 32_000
"""OpenAI's own limit for image prompts (gpt-image-1's 32,000 characters)."""


@dataclass(slots=True)
class ImageRequest:
    """An OpenAI images request, read from JSON or a form."""

    model: str
    prompt: str
    n: int = 1
    size: str | None = None
    response_format: str = "url"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Outcome:
    """What happened to one request (for the response, the budget and the log)."""

    fal_request_ids: list[str] = field(default_factory=list)
    accepted: bool = False
    """A request to fal was sent: from here on, a failure must not be retried by the client."""
    images: int = 0
    endpoint_id: str | None = None
    model_name: str | None = None
    """The model the client asked for, once read (logged even when the request is refused)."""


def _bad(message: str, param: str | None, code: str = "invalid_value") -> GatewayError:
    return GatewayError(400, message, code=code, param=param)


def parse_generation(body: Any) -> ImageRequest:
    """The :class:`ImageRequest` in a JSON body (the OpenAI SDK's, with ``extra_body`` fields
    flattened in at the top level)."""
    if not isinstance(body, Mapping):
        raise _bad("the request body must be a JSON object", None)
    return _image_request(body)


def _image_request(body: Mapping[str, Any]) -> ImageRequest:
    if body.get("stream"):
        raise _bad(
            "stream=true is not supported by this gateway yet; send the request without it",
            "stream",
            "unsupported_parameter",
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required: one of the models this gateway serves", "model")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise _bad("'prompt' is required and must be a non-empty string", "prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise _bad(
            f"'prompt' is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS}", "prompt"
        )
    if not _encodable(prompt):
        raise _bad("'prompt' holds text that is not valid Unicode (a lone surrogate)", "prompt")
    n = body.get("n", 1)
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise _bad(f"'n' must be an integer from 1 to {MAX_N}, not {n!r}", "n")
    size = body.get("size")
    if size is not None and not isinstance(size, str):
        raise _bad(f"'size' must be a string like '1024x1024' or 'auto', not {size!r}", "size")
    response_format = body.get("response_format") or "url"
    if response_format not in ("url", "b64_json"):
        raise _bad(
            f"'response_format' must be 'url' or 'b64_json', not {response_format!r}",
            "response_format",
        )
    params = {k: v for k, v in body.items() if k not in OPENAI_FIELDS}
    return ImageRequest(model, prompt, n, size, str(response_format), params)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def image_fields(endpoint_id: str) -> Mapping[str, Any]:
    """The endpoint's request properties (JSON schema), by field name (cached; not to be
    mutated)."""
    from falbind import ENDPOINTS
    from falbind.models.base import field_schemas

    return field_schemas(ENDPOINTS[endpoint_id].input_model)


def _schema_types(schema: Mapping[str, Any]) -> set[str]:
    types: set[str] = set()
    for member in (schema, *schema.get("anyOf", ()), *schema.get("oneOf", ())):
        kind = member.get("type")
        if isinstance(kind, str):
            types.add(kind)
        elif isinstance(kind, list):
            types.update(str(k) for k in kind)
        if "enum" in member and "type" not in member:
            types.update(type(v).__name__.replace("str", "string") for v in member["enum"])
        if "const" in member:
            types.add("string" if isinstance(member["const"], str) else "other")
    return types


def coerce_form_value(value: str, schema: Mapping[str, Any] | None) -> Any:
    """A multipart form string as the schema's type (form fields are always strings):
    integers, numbers, booleans, and JSON for arrays and objects. A string the type does not
    fit stays a string, so validation reports it against the field."""
    if schema is None:
        return value
    types = _schema_types(schema)
    if "string" in types or not types:
        return value
    text = value.strip()
    if "integer" in types:
        try:
            return int(text)
        except ValueError:
            pass
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    if "boolean" in types and text.lower() in ("true", "false", "1", "0"):
        return text.lower() in ("true", "1")
    if types & {"array", "object"}:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return value


def plan(entry: ModelEntry, request: ImageRequest) -> Any:
    """The validated :class:`ImagesJob` for ``request`` on ``entry``; a 400/404 otherwise.

    Nothing is sent to fal here."""
    from falbind import SizeError, UnknownEndpointError
    from falbind.images.generate import plan_images

    params = {**entry.defaults, **request.params}
    target = entry.target_for(request.model)
    try:
        return plan_images(
            model=target,
            prompt=request.prompt,
            n=request.n,
            size=request.size,
            response_format="b64_json" if request.response_format == "b64_json" else "url",
            strict_size=entry.strict_size,
            model_params=params,
        )
    except ValidationError as exc:
        raise error_from_validation(list(exc.errors()), request.model) from None
    except SizeError as exc:
        raise GatewayError(400, str(exc), code="invalid_size", param="size") from None
    except UnknownEndpointError:
        raise model_not_found(request.model) from None
    except (ValueError, TypeError) as exc:
        message = str(exc)
        if "returns no images" in message:
            raise model_not_found(request.model, message) from None
        raise _bad(message, "n" if "n" in message.split()[:3] else None) from None


def model_not_found(name: str, reason: str | None = None) -> GatewayError:
    return GatewayError(
        404,
        reason or f"the model {name!r} does not exist or is not served by this gateway",
        code="model_not_found",
        param="model",
    )


Recorder = Callable[[str, str], Awaitable[None]]
"""Called with (endpoint id, fal request id) when fal accepts a queued job, before the gateway
waits on it: the gateway writes it down, so that a crash never leaves a job unaccounted for."""
SYNC_RETRIES: Final = 2
"""LiteLLM's default ``num_retries``. How often a sync-mode request is sent again when fal answered 5xx or could not be reached
at all: fal bills only successful outputs, so a request it answered with a server error (or
never received) cost nothing and is safe to send again."""


async def run_job(
    client: Any,
    entry: ModelEntry,
    job: Any,
    outcome: Outcome,
    record: Recorder | None = None,
    *,
    retries: int = SYNC_RETRIES,
) -> Any:
    """Send the planned bodies, download for ``b64_json``; the ``ImagesResponse``.

    fal errors become :class:`GatewayError` with ``x-should-retry: false`` once fal may have
    accepted a job; a cancellation (client gone), the entry's timeout or a failure while
    waiting cancels every queued request.
    """
    from falbind import FalError

    outcome.endpoint_id = job.endpoint_id
    try:
        async with asyncio.timeout(entry.timeout):
            outputs = await _gather(
                _send(client, entry, job.endpoint_id, body, outcome, record, retries)
                for body in job.bodies
            )
            urls: list[str] = job.downloads(outputs)
            blobs = await _gather(client.download(url, expected_type="image/") for url in urls)
    except FalError as exc:
        raise error_from_fal(exc, accepted=outcome.accepted) from None
    except TimeoutError:
        raise GatewayError(
            504,
            f"fal did not finish within {entry.timeout} s; the request was cancelled",
            type="api_error",
            code="timeout",
            should_retry=False,
        ) from None
    response = job.response(outputs, dict(zip(urls, blobs, strict=True)))
    outcome.images = len(response.data)
    return response


async def _send(
    client: Any,
    entry: ModelEntry,
    endpoint_id: str,
    body: dict[str, Any],
    outcome: Outcome,
    record: Recorder | None,
    retries: int,
) -> BaseModel:
    if not entry.use_queue:
        return await _run_sync(client, endpoint_id, body, outcome, retries)
    try:
        handle = await client.submit(endpoint_id, body)
    except BaseException as exc:
        outcome.accepted |= maybe_accepted(exc)
        raise
    outcome.accepted = True
    outcome.fal_request_ids.append(handle.request_id)
    try:
        if record is not None:
            await record(endpoint_id, handle.request_id)
        result: BaseModel = await handle.result()
    except BaseException as exc:
        from falbind import FalRequestFailedError

        # Anything but the model's own failure (the job is over then) leaves a job fal may
        # still run and bill: a status poll that failed, a client gone, a timeout, the
        # database refusing to record it. Cancel it.
        if not isinstance(exc, FalRequestFailedError):
            await _cancel_quietly(handle)
        raise
    return result


async def _run_sync(
    client: Any, endpoint_id: str, body: dict[str, Any], outcome: Outcome, retries: int
) -> BaseModel:
    """One sync-mode request, sent again (up to ``retries`` times) while fal answers 5xx or
    cannot be reached: neither is billed (see :data:`SYNC_RETRIES`)."""
    for attempt in range(retries + 1):
        try:
            output: BaseModel = await client.run(endpoint_id, body)
            outcome.accepted = True
            return output
        except BaseException as exc:
            if maybe_accepted(exc):
                outcome.accepted = True
                raise
            if attempt == retries or not _unbilled_server_error(exc):
                raise
        await asyncio.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def maybe_accepted(exc: BaseException) -> bool:
    """Whether fal may have accepted (and will bill) the request that failed with ``exc``:
    not when fal answered with an error status (fal bills successful outputs only) nor when
    the request provably never reached it; yes for anything else (a reply lost on the way,
    a cancellation while it ran)."""
    from falbind import FalStatusError, InvalidArgumentsError, MissingKeyError

    if isinstance(exc, FalStatusError | InvalidArgumentsError | MissingKeyError):
        return False
    return not nothing_sent(exc)


def nothing_sent(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a connection that was never made."""
    from falbind.client.retry import as_transport_error, never_reached_server

    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        transport = as_transport_error(current)
        if transport is not None:
            return never_reached_server(transport)
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def _unbilled_server_error(exc: BaseException) -> bool:
    from falbind import FalConnectionError, RequestTimeoutError, ServerError

    if isinstance(exc, RequestTimeoutError):
        return False  # the caller's own deadline: sending again would only time out again
    return isinstance(exc, ServerError) or (
        isinstance(exc, FalConnectionError) and nothing_sent(exc)
    )


async def _cancel_quietly(handle: Any) -> None:
    """Cancel a fal request whose caller is gone (never raises: the caller is gone already)."""
    from falbind import FalError

    with contextlib.suppress(FalError, asyncio.CancelledError):
        await asyncio.shield(handle.cancel())


async def _gather(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """All results in order; the first error once every awaitable has ended (so a failure of
    one request never leaves another running unobserved). A cancellation cancels them all."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if not isinstance(r, BaseException)]


def openai_body(response: Any) -> dict[str, Any]:
    """OpenAI's ``ImagesResponse`` JSON: ``created`` and ``data`` items with ``url`` or
    ``b64_json`` and ``revised_prompt``."""
    data = []
    for image in response.data:
        item: dict[str, Any] = {}
        if image.b64_json is not None:
            item["b64_json"] = image.b64_json
        else:
            item["url"] = image.url
        if image.revised_prompt is not None:
            item["revised_prompt"] = image.revised_prompt
        data.append(item)
    return {"created": response.created, "data": data}


def response_headers(response: Any, outcome: Outcome, cost: float | None) -> dict[str, str]:
    """What the gateway adds: the size mapping (and whether it was adjusted), fal's request
    ids, the estimated cost and any notes."""
    size = response.size
    headers = {
        "x-falbind-model": response.model,
        "x-falbind-size": _header_safe(size.delivered),
        "x-falbind-size-adjusted": "true" if size.size_adjusted else "false",
    }
    notes = [*size.notes, *response.notes]
    if notes:
        headers["x-falbind-notes"] = _header_safe(" | ".join(notes))
    if outcome.fal_request_ids:
        headers["x-fal-request-id"] = ",".join(outcome.fal_request_ids)
    if cost is not None:
        headers["x-falbind-cost-estimate"] = f"{cost:.6f}"
    return headers


def _header_safe(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii").replace("\n", " ")[:1000]


def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
