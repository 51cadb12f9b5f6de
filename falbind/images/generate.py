"""OpenAI-style image generation over any bound fal endpoint: ``client.images.generate(...)``.

Every decision is made here, without I/O, from the endpoint's schema plus the registry's size
data (``falbind.models.bindings.sizes``), never from per-model code:

- ``model``: an endpoint id, the same id with LiteLLM's ``fal_ai/`` prefix, or a registry alias;
- ``size``: :func:`~.sizing.plan_for` (exact ``{width, height}``, nearest preset or nearest
  aspect ratio); a size parameter the caller passes explicitly (``image_size=``,
  ``aspect_ratio=``) wins, and the notes say so;
- ``n``: the model's count field (the first of ``COUNT_FIELDS`` it has), split over several
  requests when ``n`` exceeds the field's maximum; without a count field, ``n`` requests;
- ``response_format="b64_json"``: the model's ``sync_mode`` field when it has one (fal answers
  with ``data:`` URIs, decoded locally), else each image is downloaded;
- model-specific keyword arguments are validated against the model's Input model, so an
  unknown one fails before any request is sent.

:func:`plan_images` builds an :class:`ImagesJob` (the validated request bodies);
:class:`Images` and :class:`AsyncImages` only send them (``run`` or ``subscribe``) and
download, and :meth:`ImagesJob.response` turns fal's outputs into an :class:`ImagesResponse`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field, SerializeAsAny, ValidationError

from falbind.client.compat import check_misplaced
from falbind.client.errors import InvalidArgumentsError, InvalidArgumentTypeError
from falbind.client.files import decode_data_uri, sniff_content_type
from falbind.models.base import field_names, field_schemas
from falbind.models.index import UnknownEndpointError

from .openai_params import OpenAIParamsPolicy, map_openai_params
from .sizing import SizePlan, plan_for

__all__ = [
    "AsyncImages",
    "ImageData",
    "Images",
    "ImagesJob",
    "ImagesResponse",
    "ModelTraits",
    "SizeInfo",
    "model_traits",
    "plan_images",
    "resolve_model",
]

ResponseFormat = Literal["url", "b64_json"]
LITELLM_PREFIX: Final = "fal_ai/"
"""LiteLLM's provider prefix (``fal_ai/fal-ai/flux/dev``), accepted and stripped."""
OUTPUT_IMAGE_FIELDS: Final = ("images", "image")
"""Output fields holding the generated images: a list of files, or one file."""
REVISED_PROMPT_FIELDS: Final = ("revised_prompt", "prompt")
"""Output fields holding the prompt the model actually used."""
SEED_FIELD: Final = "seed"

T = TypeVar("T")


class ImageData(BaseModel):
    """One generated image, as OpenAI's ``images.generate`` returns it (plus its file facts)."""

    url: str | None = None
    """The image's URL (a ``data:`` URI when fal answered in sync mode); ``None`` for b64_json."""
    b64_json: str | None = None
    """The image bytes, base64-encoded; only for ``response_format="b64_json"``."""
    revised_prompt: str | None = None
    """The prompt the model used, when its output reports one."""
    content_type: str | None = None
    width: int | None = None
    height: int | None = None


class SizeInfo(BaseModel):
    """What became of the requested ``size``."""

    requested: str | None
    """The ``size`` argument (``None`` when not given)."""
    delivered: str
    """E.g. ``"1792x1024"``, ``"landscape_16_9 (1024x576)"``, ``"aspect ratio 16:9"``,
    ``"model default"``, or the size parameter the caller gave explicitly."""
    size_adjusted: bool
    """True when the model cannot deliver ``requested`` exactly; ``notes`` say what it gets."""
    parameters: dict[str, Any]
    """The size fields sent to fal (empty: the model's default)."""
    notes: list[str] = Field(default_factory=list)


class ImagesResponse(BaseModel):
    """OpenAI's image response shape (``created``, ``data``) plus what fal returned.

    ``outputs`` holds the endpoint's typed Output models (seed, NSFW flags, timings), one per
    request made; ``notes`` reports anything that is not exactly what was asked for besides
    the size (fewer images than ``n``, several requests).
    """

    created: int
    data: list[ImageData]
    model: str
    """The endpoint id that ran."""
    size: SizeInfo
    notes: list[str] = Field(default_factory=list)
    outputs: list[SerializeAsAny[BaseModel]]


