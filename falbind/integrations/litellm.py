"""falbind as a LiteLLM provider: ``litellm.image_generation(model="falbind/<endpoint id>", ...)``.

::

    import litellm
    import falbind.integrations.litellm as falbind_litellm

    falbind_litellm.register()            # provider "falbind"
    response = litellm.image_generation(
        model="falbind/fal-ai/flux-pro/v1.1-ultra", prompt="a fox", n=2, size="1024x1792", seed=42
    )

Every call runs through falbind's ``client.images.generate``: the endpoint is the one named
(any bound id, alias, or LiteLLM's own ``fal_ai/<id>`` spelling), ``size`` is mapped from the
model's schema, ``n`` is honoured (the model's count field, or several requests), and
``response_format="b64_json"`` returns real base64. Model parameters, whether at the top level
(the OpenAI SDK flattens ``extra_body``) or in a nested ``extra_body`` (LiteLLM's SDK), are
validated against the model before anything is sent. LiteLLM's own keys
(:func:`litellm.types.utils.is_litellm_owned_kwarg`) are dropped first and never echoed.

Errors are raised as :class:`litellm.llms.custom_llm.CustomLLMError` with a status chosen so
LiteLLM's router never retries what fal may already have run and billed:

======================================================  ==============================
failure                                                 status (LiteLLM retries?)
======================================================  ==============================
invalid or unknown parameter, unknown model, bad size   400 (no), with the did-you-mean
fal 400/401/402/403/404/422 before any job was accepted  the same status (no)
fal 429, or a connection that was never made            429 / 503 (yes: nothing ran)
anything after fal accepted a job, or when a request    424 (no), with fal's request ids
was sent and its answer lost (timeouts, resets, 5xx,
a failed queued job, a failed download)
======================================================  ==============================

Per-call options (in ``optional_params``, so also settable in a proxy deployment's
``litellm_params``): ``use_queue``, ``queue_url``, ``strict_size``, and ``fal_extra_body`` (a
mapping sent as is, unvalidated, for parameters fal added after falbind's bindings). ``api_base`` replaces fal's
run URL, ``api_key`` the key (else falbind's environment chain: ``FAL_KEY``, ``FAL_KEY_ID`` +
``FAL_KEY_SECRET``, ``FAL_AI_API_KEY``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import httpx
import litellm
from httpx_aiohttp import AiohttpTransport
from litellm.llms.custom_llm import CustomLLM, CustomLLMError
from litellm.types.utils import ImageObject, ImageResponse, is_litellm_owned_kwarg
from pydantic import BaseModel, ValidationError

import falbind
from falbind.client.failures import Kind, classify
from falbind.images.edit_fields import edit_fields
from falbind.models.base import field_schemas

from ._errors import (
    CallTracker,
    async_event_hooks,
    describe_validation_error,
    possibly_accepted,
    sync_event_hooks,
    tracking,
)

__all__ = ["PROVIDER", "FalbindLiteLLM", "handler", "register"]

PROVIDER: Final = "falbind"
"""The default provider name: models are ``falbind/<endpoint id>``."""
LITELLM_PREFIX: Final = "fal_ai/"

OPENAI_ONLY_PARAMS: Final = (
    "quality",
    "style",
    "background",
    "output_format",
    "moderation",
    "output_compression",
)
"""OpenAI image parameters sent to the model only when its schema has a field of that name."""
END_USER_PARAMS: Final = ("user", "safety_identifier")
"""End-user ids for OpenAI's abuse monitoring: not fal parameters, always dropped."""
HANDLER_OPTIONS: Final = ("use_queue", "queue_url", "strict_size", "fal_extra_body")
"""Per-call options for this handler, taken out of ``optional_params``."""
NOT_RETRIED: Final = 424
"""The status for failures after fal accepted a job: LiteLLM maps it to a 400 and never
retries it (408, 429 and 5xx would be retried, and could bill twice)."""

OpenAIOnlyPolicy = Literal["reject", "drop"]


