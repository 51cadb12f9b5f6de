"""``FalClient`` and ``AsyncFalClient``: typed, validated calls to fal, sync and async.

Both are thin I/O shells over :mod:`._core`, which builds every request, decodes every answer
and decides every retry; only sending and sleeping differ between the twins.

Each bound endpoint is a method (``client.flux_schnell(prompt=...)`` → ``FluxSchnellOutput``,
through fal's sync endpoint) and a queue method (``client.queue.flux_schnell(...)``: submit,
then wait). Type checkers see them through the generated typed client stubs; at
run time ``__getattr__`` resolves the name in ``falbind.ENDPOINTS``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import http.cookiejar
import inspect
import logging
import os
import re
import ssl
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, overload

import httpx

from falbind.images.generate import AsyncImages, Images
from falbind.models.base import RequestModel
from falbind.models.index import EndpointSpec, UnknownEndpointError
from falbind.models.suggest import suggest_names

from ._coalesce import coalesce_writes
from ._core import (
    DEFAULT_QUEUE_URL,
    DEFAULT_RUN_URL,
    DEFAULT_STORAGE_URL,
    DEFAULT_TIMEOUT,
    Attempts,
    Call,
    ClientConfig,
    Endpoint,
    Priority,
    QueueURLs,
    Timeout,
    as_timeout,
    decode_object,
    decode_upload_target,
    normalized_origins,
    resolve_endpoint,
    transport_error,
)
from ._urls import plain_url
from .auth import resolve_key
from .compat import CallKind, adapt_call, image_bytes
from .env import async_log_hooks, default_urls, log_hooks
from .errors import FalDecodeError
from .files import Upload, decode_data_uri, file_url, finish_download
from .queue import (
    AsyncQueueHandle,
    AsyncStatusCallback,
    QueueHandle,
    StatusCallback,
    check_client_timeout,
)
from .retry import RetryPolicy, as_transport_error, scrub_tracebacks
from .streaming import (
    AsyncFalStream,
    FalStream,
    Opened,
    aevents,
    events,
    is_json,
    stream_variant,
)

if TYPE_CHECKING:
    import aiohttp

    from falbind.models.bindings import (
        AsyncEndpointMethods as _AsyncMethods,
        AsyncQueueMethods as _AsyncQueueMethods,
        SyncEndpointMethods as _SyncMethods,
        SyncQueueMethods as _SyncQueueMethods,
    )

    from ._aiohttp import AiohttpSession
else:
    _SyncMethods = _AsyncMethods = _SyncQueueMethods = _AsyncQueueMethods = object

__all__ = ["AsyncFalClient", "FalClient"]

log = logging.getLogger("falbind")
Arguments = Mapping[str, Any] | RequestModel | None


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's bundle, SSL_CERT_FILE honoured), built once per
    process: loading the CA bundle costs ~30 ms, which every client would otherwise pay."""
    return httpx.create_ssl_context()


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing. fal sets no cookies, and httpx asks its jar about every
    response (building a ``urllib`` request object for it: ~20 µs a call)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass


class _EmptyJar(http.cookiejar.CookieJar):
    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        pass


# One for every client: it can hold nothing, so sharing it shares nothing.
_NO_COOKIES: Final = _NoCookies(_EmptyJar())


class _CookielessClient(httpx.Client):
    """The ``httpx.Client`` falbind creates: no cookie jar (see :class:`_NoCookies`). A client
    passed as ``http_client=`` keeps its own jar."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise AttributeError("falbind's own HTTP client keeps no cookies")


class _CookielessAsyncClient(httpx.AsyncClient):
    """The ``httpx.AsyncClient`` falbind creates: no cookie jar (see :class:`_NoCookies`)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise AttributeError("falbind's own HTTP client keeps no cookies")


@functools.lru_cache(maxsize=4096)
def _parsed_url(url: str, params: tuple[tuple[str, str], ...]) -> httpx.URL:
    """``url`` with ``params`` merged in, parsed once: a run URL per endpoint, a status URL per
    queued request and poll. A plain URL is written with its parameters first (see
    :func:`~._urls.plain_url`) and parsed once; httpx's merge of parameters alone costs ~70 µs."""
    plain = plain_url(url, params)
    if plain is not None:
        return httpx.URL(plain)
    parsed = httpx.URL(url)
    return parsed.copy_merge_params(dict(params)) if params else parsed


def _request_url(call: Call, client_params: httpx.QueryParams) -> tuple[httpx.URL | str, Any]:
    """The URL and params to hand httpx for ``call``: the parsed, cached URL with the call's
    params in it, unless the HTTP client has params of its own (then httpx merges them, as
    before, and the call's win)."""
    if client_params:
        return call.url, call.params
    return _parsed_url(call.url, tuple(call.params.items()) if call.params else ()), None


def _direct_session(
    session: aiohttp.ClientSession | None,
) -> tuple[AiohttpSession | None, httpx.AsyncBaseTransport | None]:
    """The aiohttp session the async client sends over directly, and the httpx transport over
    the same session (for the status stream); without aiohttp, neither (httpx's own pool)."""
    try:
        from httpx_aiohttp import AiohttpTransport

        from ._aiohttp import AiohttpSession  # imports aiohttp
    except ImportError:
        if session is not None:
            raise
        return None, None
    holder = AiohttpSession(session, _ssl_context())
    return holder, AiohttpTransport(verify=_ssl_context(), client=holder.get)