@dataclass(frozen=True, slots=True)
class ModelTraits:
    """What image generation needs to know about one endpoint, read from its schema."""

    endpoint_id: str
    input_model: type[BaseModel]
    count_field: str | None
    """The field taking the number of images (``num_images``), if the model has one."""
    count_max: int | None
    """The count field's upper bound, if the schema sets one."""
    count_default: int
    """How many images a request produces when it does not send the count field: the
    field's schema default, else 1."""
    sync_mode_field: str | None
    """The field that makes fal answer with ``data:`` URIs (``sync_mode``), if any."""
    size_fields: tuple[str, ...]
    """The model's own size parameters (``image_size``, ``aspect_ratio``) among the registry's."""


def resolve_model(model: str) -> str:
    """The bound endpoint id for ``model``: an id, ``fal_ai/<id>`` or a registry alias.

    Raises :class:`~falbind.UnknownEndpointError` (with a did-you-mean) for an unbound id, and
    ``ValueError`` for an endpoint whose output has no images.
    """
    from falbind.models.bindings import ENDPOINTS

    try:
        endpoint_id = ENDPOINTS.resolve(model.removeprefix(LITELLM_PREFIX)).id
    except UnknownEndpointError as error:
        raise UnknownEndpointError(model, error.suggestions) from None  # name what was passed
    output_fields = set(field_names(ENDPOINTS[endpoint_id].output_model))
    if not output_fields & set(OUTPUT_IMAGE_FIELDS):
        raise InvalidArgumentsError.because(
            "model",
            f"{endpoint_id} returns no images (its output has none of the fields "
            f"{', '.join(OUTPUT_IMAGE_FIELDS)}); call client.run({endpoint_id!r}, ...) instead",
        )
    return endpoint_id


@functools.lru_cache(maxsize=512)
def model_traits(endpoint_id: str) -> ModelTraits:
    """The :class:`ModelTraits` of a bound endpoint (cached: schemas do not change at run time)."""
    from falbind.models.bindings import ENDPOINTS, sizes as _sizes

    model = ENDPOINTS[endpoint_id].input_model
    properties = field_schemas(model)
    count_field = _first_present(_sizes.COUNT_FIELDS, properties)
    return ModelTraits(
        endpoint_id=endpoint_id,
        input_model=model,
        count_field=count_field,
        count_max=_upper_bound(properties[count_field]) if count_field else None,
        count_default=_default_count(properties[count_field]) if count_field else 1,
        sync_mode_field=_first_present(_sizes.SYNC_MODE_FIELDS, properties),
        size_fields=tuple(
            name
            for name in (*_sizes.SIZE_FIELDS, *_sizes.ASPECT_RATIO_FIELDS)
            if name in properties
        ),
    )


def _first_present(names: Iterable[str], properties: Mapping[str, Any]) -> str | None:
    return next((name for name in names if name in properties), None)


def _default_count(schema: Mapping[str, Any]) -> int:
    default = schema.get("default")
    if isinstance(default, int) and not isinstance(default, bool) and default >= 1:
        return default
    return 1


def _upper_bound(schema: Mapping[str, Any]) -> int | None:
    """The largest integer ``schema`` allows (looking into ``anyOf`` members), if bounded."""
    bounds: list[int] = []
    for member in (schema, *schema.get("anyOf", ()), *schema.get("oneOf", ())):
        if "maximum" in member:
            bounds.append(int(member["maximum"]))
        if "exclusiveMaximum" in member:
            bounds.append(int(member["exclusiveMaximum"]) - 1)
    return min(bounds) if bounds else None


@dataclass(frozen=True, slots=True)
class FoundImage:
    """An image found in a fal output."""

    url: str
    content_type: str | None
    width: int | None
    height: int | None
    revised_prompt: str | None