@functools.cache
def _ssl_context() -> Any:
    # Built once: loading the CA bundle costs ~30 ms per client otherwise.
    return httpx.create_ssl_context()


@dataclass(frozen=True, slots=True)
class _Call:
    """One call's arguments for ``client.images.generate``, after LiteLLM's were sorted out."""

    endpoint_id: str
    n: int
    size: str | None
    response_format: Literal["url", "b64_json"]
    model_params: dict[str, Any]
    use_queue: bool
    queue_url: str | None
    strict_size: bool
    dropped: tuple[str, ...]
    fal_extra_body: dict[str, Any] | None
    """Sent as is, unvalidated (falbind's ``extra_body``): for parameters fal added after
    falbind's bindings were generated."""


@dataclass(frozen=True, slots=True)
class _LoopPool:
    """The connection pool of one event loop, and what closes it when the loop shuts down."""

    http: httpx.AsyncClient
    closer: AsyncGenerator[None, None]


async def _close_at_loop_shutdown(http: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """Started once per loop, it closes ``http`` when the loop finalises its async generators
    (``asyncio.run`` does, before closing the loop), so ``asyncio.run(litellm.aimage_...)``
    called again and again does not leave an open aiohttp session behind each time."""
    try:
        yield
    finally:
        await http.aclose()


class FalbindLiteLLM(CustomLLM):
    """A LiteLLM custom provider running image generation (and edits) through falbind.

    ``key``, ``run_url``, ``queue_url`` and ``storage_url`` are the client's defaults (a call's
    ``api_key``/``api_base`` win). ``use_queue`` sends through fal's queue instead of its sync
    endpoint. ``openai_only_params="drop"`` (or LiteLLM's ``drop_params``) drops OpenAI
    parameters the model does not take (``quality``, ``style``, ...) instead of refusing them.
    """

    def __init__(
        self,
        *,
        key: str | None = None,
        run_url: str | None = None,
        queue_url: str | None = None,
        use_queue: bool = False,
        strict_size: bool = False,
        openai_only_params: OpenAIOnlyPolicy = "reject",
        retry: falbind.RetryPolicy | None = None,
    ) -> None:
        super().__init__()
        if openai_only_params not in ("reject", "drop"):
            raise ValueError("openai_only_params must be 'reject' or 'drop'")
        self._key = key
        self._run_url = run_url
        self._queue_url = queue_url
        self._use_queue = use_queue
        self._strict_size = strict_size
        self._openai_only = openai_only_params
        self._retry = retry
        self._sync_http: httpx.Client | None = None
        self._sync_lock = threading.Lock()
        self._async_http: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"<FalbindLiteLLM run_url={self._run_url!r} use_queue={self._use_queue}>"

    # -- LiteLLM's interface ------------------------------------------------------------------

    def image_generation(
        self,
        model: str,
        prompt: str,
        api_key: str | None,
        api_base: str | None,
        model_response: ImageResponse,
        optional_params: dict[str, Any],
        logging_obj: Any,
        timeout: float | httpx.Timeout | None = None,
        client: Any = None,
        **kwargs: Any,
    ) -> ImageResponse:
        with tracking() as tracker:
            try:
                call = self._call(model, optional_params)
                with self._sync_client(api_key, api_base, call, timeout) as fal:
                    result = fal.images.generate(**self._generate_args(call, prompt))
            except Exception as error:
                raise _custom_error(error, tracker, model) from None
        return _fill(model_response, result, call, tracker)

    async def aimage_generation(
        self,
        model: str,
        prompt: str,
        model_response: ImageResponse,
        api_key: str | None,
        api_base: str | None,
        optional_params: dict[str, Any],
        logging_obj: Any,
        timeout: float | httpx.Timeout | None = None,
        client: Any = None,
        **kwargs: Any,
    ) -> ImageResponse:
        with tracking() as tracker:
            try:
                call = self._call(model, optional_params)
                fal = await self._async_client(api_key, api_base, call, timeout)
                result = await fal.images.generate(**self._generate_args(call, prompt))
            except Exception as error:
                raise _custom_error(error, tracker, model) from None
        return _fill(model_response, result, call, tracker)

    def image_edit(
        self,
        model: str,
        image: Sequence[Any],
        prompt: str | None,
        model_response: ImageResponse,
        api_key: str | None,
        api_base: str | None,
        optional_params: dict[str, Any],
        logging_obj: Any,
        timeout: float | httpx.Timeout | None = None,
        client: Any = None,
        **kwargs: Any,
    ) -> ImageResponse:
        with tracking() as tracker:
            try:
                call = self._edit_call(model, image, optional_params)
                with self._sync_client(api_key, api_base, call, timeout) as fal:
                    result = fal.images.generate(**self._generate_args(call, prompt or ""))
            except Exception as error:
                raise _custom_error(error, tracker, model) from None
        return _fill(model_response, result, call, tracker)

    async def aimage_edit(
        self,
        model: str,
        image: Sequence[Any],
        prompt: str | None,
        model_response: ImageResponse,
        api_key: str | None,
        api_base: str | None,
        optional_params: dict[str, Any],
        logging_obj: Any,
        timeout: float | httpx.Timeout | None = None,
        client: Any = None,
        **kwargs: Any,
    ) -> ImageResponse:
        with tracking() as tracker:
            try:
                call = self._edit_call(model, image, optional_params)
                fal = await self._async_client(api_key, api_base, call, timeout)
                result = await fal.images.generate(**self._generate_args(call, prompt or ""))
            except Exception as error:
                raise _custom_error(error, tracker, model) from None
        return _fill(model_response, result, call, tracker)

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool used by sync calls (reopened on the next call)."""
        with self._sync_lock:
            http, self._sync_http = self._sync_http, None
        if http is not None:
            http.close()

    async def aclose(self) -> None:
        """Close the current event loop's connection pool (reopened on the next call)."""
        pool = self._async_http.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.closer.aclose()

    # -- arguments -----------------------------------------------------------------------------

    def _call(self, model: str, optional_params: Mapping[str, Any]) -> _Call:
        endpoint_id = falbind.ENDPOINTS.resolve(model.removeprefix(LITELLM_PREFIX)).id
        params = _model_params(optional_params)
        options = {name: params.pop(name) for name in HANDLER_OPTIONS if name in params}
        for name in END_USER_PARAMS:
            params.pop(name, None)
        n = _as_int("n", params.pop("n", None), default=1)
        size = params.pop("size", None)
        if size is not None and not isinstance(size, str):
            raise ValueError(f"size must be a string such as '1024x1024' or 'auto', not {size!r}")
        response_format = params.pop("response_format", None) or "url"
        if response_format not in ("url", "b64_json"):
            raise ValueError(
                f"response_format must be 'url' or 'b64_json', not {response_format!r}"
            )
        dropped = self._openai_only_params(endpoint_id, params)
        queue_url = options.get("queue_url", self._queue_url)
        if queue_url is not None and not isinstance(queue_url, str):
            raise ValueError("queue_url must be a string")
        return _Call(
            endpoint_id=endpoint_id,
            n=n,
            size=size,
            response_format=cast(Literal["url", "b64_json"], response_format),
            model_params=params,
            use_queue=_as_bool("use_queue", options.get("use_queue", self._use_queue)),
            queue_url=queue_url,
            strict_size=_as_bool("strict_size", options.get("strict_size", self._strict_size)),
            dropped=dropped,
            fal_extra_body=_as_mapping("fal_extra_body", options.get("fal_extra_body")),
        )

    def _edit_call(
        self, model: str, image: Sequence[Any] | Any, optional_params: Mapping[str, Any]
    ) -> _Call:
        params = dict(optional_params)
        mask = params.pop("mask", None)
        call = self._call(model, params)
        images = list(image) if isinstance(image, list | tuple) else [image]
        images = [file for file in images if file is not None]
        # The same mapping and refusals as the gateway's /v1/images/edits (one module).
        targets = edit_fields(field_schemas(falbind.ENDPOINTS[call.endpoint_id].input_model))
        targets.check(call.endpoint_id, images=len(images), mask=mask is not None)
        model_params = _coerce_form_values(call.endpoint_id, call.model_params)
        uris = [_data_uri(file) for file in images]
        mask_uri = _data_uri(mask) if mask is not None else None
        model_params.update(targets.place(uris, mask_uri))
        return dataclasses.replace(call, model_params=model_params)

    def _openai_only_params(self, endpoint_id: str, params: dict[str, Any]) -> tuple[str, ...]:
        """Remove (or refuse) OpenAI parameters the model has no field for."""
        fields = _input_fields(endpoint_id)
        unsupported = [p for p in OPENAI_ONLY_PARAMS if p in params and p not in fields]
        if not unsupported:
            return ()
        if self._openai_only == "drop" or litellm.drop_params:
            for name in unsupported:
                del params[name]
            return tuple(unsupported)
        names = ", ".join(unsupported)
        raise ValueError(
            f"{endpoint_id} has no parameter {names} (an OpenAI parameter); leave it out, or "
            "set drop_params=True (or FalbindLiteLLM(openai_only_params='drop')) to drop it"
        )

    def _generate_args(self, call: _Call, prompt: str) -> dict[str, Any]:
        return {
            "model": call.endpoint_id,
            "prompt": prompt,
            "n": call.n,
            "size": call.size,
            "response_format": call.response_format,
            "strict_size": call.strict_size,
            "use_queue": call.use_queue,
            "extra_body": call.fal_extra_body,
            **call.model_params,
        }

    # -- clients -------------------------------------------------------------------------------

    def _client_options(
        self, api_key: str | None, api_base: str | None, call: _Call, timeout: Any
    ) -> dict[str, Any]:
        options: dict[str, Any] = {"key": api_key or self._key, "timeout": _timeout(timeout)}
        run_url = api_base or self._run_url
        if run_url:
            options["run_url"] = run_url
        if call.queue_url:
            options["queue_url"] = call.queue_url
        if self._retry is not None:
            options["retry"] = self._retry
        return options

    def _sync_client(
        self, api_key: str | None, api_base: str | None, call: _Call, timeout: Any
    ) -> falbind.FalClient:
        with self._sync_lock:
            if self._sync_http is None:
                self._sync_http = httpx.Client(
                    verify=_ssl_context(), event_hooks=sync_event_hooks()
                )
            http = self._sync_http
        options = self._client_options(api_key, api_base, call, timeout)
        return falbind.FalClient(http_client=http, **options)

    async def _async_client(
        self, api_key: str | None, api_base: str | None, call: _Call, timeout: Any
    ) -> falbind.AsyncFalClient:
        loop = asyncio.get_running_loop()
        pool = self._async_http.get(loop)
        if pool is None:
            # One pool per event loop: aiohttp's sessions belong to the loop they start on.
            http = httpx.AsyncClient(
                transport=AiohttpTransport(verify=_ssl_context()),
                event_hooks=async_event_hooks(),
            )
            pool = self._async_http[loop] = _LoopPool(http, _close_at_loop_shutdown(http))
            await anext(pool.closer)
        options = self._client_options(api_key, api_base, call, timeout)
        return falbind.AsyncFalClient(http_client=pool.http, **options)


def _model_params(optional_params: Mapping[str, Any]) -> dict[str, Any]:
    """``optional_params`` without LiteLLM's own keys, with a nested ``extra_body`` merged in."""
    params = {k: v for k, v in optional_params.items() if not is_litellm_owned_kwarg(k)}
    extra = params.pop("extra_body", None)
    if extra is None:
        return params
    if not isinstance(extra, Mapping):
        raise ValueError("extra_body must be a mapping of model parameters")
    for name, value in extra.items():
        if is_litellm_owned_kwarg(name):
            continue
        if name in params and params[name] != value:
            raise ValueError(f"{name} is given twice (in extra_body too) with different values")
        params[name] = value
    return params


@functools.lru_cache(maxsize=512)
def _input_fields(endpoint_id: str) -> frozenset[str]:
    """The parameter names (and aliases) of an endpoint's Input model."""
    model = falbind.ENDPOINTS[endpoint_id].input_model
    return frozenset(
        name
        for field_name, info in model.model_fields.items()
        for name in (field_name, info.alias)
        if name
    )


def _as_int(name: str, value: Any, *, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


def _as_mapping(name: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a mapping of parameters")
    return dict(value)


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise ValueError(f"{name} must be true or false, not {value!r}")


def _coerce_form_values(endpoint_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Multipart form values arrive as strings: convert each by the Input model's type
    (pydantic's lax mode turns ``"4"`` into 4 and ``"true"`` into True; JSON text is parsed
    for object and list fields). Values that do not convert are left for validation to report."""
    import json

    model = falbind.ENDPOINTS[endpoint_id].input_model
    fields = {info.alias or name: name for name, info in model.model_fields.items()}
    coerced = dict(params)
    for key, value in params.items():
        if not isinstance(value, str) or key not in fields:
            continue
        candidate: Any = value
        if value.lstrip().startswith(("{", "[")):
            try:
                candidate = json.loads(value)
            except ValueError:
                continue
        try:
            validated = model.__pydantic_validator__.validate_assignment(
                model.model_construct(), fields[key], candidate
            )
        except ValidationError:
            continue
        converted = getattr(validated, fields[key])
        coerced[key] = (
            converted.model_dump(mode="json", exclude_unset=True, by_alias=True)
            if isinstance(converted, BaseModel)
            else converted
        )
    return coerced


def _data_uri(file: Any) -> str:
    """A ``data:`` URI of one of LiteLLM's file values (bytes, a file object, a path, or an
    ``(name, content[, content_type])`` tuple): fal takes data URIs for file inputs, which
    saves an upload round trip."""
    content_type: str | None = None
    if isinstance(file, tuple):
        content_type = file[2] if len(file) > 2 and isinstance(file[2], str) else None
        file = file[1]
    if hasattr(file, "read"):
        data = file.read()
        if isinstance(data, str):
            data = data.encode()
        return falbind.to_data_uri(data, content_type)
    if isinstance(file, bytes | bytearray):
        return falbind.to_data_uri(bytes(file), content_type)
    if isinstance(file, str | os.PathLike):
        return falbind.to_data_uri(file, content_type)
    raise ValueError(f"cannot read an image from a {type(file).__name__}")


def _timeout(timeout: Any) -> httpx.Timeout | None:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
        return httpx.Timeout(float(timeout), connect=min(10.0, float(timeout)))
    return None


def _error(status: int, message: str) -> CustomLLMError:
    return CustomLLMError(status, message)  # type: ignore[no-untyped-call]


_NEVER_SENT: Final = frozenset({Kind.TIMEOUT, Kind.UNREACHABLE})
_FAL_ANSWERED: Final = frozenset(
    {
        Kind.RATE_LIMITED,
        Kind.AUTH_REFUSED,
        Kind.NO_CREDIT,
        Kind.INVALID_INPUT,
        Kind.REQUEST_REFUSED,
        Kind.FAL_REFUSED,
        Kind.SERVER_ERROR,
    }
)


def _custom_error(error: Exception, tracker: CallTracker, model: str) -> CustomLLMError:
    """The :class:`CustomLLMError` for ``error``; see the module docstring for the statuses.

    What the failure is and whether fal may have billed it come from
    :mod:`falbind.client.failures`; this maps it onto a status LiteLLM's router does (429,
    503: nothing ran) or does not (400, 424...) retry.
    """
    if isinstance(error, CustomLLMError):
        return error
    if possibly_accepted(error, tracker):
        ids = tracker.request_ids or [i for i in [getattr(error, "request_id", None)] if i]
        where = f"fal request id(s): {', '.join(ids)}" if ids else "fal gave no request id"
        return _error(
            NOT_RETRIED,
            f"{model}: {error} -- not retried: fal accepted the job (or may have), so a retry "
            f"could run and bill it again; {where}",
        )
    kind = classify(error)
    if isinstance(error, ValidationError):
        message = describe_validation_error(error, model)
        # falbind's hint names its own extra_body; through LiteLLM that is fal_extra_body.
        message = message.replace("through extra_body=", "through fal_extra_body=")
        return _error(400, message)
    if kind is Kind.INVALID_ARGUMENTS:
        return _error(400, f"{model}: {error}")
    if kind in _FAL_ANSWERED:
        status = cast(falbind.FalStatusError, error).status_code
        # fal's 4xx as is (LiteLLM retries only its 429); a 5xx here is one fal said retrying
        # is safe, or one that never started: 503, which LiteLLM retries.
        return _error(status if 400 <= status < 500 else 503, str(error))
    if kind in _NEVER_SENT:
        return _error(503, f"{model}: {error} (the request never reached fal)")
    # Nothing was sent: an unexpected failure while preparing the call.
    return _error(500, f"{model}: {type(error).__name__}: {error}")


def _fill(
    model_response: ImageResponse,
    result: falbind.ImagesResponse,
    call: _Call,
    tracker: CallTracker,
) -> ImageResponse:
    """Put falbind's result into LiteLLM's ``model_response``.

    Each image's ``provider_specific_fields`` carry its width, height, content type, the
    endpoint, and, when one request made them all, that request's seed and fal request id
    (with several requests ``fal_request_ids`` in ``_hidden_params`` lists every id).
    """
    single = len(result.outputs) == 1
    seed = getattr(result.outputs[0], "seed", None) if single else None
    request_id = tracker.request_ids[0] if len(tracker.request_ids) == 1 else None
    data = [
        ImageObject(
            url=image.url,
            b64_json=image.b64_json,
            revised_prompt=image.revised_prompt,
            provider_specific_fields={
                "endpoint_id": result.model,
                "width": image.width,
                "height": image.height,
                "content_type": image.content_type,
                "seed": seed if isinstance(seed, int) else None,
                "request_id": request_id,
            },
        )
        for image in result.data
    ]
    model_response.created = result.created
    model_response.data = cast("list[Any]", data)
    first = result.data[0] if result.data else None
    model_response.size = (
        f"{first.width}x{first.height}"
        if first is not None and first.width and first.height
        else result.size.delivered
    )
    notes = [*result.size.notes, *result.notes]
    if call.dropped:
        notes.append(f"dropped OpenAI parameter(s) {', '.join(call.dropped)}")
    # A new dict: LiteLLM's class-level default must not be mutated.
    model_response._hidden_params = {
        **model_response._hidden_params,
        "falbind_size": result.size.model_dump(),
        "falbind_notes": notes,
        "fal_request_ids": list(tracker.request_ids),
    }
    return model_response


handler: Final = FalbindLiteLLM()
"""The instance a LiteLLM proxy config names: ``falbind.integrations.litellm.handler``."""


def register(provider: str = PROVIDER, handler: FalbindLiteLLM = handler) -> None:
    """Make ``litellm`` route ``<provider>/<endpoint id>`` models to ``handler`` (idempotent).

    ``fal_ai`` cannot be used: LiteLLM's built-in provider of that name would win.
    """
    if provider == "fal_ai":
        raise ValueError("'fal_ai' is LiteLLM's built-in provider; pick another name")
    entries = [e for e in litellm.custom_provider_map if e.get("provider") != provider]
    entries.append({"provider": provider, "custom_handler": handler})
    litellm.custom_provider_map = entries
    litellm.utils.custom_llm_setup()  # type: ignore[no-untyped-call]