class _EndpointDoc:
    """``__doc__`` of an endpoint method: the class's own docstring on the class, the endpoint's
    description and parameters on an instance (built on first read: it imports the models)."""

    def __init__(self, class_doc: str) -> None:
        self.class_doc = class_doc

    def __get__(self, method: _EndpointMethod | None, owner: type | None = None) -> str:
        return self.class_doc if method is None else method._describe()


class _EndpointMethod:
    # The class docstring lives in _EndpointDoc, so an instance can answer with its endpoint's.
    __doc__ = _EndpointDoc(
        "``client.<python name>``: calls ``invoke(endpoint id, input, **options)``."
    )
    __slots__ = ("_invoke", "_signature", "spec")

    def __init__(self, invoke: Callable[..., Any], spec: EndpointSpec) -> None:
        self._invoke = invoke
        self.spec = spec
        self._signature: inspect.Signature | None = None

    def __call__(self, input: Arguments = None, /, **options: Any) -> Any:
        return self._invoke(self.spec.id, input, **options)

    # A descriptor, so ``inspect.isroutine`` holds and ``help()`` documents the method (its
    # signature and docstring) rather than the class. Instances live in the client's __dict__,
    # where descriptors are not bound, so this never changes what attribute access returns.
    def __get__(self, instance: object, owner: type | None = None) -> Self:
        return self

    @property
    def __name__(self) -> str:
        return self.spec.name

    @property
    def __signature__(self) -> inspect.Signature:
        """``(input=None, /, *, <call options>, <the Input model's fields>) -> <Stem>Output``."""
        if self._signature is None:
            self._signature = _endpoint_signature(self._invoke, self.spec)
        return self._signature

    def _describe(self) -> str:
        model = _built(self.spec.input_model)
        lines = [
            f"{self.spec.id} ({self.spec.category}): returns {self.spec.output_model.__name__}.",
            f"fal's page: https://fal.ai/models/{self.spec.id}",
        ]
        if model.__doc__:
            lines += ["", inspect.cleandoc(model.__doc__)]
        lines += ["", f"Pass a {model.__name__}, or its fields as keyword arguments:"]
        for name, field in model.model_fields.items():
            required = " (required)" if field.is_required() else ""
            lines.append(f"  {name}: {_type_text(field.annotation)}{required}")
            if field.description:
                lines.append("      " + " ".join(field.description.split()))
        options = ", ".join(_call_options(self._invoke))
        owner = type(getattr(self._invoke, "__self__", None)).__name__
        lines += ["", f"Call options ({options}): see {owner}.{self._invoke.__name__}()."]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<falbind method {self.spec.name} for {self.spec.id}>"


def _type_text(annotation: Any) -> str:
    text = inspect.formatannotation(annotation)
    return re.sub(r"\b[\w.]+\.(\w+)", r"\1", text)  # module paths add nothing here


def _built(model: type[RequestModel] | Any) -> Any:
    """``model`` with its field annotations resolved: generated models defer building, and a
    field whose type is defined further down its module stays a forward reference until then."""
    model.model_rebuild()
    return model