@dataclass(frozen=True, slots=True)
class ImagesJob:
    """The validated requests for one ``images.generate`` call, and how to read the answers."""

    endpoint_id: str
    n: int
    response_format: ResponseFormat
    bodies: tuple[dict[str, Any], ...]
    """One request body per request to make, each validated against the Input model."""
    size: SizeInfo
    notes: tuple[str, ...] = ()
    images_per_body: tuple[int, ...] = ()
    """How many images each body asks for: its count field, else the model's default for it
    (1 for a model without one)."""

    @property
    def expected_images(self) -> int:
        """How many images the requests will produce (what a price per image is paid for)."""
        return sum(self.images_per_body) if self.images_per_body else len(self.bodies)

    def found_images(self, outputs: Sequence[Any]) -> list[FoundImage]:
        """Every image in ``outputs``, in order."""
        return [image for output in outputs for image in _images_of(output)]

    def downloads(self, outputs: Sequence[Any]) -> list[str]:
        """The URLs to download, each once: for ``b64_json``, the images that are not
        ``data:`` URIs."""
        if self.response_format != "b64_json":
            return []
        urls = (i.url for i in self.found_images(outputs) if not i.url.startswith("data:"))
        return list(dict.fromkeys(urls))

    def response(
        self, outputs: Sequence[BaseModel], downloaded: Mapping[str, bytes]
    ) -> ImagesResponse:
        """The :class:`ImagesResponse` for fal's ``outputs`` (one per body) and the bytes of
        :meth:`downloads`, by URL."""
        images = self.found_images(outputs)
        data = [self._image_data(image, downloaded) for image in images]
        return ImagesResponse(
            created=int(time.time()),
            data=data,
            model=self.endpoint_id,
            size=self.size,
            notes=[*self.notes, *self._count_notes(len(images))],
            outputs=list(outputs),
        )

    def _image_data(self, image: FoundImage, downloaded: Mapping[str, bytes]) -> ImageData:
        facts = {
            "revised_prompt": image.revised_prompt,
            "content_type": image.content_type,
            "width": image.width,
            "height": image.height,
        }
        if self.response_format == "url":
            return ImageData(url=image.url, **facts)
        if image.url.startswith("data:"):
            raw, content_type = decode_data_uri(image.url)
        else:
            raw, content_type = downloaded[image.url], ""
        facts["content_type"] = image.content_type or content_type or sniff_content_type(raw)
        return ImageData(b64_json=base64.b64encode(raw).decode("ascii"), **facts)

    def _count_notes(self, count: int) -> list[str]:
        if count == self.n:
            return []
        requests = f"{len(self.bodies)} request(s)"
        if count < self.n:
            return [
                f"asked for {self.n} image(s), {self.endpoint_id} returned {count} over "
                f"{requests} (images may have been withheld, e.g. by the safety checker)"
            ]
        return [f"asked for {self.n} image(s), {self.endpoint_id} returned {count}; all are kept"]


def _field(source: Any, name: str) -> Any:
    """``source[name]`` for a mapping, else ``source.name`` (``None`` when missing)."""
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def _optional(value: Any, kind: type[T]) -> T | None:
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def _images_of(output: Any) -> list[FoundImage]:
    """The files with a ``url`` in the output's ``images`` list, else in its ``image`` field
    (some outputs have both, one of them empty)."""
    revised = next(
        (v for f in REVISED_PROMPT_FIELDS if isinstance(v := _field(output, f), str)), None
    )
    for name in OUTPUT_IMAGE_FIELDS:
        found = [
            _found_image(file, url, revised)
            for file in _as_list(_field(output, name))
            if isinstance(url := _field(file, "url"), str) and url
        ]
        if found:
            return found
    return []


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _found_image(file: Any, url: str, revised_prompt: str | None) -> FoundImage:
    return FoundImage(
        url=url,
        content_type=_optional(_field(file, "content_type"), str),
        width=_optional(_field(file, "width"), int),
        height=_optional(_field(file, "height"), int),
        revised_prompt=revised_prompt,
    )


def plan_images(
    *,
    model: str,
    prompt: str,
    n: int = 1,
    size: str | None = None,
    response_format: ResponseFormat = "url",
    strict_size: bool = False,
    model_params: Mapping[str, Any] | None = None,
    openai_args: Mapping[str, Any] | None = None,
    openai_params: OpenAIParamsPolicy = "strict",
) -> ImagesJob:
    """The requests for one ``images.generate`` call, every body validated; no I/O.

    ``openai_args`` are OpenAI's own arguments (``quality``, ``style``, ``background``,
    ``output_format``, ``output_compression``), mapped onto the model's fields or handled by
    the ``openai_params`` policy (see :mod:`.openai_params`).

    Raises ``ValueError`` for a bad ``n`` or ``response_format``,
    :class:`~falbind.UnknownEndpointError`, :class:`~falbind.SizeError` (``strict_size``) and
    :class:`~falbind.InvalidArgumentsError` (e.g. an unknown model parameter) before anything is
    sent.
    """
    if response_format not in ("url", "b64_json"):
        raise InvalidArgumentsError.because(
            "response_format",
            f"response_format must be 'url' or 'b64_json', not {response_format!r}",
            response_format,
        )
    endpoint_id = resolve_model(model)
    traits = model_traits(endpoint_id)
    params = dict(model_params or {})
    check_misplaced("images", endpoint_id, params, traits.input_model.model_fields)
    mapped, openai_notes = map_openai_params(
        endpoint_id, traits.input_model, openai_args or {}, openai_params
    )
    params.update(mapped)
    n = _image_count(n, params, traits)
    size_info = _size_info(endpoint_id, size, params, traits, strict_size)
    base: dict[str, Any] = {"prompt": prompt, **size_info.parameters, **params}
    if (
        response_format == "b64_json"
        and traits.sync_mode_field
        and traits.sync_mode_field not in params
    ):
        base[traits.sync_mode_field] = True
    bodies = tuple(_bodies(base, n, traits))
    for body in bodies:
        try:
            traits.input_model.model_validate(body)
        except ValidationError as exc:
            raise InvalidArgumentsError.of(exc, endpoint_id) from exc
    return ImagesJob(
        endpoint_id=endpoint_id,
        n=n,
        response_format=response_format,
        bodies=bodies,
        size=size_info,
        notes=(*openai_notes, *_request_notes(endpoint_id, n, bodies, traits, params)),
        images_per_body=tuple(_images_asked(body, traits) for body in bodies),
    )


def _images_asked(body: Mapping[str, Any], traits: ModelTraits) -> int:
    if traits.count_field is None:
        return 1
    count = body.get(traits.count_field, traits.count_default)
    return count if isinstance(count, int) and not isinstance(count, bool) else 1