def _call_options(invoke: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword options of the client call behind an endpoint method (``run``/``subscribe``)."""
    return {
        name: option
        for name, option in inspect.signature(invoke).parameters.items()
        if option.kind is inspect.Parameter.KEYWORD_ONLY and name != "untyped"
    }


def _endpoint_signature(invoke: Callable[..., Any], spec: EndpointSpec) -> inspect.Signature:
    keyword = inspect.Parameter.KEYWORD_ONLY
    model = _built(spec.input_model)
    parameters = [
        inspect.Parameter(
            "input", inspect.Parameter.POSITIONAL_ONLY, default=None, annotation=model | None
        )
    ]
    options = _call_options(invoke)
    taken = {*options, "input"}
    parameters += options.values()
    for name, field in model.model_fields.items():
        if name in taken:
            continue  # settable through the model only, as in the typed stubs
        default = inspect.Parameter.empty if field.is_required() else field.get_default()
        parameters.append(
            inspect.Parameter(name, keyword, default=default, annotation=field.annotation)
        )
    return inspect.Signature(parameters, return_annotation=spec.output_model)


def _endpoint_names() -> list[str]:
    from falbind.models.bindings import ENDPOINTS

    return [spec.name for spec in ENDPOINTS.values()]


def _public_dir(names: Iterable[str]) -> list[str]:
    """``dir()`` of a client or queue namespace: its own attributes and every endpoint method,
    so REPL and Jupyter completion offer ``client.flux_<TAB>``."""
    return sorted({*names, *_endpoint_names()})


def _endpoint_method(owner: object, name: str, invoke: Callable[..., Any]) -> _EndpointMethod:
    if name.startswith("_"):
        raise AttributeError(f"{type(owner).__name__!r} object has no attribute {name!r}")
    from falbind.models.bindings import ENDPOINTS

    try:
        spec = ENDPOINTS.by_name(name)
    except UnknownEndpointError:
        # Only close names are worth suggesting: an unrelated endpoint would mislead.
        candidates = [
            *_endpoint_names(),
            *(n for n in dir(type(owner)) if not n.startswith("_")),
        ]
        suggestions = suggest_names(name, candidates, cutoff=_ATTRIBUTE_CUTOFF)
        message = f"{type(owner).__name__!r} object has no endpoint or attribute named {name!r}"
        if suggestions:
            message += "; did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
        raise AttributeError(message, name=name, obj=owner) from None
    return _EndpointMethod(invoke, spec)


# difflib ratio above which a name reads as a typo of another (``flux_schnel``, 0.96), not as
# an unrelated word that shares a few letters (``with_options`` -> ``wan_motion``, 0.64).
_ATTRIBUTE_CUTOFF = 0.8


class _ClientBase:
    """Configuration shared by the twins; the key never appears in ``repr``."""

    _config: ClientConfig
    _owns_http: bool
    _status_stream: bool

    def _configure(
        self,
        key: str | None,
        run_url: str | None,
        queue_url: str | None,
        storage_url: str,
        timeout: Timeout,
        retry: RetryPolicy | None,
        strict_outputs: bool,
        trusted_origins: Iterable[str] | None,
    ) -> None:
        env_run_url, env_queue_url = default_urls(DEFAULT_RUN_URL, DEFAULT_QUEUE_URL)
        run_url = env_run_url if run_url is None else run_url
        queue_url = env_queue_url if queue_url is None else queue_url
        self._config = ClientConfig(
            run_url=run_url.rstrip("/"),
            queue_url=queue_url.rstrip("/"),
            storage_url=storage_url.rstrip("/"),
            auth=resolve_key(key),
            timeout=as_timeout(timeout, DEFAULT_TIMEOUT),
            retry=retry or RetryPolicy(),
            strict_outputs=strict_outputs,
            trusted_origins=normalized_origins(trusted_origins or ()),
            key_required=key != "",
        )
        self._status_stream = True  # until a server shows it does not serve the status stream

    @property
    def retry(self) -> RetryPolicy:
        return self._config.retry

    def with_options(
        self,
        *,
        key: str | None = None,
        timeout: Timeout = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> Self:
        """A copy of this client with some settings changed, sharing its connection pool (as
        openai-python's ``with_options``): ``client.with_options(timeout=5).flux_schnell(...)``.

        Settings left out (``None``) stay as they are; ``max_retries`` changes only that field
        of the retry policy (``retry`` replaces the whole policy first). The copy never closes
        the shared pool: close the client it came from.
        """
        config = self._config
        if key is not None:
            config = dataclasses.replace(config, auth=resolve_key(key))
        if timeout is not None:
            config = dataclasses.replace(config, timeout=as_timeout(timeout, config.timeout))
        policy = retry or config.retry
        if max_retries is not None:
            policy = dataclasses.replace(policy, max_retries=max_retries)
        clone = object.__new__(type(self))
        # Every attribute is carried over (the pool included) except the endpoint methods
        # cached on first use, which call the original client.
        clone.__dict__.update(
            (name, value)
            for name, value in self.__dict__.items()
            if not isinstance(value, _EndpointMethod)
        )
        clone.__dict__.update(_config=dataclasses.replace(config, retry=policy), _owns_http=False)
        clone.__dict__["queue"] = type(self.__dict__["queue"])(clone)
        return clone

    def __dir__(self) -> Iterable[str]:
        return _public_dir(super().__dir__())

    def __repr__(self) -> str:
        key = "set" if self._config.auth is not None else "none"
        return (
            f"<{type(self).__name__} run_url={self._config.run_url!r} "
            f"queue_url={self._config.queue_url!r} key={key}>"
        )

    def _submit_call(
        self,
        endpoint_id: str,
        arguments: Arguments,
        params: dict[str, Any],
        *,
        untyped: bool,
        webhook_url: str | None,
        priority: Priority | None,
        start_timeout: float | None,
        hint: str | None,
        object_lifecycle_seconds: int | None,
        extra_body: Mapping[str, Any] | None,
        extra_headers: Mapping[str, str] | None,
    ) -> tuple[Endpoint, Call]:
        endpoint, arguments = _adapted("submit", endpoint_id, arguments, params, untyped)
        body = endpoint.build_body(arguments, params, extra_body)
        headers = self._config.option_headers(
            start_timeout=start_timeout,
            hint=hint,
            priority=priority,
            object_lifecycle_seconds=object_lifecycle_seconds,
            extra_headers=extra_headers,
        )
        return endpoint, self._config.submit_call(endpoint, body, headers, webhook_url)

    def _run_call(
        self,
        endpoint_id: str,
        arguments: Arguments,
        params: dict[str, Any],
        *,
        untyped: bool,
        start_timeout: float | None,
        hint: str | None,
        object_lifecycle_seconds: int | None,
        timeout: Timeout,
        extra_body: Mapping[str, Any] | None,
        extra_headers: Mapping[str, str] | None,
        kind: CallKind = "run",
    ) -> tuple[Endpoint, Call]:
        endpoint, arguments = _adapted(kind, endpoint_id, arguments, params, untyped)
        body = endpoint.build_body(arguments, params, extra_body)
        headers = self._config.option_headers(
            start_timeout=start_timeout,
            hint=hint,
            object_lifecycle_seconds=object_lifecycle_seconds,
            extra_headers=extra_headers,
        )
        return endpoint, self._config.run_call(endpoint, body, headers, timeout)

    def _handle_parts(self, endpoint: Endpoint, response: httpx.Response) -> tuple[str, QueueURLs]:
        data = decode_object(response)
        request_id = data.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise _no_request_id(response)
        fallback = QueueURLs.rebuilt(self._config.queue_url, endpoint.id, request_id)
        return request_id, self._config.queue_urls(response, fallback)

    def _rebuilt_urls(self, endpoint: Endpoint, request_id: str) -> QueueURLs:
        return QueueURLs.rebuilt(self._config.queue_url, endpoint.id, request_id)


def _adapted(
    kind: CallKind,
    endpoint_id: str,
    arguments: Arguments,
    params: dict[str, Any],
    untyped: bool,
) -> tuple[Endpoint, Arguments]:
    """The endpoint and arguments of a call written in fal-client's spelling (see
    :func:`~falbind.client.compat.adapt_call`); ``params`` loses the names taken."""
    try:
        endpoint = resolve_endpoint(endpoint_id, untyped=untyped)
    except UnknownEndpointError:
        if "path" not in params:
            raise
        endpoint = Endpoint(endpoint_id, None)  # the id may need fal-client's sub-path
    model = endpoint.spec.input_model if endpoint.spec is not None else None
    full_id, arguments = adapt_call(kind, endpoint.id, arguments, params, model)
    if full_id != endpoint.id:
        endpoint = resolve_endpoint(full_id, untyped=untyped)
        if endpoint.spec is not None:  # the sub-path's own model may differ
            adapt_call(kind, full_id, arguments, params, endpoint.spec.input_model)
    return endpoint, arguments


def _no_request_id(response: httpx.Response) -> FalDecodeError:
    return FalDecodeError.from_response(
        "fal's submit answer has no request_id", response, decode_object(response)
    )


class _SyncQueueNamespace(_SyncQueueMethods):
    """``client.queue.<python name>(...)``: submit to fal's queue and wait for the result."""

    def __init__(self, client: FalClient) -> None:
        self._client = client

    def __dir__(self) -> Iterable[str]:
        return _public_dir(super().__dir__())

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> _EndpointMethod:
            method = _endpoint_method(self, name, self._client.subscribe)
            self.__dict__[name] = method
            return method


class _AsyncQueueNamespace(_AsyncQueueMethods):
    """``client.queue.<python name>(...)``: submit to fal's queue and wait for the result."""

    def __init__(self, client: AsyncFalClient) -> None:
        self._client = client

    def __dir__(self) -> Iterable[str]:
        return _public_dir(super().__dir__())

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> _EndpointMethod:
            method = _endpoint_method(self, name, self._client.subscribe)
            self.__dict__[name] = method
            return method


class FalClient(_ClientBase, _SyncMethods):
    """A synchronous fal client.

    ``key`` defaults to ``FAL_KEY``, else ``FAL_KEY_ID`` + ``FAL_KEY_SECRET``, else
    ``FAL_AI_API_KEY`` (``key=""`` sends none on purpose). A key with a control or non-ASCII
    character raises :class:`~falbind.InvalidKeyError` here; with no key at all, a call to a
    non-loopback URL raises :class:`~falbind.MissingKeyError` before sending. ``timeout``
    (seconds or an ``httpx.Timeout``) applies to each HTTP request; ``run`` always has a read
    timeout. ``storage_url`` is where :meth:`upload` starts uploads. ``run_url`` and
    ``queue_url`` default to ``FAL_RUN_HOST``/``FAL_QUEUE_RUN_HOST`` when set (see
    :mod:`falbind.client.env`), else fal's. ``http_client`` (an ``httpx.Client``: your own
    proxies, TLS, limits, transport) is used as given and left open on ``close()``; without
    it, httpx's client honours ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``, and
    ``FALBIND_LOG=info|debug`` logs each request. Use it as a context manager, or call
    ``close()``.

    Outputs are decoded leniently: an answer that does not match the Output model is still
    returned as that model (``schema_mismatch`` lists the problems) with an
    :class:`~falbind.OutputSchemaWarning`; ``strict_outputs=True`` raises
    :class:`~falbind.FalDecodeError` instead. The queue URLs in fal's submit answer are
    followed only on the queue URL's origin or one of ``trusted_origins``
    (``"https://host[:port]"``); others raise :class:`~falbind.UntrustedURLError`.
    """

    def __init__(
        self,
        key: str | None = None,
        *,
        run_url: str | None = None,
        queue_url: str | None = None,
        storage_url: str = DEFAULT_STORAGE_URL,
        timeout: Timeout = None,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
        strict_outputs: bool = False,
        trusted_origins: Iterable[str] | None = None,
        default_image_model: str | None = None,
    ) -> None:
        self._configure(
            key, run_url, queue_url, storage_url, timeout, retry, strict_outputs, trusted_origins
        )
        self.default_image_model = default_image_model
        """The ``model`` of :meth:`images.generate <falbind.images.generate.Images.generate>`
        when the call names none."""
        self._owns_http = http_client is None
        if http_client is None:
            http_client = _CookielessClient(
                timeout=self._config.timeout, verify=_ssl_context(), event_hooks=log_hooks()
            )
            coalesce_writes(http_client)  # a caller's client is used as it is
        self._http = http_client
        self.queue = _SyncQueueNamespace(self)
        """Per-endpoint methods through fal's queue: ``client.queue.flux_schnell(...)``."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (unless the caller passed their own ``http_client``)."""
        if self._owns_http:
            self._http.close()

    @property
    def images(self) -> Images:
        """OpenAI-style image generation: ``client.images.generate(model=..., prompt=...)``."""
        return Images(self)

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> _EndpointMethod:
            method = _endpoint_method(self, name, self.run)
            self.__dict__[name] = method
            return method

    def run(
        self,
        endpoint_id: str,
        arguments: Arguments = None,
        /,
        *,
        untyped: bool = False,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout = None,
        start_timeout: float | None = None,
        hint: str | None = None,
        object_lifecycle_seconds: int | None = None,
        **params: Any,
    ) -> Any:
        """Call fal's sync endpoint (``POST {run_url}/{endpoint_id}``); the Output model.

        ``arguments`` (a mapping or the Input model) and ``params`` are validated against the
        endpoint's Input model before anything is sent. ``untyped=True`` skips validation for
        an id the registry does not bind: dicts in and out. ``object_lifecycle_seconds`` asks
        fal to keep the output files that many seconds (as in :meth:`submit`).
        """
        endpoint, call = self._run_call(
            endpoint_id,
            arguments,
            params,
            untyped=untyped,
            start_timeout=start_timeout,
            hint=hint,
            object_lifecycle_seconds=object_lifecycle_seconds,
            timeout=timeout,
            extra_body=extra_body,
            extra_headers=extra_headers,
        )
        return endpoint.decode_output(self._send(call), strict=self._config.strict_outputs)

    def stream(
        self,
        endpoint_id: str,
        arguments: Arguments = None,
        /,
        *,
        untyped: bool = False,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout = None,
        start_timeout: float | None = None,
        hint: str | None = None,
        **params: Any,
    ) -> FalStream[Any]:
        """Call fal's streaming endpoint (``POST {run_url}/{endpoint_id}/stream``, as
        fal-client's ``stream``); a :class:`~falbind.FalStream` that yields its server-sent
        events, each a dict (progress and partial outputs, then the final output).
        ``stream.get_final_output()`` returns the last event as the endpoint's Output model
        (decoded as :meth:`run` decodes; a dict when untyped); ``with client.stream(...) as
        stream:`` closes the response on leaving, read to its end or not.

        ``path=`` is a sub-path of the endpoint, as for :meth:`run` (fal-client's
        ``path="/stream"`` names the stream itself and changes nothing). The arguments are
        validated now, as for :meth:`run`; the request is sent when
        iteration starts. Timeouts are :meth:`run`'s (``timeout`` bounds each read), errors
        are :class:`~falbind.FalError` subclasses, and the POST is retried only when it never reached
        fal (or fal answered 429), never once the stream has started.
        """
        if params.get("path") in ("/stream", "stream"):
            del params["path"]  # fal-client's stream(path="/stream"): the stream itself
        endpoint, call = self._run_call(
            endpoint_id,
            arguments,
            params,
            untyped=untyped,
            start_timeout=start_timeout,
            hint=hint,
            object_lifecycle_seconds=None,
            timeout=timeout,
            extra_body=extra_body,
            extra_headers=extra_headers,
            kind="stream",
        )
        variant = stream_variant(call)
        return FalStream(
            endpoint,
            lambda opened: self._stream_events(variant, opened),
            strict=self._config.strict_outputs,
        )

    def _stream_events(self, call: Call, opened: Opened) -> Generator[dict[str, Any], None, None]:
        attempts = Attempts(self._config.retry, call)
        while True:
            started = False
            try:
                with self._http.stream(
                    call.method,
                    call.url,
                    content=call.content,
                    params=call.params,
                    headers=call.headers,
                    timeout=call.timeout,
                ) as response:
                    started = True
                    if response.is_success:
                        opened(response)
                    if response.is_success and is_json(response):
                        response.read()
                        yield decode_object(response)
                        return
                    if response.is_success:
                        yield from events(response, response.iter_lines())
                        return
                    response.read()
                    delay = attempts.after_response(response) or 0.0
            except httpx.TransportError as exc:
                if started:  # fal has the request: never sent twice
                    raise transport_error(exc, call) from scrub_tracebacks(exc)
                delay = attempts.after_error(exc)
            time.sleep(delay)

    def submit(
        self,
        endpoint_id: str,
        arguments: Arguments = None,
        /,
        *,
        untyped: bool = False,
        webhook_url: str | None = None,
        priority: Priority | None = None,
        start_timeout: float | None = None,
        hint: str | None = None,
        object_lifecycle_seconds: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> QueueHandle[Any]:
        """Submit to fal's queue (``POST {queue_url}/{endpoint_id}``); a handle on the request.

        ``object_lifecycle_seconds`` (> 0) asks fal to keep the output files that long
        (header ``X-Fal-Object-Lifecycle-Preference``); checked before anything is sent.
        """
        endpoint, call = self._submit_call(
            endpoint_id,
            arguments,
            params,
            untyped=untyped,
            webhook_url=webhook_url,
            priority=priority,
            start_timeout=start_timeout,
            hint=hint,
            object_lifecycle_seconds=object_lifecycle_seconds,
            extra_body=extra_body,
            extra_headers=extra_headers,
        )
        request_id, urls = self._handle_parts(endpoint, self._send(call))
        return QueueHandle(self, endpoint, request_id, urls)

    def subscribe(
        self,
        endpoint_id: str,
        arguments: Arguments = None,
        /,
        *,
        untyped: bool = False,
        on_queue_update: StatusCallback | None = None,
        on_enqueue: Callable[[str], object] | None = None,
        client_timeout: float | None = None,
        with_logs: bool = False,
        webhook_url: str | None = None,
        priority: Priority | None = None,
        start_timeout: float | None = None,
        hint: str | None = None,
        object_lifecycle_seconds: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> Any:
        """Submit to fal's queue and wait for the Output model.

        ``on_queue_update`` gets each status; ``on_enqueue`` gets the request id once fal
        accepted the request (as fal-client's). When ``client_timeout`` seconds pass first,
        the request is cancelled and :class:`~falbind.FalTimeoutError` raised.
        """
        check_client_timeout(client_timeout)
        handle = self.submit(
            endpoint_id,
            arguments,
            untyped=untyped,
            webhook_url=webhook_url,
            priority=priority,
            start_timeout=start_timeout,
            hint=hint,
            object_lifecycle_seconds=object_lifecycle_seconds,
            extra_body=extra_body,
            extra_headers=extra_headers,
            **params,
        )
        if on_enqueue is not None:
            on_enqueue(handle.request_id)
        return handle._wait(
            with_logs=with_logs, on_queue_update=on_queue_update, client_timeout=client_timeout
        )

    def get_handle(
        self, endpoint_id: str, request_id: str, *, untyped: bool = False
    ) -> QueueHandle[Any]:
        """A handle on a request submitted earlier, from its stored ``request_id``."""
        endpoint = resolve_endpoint(endpoint_id, untyped=untyped)
        return QueueHandle(self, endpoint, request_id, self._rebuilt_urls(endpoint, request_id))

    def upload(
        self,
        data: bytes | str | os.PathLike[str],
        *,
        content_type: str | None = None,
        file_name: str | None = None,
    ) -> str:
        """Upload ``data`` (bytes, or a path to read) to fal storage; the file's URL, usable as
        any ``*_url`` input.

        A path's content type is guessed from its suffix and its name sent as the file name;
        bytes are ``application/octet-stream``. ``content_type`` and ``file_name`` override.
        Initiated with ``POST {storage_url}/storage/upload/initiate`` (retried only on 429 or
        when it never reached fal), then the bytes are PUT to the pre-signed URL fal returned
        (retried like a GET).
        """
        upload = Upload.of(data, content_type=content_type, file_name=file_name)
        target = decode_upload_target(self._send(self._config.upload_initiate_call(upload)))
        self._send(self._config.upload_put_call(upload, target))
        return target.file_url

    def upload_file(self, path: str | os.PathLike[str]) -> str:
        """fal-client's ``upload_file``: :meth:`upload` of the file at ``path``; its URL."""
        return self.upload(Path(path))

    def upload_image(self, image: Any, format: str = "jpeg") -> str:
        """fal-client's ``upload_image``: a PIL image saved as ``format`` (default JPEG) and
        uploaded; its URL. Needs Pillow (imported only here)."""
        data, content_type = image_bytes(image, format)
        return self.upload(data, content_type=content_type, file_name=f"image.{format.lower()}")

    @overload
    def download(
        self,
        source: object,
        *,
        path: None = None,
        expected_type: str | None = None,
        timeout: Timeout = None,
    ) -> bytes: ...

    @overload
    def download(
        self,
        source: object,
        *,
        path: str | os.PathLike[str],
        expected_type: str | None = None,
        timeout: Timeout = None,
    ) -> Path: ...

    def download(
        self,
        source: object,
        *,
        path: str | os.PathLike[str] | None = None,
        expected_type: str | None = None,
        timeout: Timeout = None,
    ) -> bytes | Path:
        """The bytes of an output file (a URL, data URI, mapping or File/Image model), or the
        path they were saved to when ``path`` is given.

        Fails on a non-2xx status, and when ``expected_type`` (e.g. ``"image/"``) does not
        prefix the content type. ``data:`` URIs are decoded without HTTP.
        """
        url = file_url(source)
        if url.startswith("data:"):
            data, content_type = decode_data_uri(url)
        else:
            response = self._send(self._config.download_call(url, timeout))
            data, content_type = response.content, response.headers.get("content-type", "")
        return finish_download(data, content_type, url, expected_type, path)

    def _open_stream(self, call: Call) -> AbstractContextManager[httpx.Response]:
        """``call`` (a queued job's status stream) opened, its URL parsed once (see
        :func:`_request_url`); the body is read as it arrives."""
        url, params = _request_url(call, self._http.params)
        return self._http.stream(
            call.method, url, params=params, headers=call.headers, timeout=call.timeout
        )

    def _send(self, call: Call) -> httpx.Response:
        attempts = Attempts(self._config.retry, call)
        url, params = _request_url(call, self._http.params)
        # Built once, sent on every attempt (its body is bytes, so it can be sent again).
        request = self._http.build_request(
            call.method,
            url,
            content=call.content,
            params=params,
            headers=call.headers,
            timeout=call.timeout,
        )
        while True:
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                delay = attempts.after_error(exc)
            else:
                retry_in = attempts.after_response(response)
                if retry_in is None:
                    return response
                delay = retry_in
            time.sleep(delay)


class AsyncFalClient(_ClientBase, _AsyncMethods):
    """An asyncio fal client; the twin of :class:`FalClient` (every call is awaited).

    Without ``http_client`` it sends its requests over an aiohttp session directly (several
    times faster under concurrency than httpx's pool, and than httpx over aiohttp):
    ``aiohttp_session`` is used if given (and never closed), else one is created on first use.
    A caller's ``http_client`` (an ``httpx.AsyncClient``) is used through httpx instead, and
    left open on ``aclose()``.
    Both paths honour ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``. With ``FALBIND_LOG`` set,
    requests go through httpx (over the same aiohttp session), whose hooks log them.
    """

    def __init__(
        self,
        key: str | None = None,
        *,
        run_url: str | None = None,
        queue_url: str | None = None,
        storage_url: str = DEFAULT_STORAGE_URL,
        timeout: Timeout = None,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
        strict_outputs: bool = False,
        trusted_origins: Iterable[str] | None = None,
        default_image_model: str | None = None,
        aiohttp_session: aiohttp.ClientSession | None = None,
    ) -> None:
        if http_client is not None and aiohttp_session is not None:
            raise ValueError("pass http_client= or aiohttp_session=, not both")
        self._configure(
            key, run_url, queue_url, storage_url, timeout, retry, strict_outputs, trusted_origins
        )
        self.default_image_model = default_image_model
        """The ``model`` of :meth:`images.generate <falbind.images.generate.Images.generate>`
        when the call names none."""
        self._owns_http = http_client is None and aiohttp_session is None
        self._aiohttp: AiohttpSession | None = None
        hooks = async_log_hooks()
        if http_client is not None:
            self._http = http_client
        else:
            self._aiohttp, transport = _direct_session(aiohttp_session)
            self._http = _CookielessAsyncClient(
                timeout=self._config.timeout,
                verify=_ssl_context(),
                transport=transport,
                event_hooks=hooks,
            )
        # Requests go over the aiohttp session directly, unless FALBIND_LOG asks for logging:
        # then through httpx (over the same session), whose event hooks log them.
        self._direct = None if hooks else self._aiohttp
        if self._aiohttp is not None:
            # httpx's default headers: the direct aiohttp path sends the same ones.
            self._aiohttp.set_base_headers(self._http.headers)
        self.queue = _AsyncQueueNamespace(self)
        """Per-endpoint methods through fal's queue: ``await client.queue.flux_schnell(...)``."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (unless the caller passed their own ``http_client``)."""
        if self._owns_http:
            await self._http.aclose()
            if self._aiohttp is not None:
                await self._aiohttp.close()

    @property
    def images(self) -> AsyncImages:
        """OpenAI-style image generation: ``await client.images.generate(model=..., ...)``."""
        return AsyncImages(self)

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> _EndpointMethod:
            method = _endpoint_method(self, name, self.run)
            self.__dict__[name] = method
            return method

    async def run(
        self,
        endpoint_id: str,
        arguments: Arguments = None,
        /,
        *,
        untyped: bool = False,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout = None,
        start_timeout: float | None = None,
        hint: str | None = None,
        object_lifecycle_seconds: int | None = None,
        **params: Any,
    ) -> Any:
        """Call fal's sync endpoint; see :meth:`FalClient.run`."""
        endpoint, call = self._run_call(
            endpoint_id,
            arguments,
            params,
            untyped=untyped,
            start_timeout=start_timeout,
            hint=hint,
            object_lifecycle_seconds=object_lifecycle_seconds,
            timeout=timeout,
            extra_body=extra_body,
            extra_headers=extra_headers,
        )
        return endpoint.decode_output(await self._send(call), strict=self._config.strict_outputs)

    def stream(
        self,
        endpoint_id: str,
        arguments: Arguments = None,
        /,
        *,
        untyped: bool = False,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout = None,
        start_timeout: float | None = None,
        hint: str | None = None,
        **params: Any,
    ) -> AsyncFalStream[Any]:
        """fal's streaming endpoint as an :class:`~falbind.AsyncFalStream` of event dicts
        (``async for event in client.stream(...)``, ``await stream.get_final_output()``); see
        :meth:`FalClient.stream`."""
        if params.get("path") in ("/stream", "stream"):
            del params["path"]  # fal-client's stream(path="/stream"): the stream itself
        endpoint, call = self._run_call(
            endpoint_id,
            arguments,
            params,
            untyped=untyped,
            start_timeout=start_timeout,
            hint=hint,
            object_lifecycle_seconds=None,
            timeout=timeout,
            extra_body=extra_body,
            extra_headers=extra_headers,
            kind="stream",
        )
        variant = stream_variant(call)
        return AsyncFalStream(
            endpoint,
            lambda opened: self._stream_events(variant, opened),
            strict=self._config.strict_outputs,
        )

    async def _stream_events(
        self, call: Call, opened: Opened
    ) -> AsyncGenerator[dict[str, Any], None]:
        attempts = Attempts(self._config.retry, call)
        while True:
            started = False
            try:
                async with self._http.stream(
                    call.method,
                    call.url,
                    content=call.content,
                    params=call.params,
                    headers=call.headers,
                    timeout=call.timeout,
                ) as response:
                    started = True
                    if response.is_success:
                        opened(response)
                    if response.is_success and is_json(response):
                        await response.aread()
                        yield decode_object(response)
                        return
                    if response.is_success:
                        async for event in aevents(response, response.aiter_lines()):
                            yield event
                        return
                    await response.aread()
                    delay = attempts.after_response(response) or 0.0
            except Exception as exc:
                # aiohttp's own errors can escape its transport unwrapped (see _send).
                error = as_transport_error(exc)
                if error is None:
                    raise
                if started:  # fal has the request: never sent twice
                    raise transport_error(error, call) from scrub_tracebacks(error)
                delay = attempts.after_error(error)
            await asyncio.sleep(delay)

    async def submit(
        self,
        endpoint_id: str,
        arguments: Arguments = None,
        /,
        *,
        untyped: bool = False,
        webhook_url: str | None = None,
        priority: Priority | None = None,
        start_timeout: float | None = None,
        hint: str | None = None,
        object_lifecycle_seconds: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> AsyncQueueHandle[Any]:
        """Submit to fal's queue; see :meth:`FalClient.submit`."""
        endpoint, call = self._submit_call(
            endpoint_id,
            arguments,
            params,
            untyped=untyped,
            webhook_url=webhook_url,
            priority=priority,
            start_timeout=start_timeout,
            hint=hint,
            object_lifecycle_seconds=object_lifecycle_seconds,
            extra_body=extra_body,
            extra_headers=extra_headers,
        )
        request_id, urls = self._handle_parts(endpoint, await self._send(call))
        return AsyncQueueHandle(self, endpoint, request_id, urls)

    async def subscribe(
        self,
        endpoint_id: str,
        arguments: Arguments = None,
        /,
        *,
        untyped: bool = False,
        on_queue_update: AsyncStatusCallback | None = None,
        on_enqueue: Callable[[str], object] | None = None,
        client_timeout: float | None = None,
        with_logs: bool = False,
        webhook_url: str | None = None,
        priority: Priority | None = None,
        start_timeout: float | None = None,
        hint: str | None = None,
        object_lifecycle_seconds: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> Any:
        """Submit and wait; see :meth:`FalClient.subscribe` (``on_queue_update`` may be async)."""
        check_client_timeout(client_timeout)
        handle = await self.submit(
            endpoint_id,
            arguments,
            untyped=untyped,
            webhook_url=webhook_url,
            priority=priority,
            start_timeout=start_timeout,
            hint=hint,
            object_lifecycle_seconds=object_lifecycle_seconds,
            extra_body=extra_body,
            extra_headers=extra_headers,
            **params,
        )
        if on_enqueue is not None:
            called = on_enqueue(handle.request_id)
            if inspect.isawaitable(called):
                await called
        return await handle._wait(
            with_logs=with_logs, on_queue_update=on_queue_update, client_timeout=client_timeout
        )

    def get_handle(
        self, endpoint_id: str, request_id: str, *, untyped: bool = False
    ) -> AsyncQueueHandle[Any]:
        """A handle on a request submitted earlier, from its stored ``request_id``."""
        endpoint = resolve_endpoint(endpoint_id, untyped=untyped)
        return AsyncQueueHandle(
            self, endpoint, request_id, self._rebuilt_urls(endpoint, request_id)
        )

    async def upload(
        self,
        data: bytes | str | os.PathLike[str],
        *,
        content_type: str | None = None,
        file_name: str | None = None,
    ) -> str:
        """Upload ``data`` to fal storage; the file's URL. See :meth:`FalClient.upload`."""
        upload = Upload.of(data, content_type=content_type, file_name=file_name)
        target = decode_upload_target(await self._send(self._config.upload_initiate_call(upload)))
        await self._send(self._config.upload_put_call(upload, target))
        return target.file_url

    async def upload_file(self, path: str | os.PathLike[str]) -> str:
        """fal-client's ``upload_file``; see :meth:`FalClient.upload_file`."""
        return await self.upload(Path(path))

    async def upload_image(self, image: Any, format: str = "jpeg") -> str:
        """fal-client's ``upload_image``; see :meth:`FalClient.upload_image`."""
        data, content_type = image_bytes(image, format)
        return await self.upload(
            data, content_type=content_type, file_name=f"image.{format.lower()}"
        )

    @overload
    async def download(
        self,
        source: object,
        *,
        path: None = None,
        expected_type: str | None = None,
        timeout: Timeout = None,
    ) -> bytes: ...

    @overload
    async def download(
        self,
        source: object,
        *,
        path: str | os.PathLike[str],
        expected_type: str | None = None,
        timeout: Timeout = None,
    ) -> Path: ...

    async def download(
        self,
        source: object,
        *,
        path: str | os.PathLike[str] | None = None,
        expected_type: str | None = None,
        timeout: Timeout = None,
    ) -> bytes | Path:
        """The bytes of an output file, or the path they were saved to; see
        :meth:`FalClient.download`."""
        url = file_url(source)
        if url.startswith("data:"):
            data, content_type = decode_data_uri(url)
        else:
            response = await self._send(self._config.download_call(url, timeout))
            data, content_type = response.content, response.headers.get("content-type", "")
        return finish_download(data, content_type, url, expected_type, path)

    def _open_stream(self, call: Call) -> AbstractAsyncContextManager[httpx.Response]:
        """``call`` (a queued job's status stream) opened: over the aiohttp session directly,
        like :meth:`_send`, else through httpx. The body is read as it arrives."""
        direct = self._direct
        if direct is None:
            url, params = _request_url(call, self._http.params)
            return self._http.stream(
                call.method, url, params=params, headers=call.headers, timeout=call.timeout
            )
        where, headers = direct.prepare(call)
        return direct.stream(call, where, headers)

    async def _send(self, call: Call) -> httpx.Response:
        attempts = Attempts(self._config.retry, call)
        direct = self._direct
        if direct is not None:
            where, headers = direct.prepare(call)
        else:
            url, params = _request_url(call, self._http.params)
        while True:
            try:
                if direct is not None:
                    response = await direct.send(call, where, headers)
                else:
                    response = await self._http.request(
                        call.method,
                        url,
                        content=call.content,
                        params=params,
                        headers=call.headers,
                        timeout=call.timeout,
                    )
            except Exception as exc:
                # aiohttp's own errors (a payload error, a disconnect, an answer that is not
                # HTTP) can escape the aiohttp transport unwrapped: they are transport errors
                # too, classified and retried exactly as httpx's.
                error = as_transport_error(exc)
                if error is None:
                    raise
                delay = attempts.after_error(error)
            else:
                retry_in = attempts.after_response(response)
                if retry_in is None:
                    return response
                delay = retry_in
            await asyncio.sleep(delay)