def _image_count(n: int, params: dict[str, Any], traits: ModelTraits) -> int:
    """``n``, or the model's count field when passed as a model parameter (Pipecat's
    ``num_images``); both given and different is an error."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidArgumentsError.because("n", f"n must be a positive integer, not {n!r}", n)
    field = traits.count_field
    if field is None or field not in params:
        return n
    given = params.pop(field)
    if isinstance(given, bool) or not isinstance(given, int) or given < 1:
        raise InvalidArgumentsError.because(
            field, f"{field} must be a positive integer, not {given!r}", given
        )
    if n not in (1, given):
        raise InvalidArgumentTypeError.because(
            field, f"n={n} and {field}={given} disagree; pass one of them", given
        )
    return given


def _size_info(
    endpoint_id: str,
    size: str | None,
    params: Mapping[str, Any],
    traits: ModelTraits,
    strict: bool,
) -> SizeInfo:
    """The size to send: the caller's explicit size parameter, else ``size`` mapped by
    :func:`plan_for` (which raises ``SizeError`` under ``strict``), else nothing."""
    explicit = {name: params[name] for name in traits.size_fields if name in params}
    if explicit:
        delivered = ", ".join(f"{k}={v!r}" for k, v in explicit.items()) + " (given explicitly)"
        notes = []
        if size is not None:
            names = " and ".join(explicit)
            notes.append(f"{names} given explicitly wins over size={size!r}, which was not mapped")
        return SizeInfo(
            requested=size,
            delivered=delivered,
            size_adjusted=False,
            parameters=explicit,
            notes=notes,
        )
    if size is None:
        return SizeInfo(
            requested=None, delivered="model default", size_adjusted=False, parameters={}
        )
    return _from_plan(plan_for(endpoint_id, size, strict=strict))


def _from_plan(plan: SizePlan) -> SizeInfo:
    return SizeInfo(
        requested=plan.requested,
        delivered=plan.delivered,
        size_adjusted=plan.adjusted,
        parameters=dict(plan.params),
        notes=[plan.note] if plan.adjusted and plan.note else [],
    )


def _batches(n: int, maximum: int | None) -> list[int]:
    """``n`` split into counts of at most ``maximum`` (``[4, 2]`` for 6 and 4)."""
    if maximum is None or maximum < 1 or n <= maximum:
        return [n]
    return [maximum] * (n // maximum) + ([n % maximum] if n % maximum else [])


def _bodies(base: dict[str, Any], n: int, traits: ModelTraits) -> list[dict[str, Any]]:
    if traits.count_field is None:
        return [dict(base) for _ in range(n)]
    return [{**base, traits.count_field: count} for count in _batches(n, traits.count_max)]


def _request_notes(
    endpoint_id: str,
    n: int,
    bodies: Sequence[Mapping[str, Any]],
    traits: ModelTraits,
    params: Mapping[str, Any],
) -> list[str]:
    if len(bodies) == 1:
        return []
    if traits.count_field is None:
        notes = [f"{endpoint_id} has no image-count field: made {n} requests of one image each"]
    else:
        counts = " + ".join(str(body[traits.count_field]) for body in bodies)
        notes = [
            f"n={n} exceeds {endpoint_id}'s {traits.count_field} maximum of "
            f"{traits.count_max}: made {len(bodies)} requests ({counts})"
        ]
    if SEED_FIELD in params:
        notes.append(
            f"{SEED_FIELD}={params[SEED_FIELD]!r} was sent with each of the {len(bodies)} "
            "requests, so their images may repeat"
        )
    return notes


class SyncImageBackend(Protocol):
    """What ``client.images`` needs of a :class:`~falbind.FalClient` (a protocol, so this module
    does not import the client that owns it)."""

    default_image_model: str | None

    def run(
        self,
        endpoint_id: str,
        arguments: Mapping[str, Any] | None = None,
        /,
        *,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any: ...

    def subscribe(
        self,
        endpoint_id: str,
        arguments: Mapping[str, Any] | None = None,
        /,
        *,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        client_timeout: float | None = None,
    ) -> Any: ...

    def download(self, source: object, *, expected_type: str | None = None) -> bytes: ...


class AsyncImageBackend(Protocol):
    """What ``client.images`` needs of an :class:`~falbind.AsyncFalClient`."""

    default_image_model: str | None

    async def run(
        self,
        endpoint_id: str,
        arguments: Mapping[str, Any] | None = None,
        /,
        *,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any: ...

    async def subscribe(
        self,
        endpoint_id: str,
        arguments: Mapping[str, Any] | None = None,
        /,
        *,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        client_timeout: float | None = None,
    ) -> Any: ...

    async def download(self, source: object, *, expected_type: str | None = None) -> bytes: ...


def _model(model: str | None, default: str | None) -> str:
    """``model``, else the client's ``default_image_model``."""
    chosen = model if model is not None else default
    if chosen is None:
        raise InvalidArgumentTypeError.because(
            "model",
            "images.generate() needs model= (an endpoint id or alias), or a client created "
            "with default_image_model=",
        )
    return chosen


class Images:
    """``client.images`` on a :class:`~falbind.FalClient`: OpenAI-style image generation."""

    def __init__(self, client: SyncImageBackend) -> None:
        self._client = client

    def generate(
        self,
        *,
        model: str | None = None,
        prompt: str,
        n: int = 1,
        size: str | None = None,
        response_format: ResponseFormat = "url",
        quality: str | None = None,
        style: str | None = None,
        background: str | None = None,
        output_format: str | None = None,
        output_compression: int | None = None,
        user: str | None = None,
        timeout: float | None = None,
        openai_params: OpenAIParamsPolicy = "strict",
        strict_size: bool = False,
        use_queue: bool = False,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        **model_params: Any,
    ) -> ImagesResponse:
        """Generate ``n`` images of ``prompt`` with ``model``; see the module docstring.

        ``size`` is ``"WIDTHxHEIGHT"`` or ``"auto"``; ``strict_size=True`` raises
        :class:`~falbind.SizeError` instead of adjusting it. A size parameter given
        explicitly (``image_size=``, ``aspect_ratio=``) wins over ``size``, with a note.
        ``n`` uses the model's count field (several requests past its maximum), else makes
        ``n`` requests. ``model_params`` are the model's own parameters (``seed=``,
        ``num_inference_steps=``, ...), validated before sending; ``extra_body`` is sent
        unvalidated. Requests go to fal's sync endpoint, or through the queue with
        ``use_queue=True``; they are made one after another.

        OpenAI's own arguments are accepted: ``model`` defaults to the client's
        ``default_image_model``; ``quality``, ``style``, ``background``, ``output_format`` and
        ``output_compression`` go to the model's field of that meaning, else follow
        ``openai_params`` (``"strict"``: refused with the reason; ``"drop"``: dropped and
        reported in ``notes``; see :mod:`falbind.images.openai_params`); ``user`` is
        accepted and not sent to fal; ``timeout`` (seconds) bounds each request: ``run``'s
        ``timeout``, or ``subscribe``'s ``client_timeout`` with ``use_queue=True``.
        """
        job = plan_images(
            model=_model(model, self._client.default_image_model),
            prompt=prompt,
            n=n,
            size=size,
            response_format=response_format,
            strict_size=strict_size,
            model_params=model_params,
            openai_args={
                "quality": quality,
                "style": style,
                "background": background,
                "output_format": output_format,
                "output_compression": output_compression,
            },
            openai_params=openai_params,
        )
        del user  # OpenAI's end-user id: accepted, never sent to fal
        outputs = [
            self._send(job.endpoint_id, body, use_queue, extra_body, extra_headers, timeout)
            for body in job.bodies
        ]
        downloaded = {
            url: self._client.download(url, expected_type="image/")
            for url in job.downloads(outputs)
        }
        return job.response(outputs, downloaded)

    def _send(
        self,
        endpoint_id: str,
        body: dict[str, Any],
        use_queue: bool,
        extra_body: Mapping[str, Any] | None,
        extra_headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> BaseModel:
        output: BaseModel
        if use_queue:
            output = self._client.subscribe(
                endpoint_id,
                body,
                extra_body=extra_body,
                extra_headers=extra_headers,
                client_timeout=timeout,
            )
        else:
            output = self._client.run(
                endpoint_id,
                body,
                extra_body=extra_body,
                extra_headers=extra_headers,
                timeout=timeout,
            )
        return output


class AsyncImages:
    """``client.images`` on an :class:`~falbind.AsyncFalClient`; requests run concurrently."""

    def __init__(self, client: AsyncImageBackend) -> None:
        self._client = client

    async def generate(
        self,
        *,
        model: str | None = None,
        prompt: str,
        n: int = 1,
        size: str | None = None,
        response_format: ResponseFormat = "url",
        quality: str | None = None,
        style: str | None = None,
        background: str | None = None,
        output_format: str | None = None,
        output_compression: int | None = None,
        user: str | None = None,
        timeout: float | None = None,
        openai_params: OpenAIParamsPolicy = "strict",
        strict_size: bool = False,
        use_queue: bool = False,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        **model_params: Any,
    ) -> ImagesResponse:
        """Generate ``n`` images; see :meth:`Images.generate`. Several requests (and
        downloads) run concurrently; if any fails, the first error is raised once all end."""
        job = plan_images(
            model=_model(model, self._client.default_image_model),
            prompt=prompt,
            n=n,
            size=size,
            response_format=response_format,
            strict_size=strict_size,
            model_params=model_params,
            openai_args={
                "quality": quality,
                "style": style,
                "background": background,
                "output_format": output_format,
                "output_compression": output_compression,
            },
            openai_params=openai_params,
        )
        del user  # OpenAI's end-user id: accepted, never sent to fal
        outputs = await _gather(
            self._send(job.endpoint_id, body, use_queue, extra_body, extra_headers, timeout)
            for body in job.bodies
        )
        urls = job.downloads(outputs)
        blobs = await _gather(self._client.download(url, expected_type="image/") for url in urls)
        return job.response(outputs, dict(zip(urls, blobs, strict=True)))

    async def _send(
        self,
        endpoint_id: str,
        body: dict[str, Any],
        use_queue: bool,
        extra_body: Mapping[str, Any] | None,
        extra_headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> BaseModel:
        output: BaseModel
        if use_queue:
            output = await self._client.subscribe(
                endpoint_id,
                body,
                extra_body=extra_body,
                extra_headers=extra_headers,
                client_timeout=timeout,
            )
        else:
            output = await self._client.run(
                endpoint_id,
                body,
                extra_body=extra_body,
                extra_headers=extra_headers,
                timeout=timeout,
            )
        return output


async def _gather(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """All results, in order; every awaitable runs to its end before the first error is
    raised (no request is left running unobserved)."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [result for result in results if not isinstance(result, BaseException)]
