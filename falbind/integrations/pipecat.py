"""falbind as a Pipecat image generation service: ``FalbindImageGenService``.

::

    from falbind.integrations.pipecat import FalbindImageGenService

    image_gen = FalbindImageGenService(
        aiohttp_session=session,                  # yours: used, never closed
        settings=FalbindImageGenService.Settings(
            model="bria/text-to-image/3.2",
            size="1536x1024",                     # OpenAI-style, mapped from the model's schema
            num_images=2,                         # two URLImageRawFrames
            extra={"guidance_scale": 5},          # any other model parameter, validated
        ),
    )

Only what you set is sent, so fal's per-model defaults apply (Pipecat's own ``FalImageGenService``
always sends ``num_inference_steps=8``, ``image_size``, ``format`` and ``expand_prompt``). The
settings are validated against the model's schema when the service is built (a misspelt
parameter raises there, with a did-you-mean) and on every update (a bad update is refused with
an ``ErrorFrame`` and the old settings stay). Each image becomes one ``URLImageRawFrame``,
decoded to RGB. Errors become ``ErrorFrame``\\ s whose category follows the failure: invalid
settings → ``INVALID_REQUEST`` (a refused settings update → ``APPLICATION``: the old
settings stay and work); fal's 401/402/403/429/5xx by status; a prompt or content that
fal refuses (its 400/422 once the settings validated, or a failed job) → ``APPLICATION``, which
does not mark the service unusable.

The key is ``key=``, else falbind's environment chain (``FAL_KEY``, ``FAL_KEY_ID`` +
``FAL_KEY_SECRET``, ``FAL_AI_API_KEY``); ``os.environ`` is only read, never written.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncGenerator, Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from PIL import Image
from pipecat.frames.frames import ErrorFrame, Frame, ServiceUpdateSettingsFrame, URLImageRawFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.image_service import ImageGenService
from pipecat.services.settings import ImageGenSettings
from pipecat.utils.errors import ErrorCategory
from pipecat.utils.types import NOT_GIVEN, NotGiven, is_given
from pydantic import ValidationError

import falbind
from falbind.client.failures import Kind, classify
from falbind.images.generate import ImagesJob, model_traits, plan_images

from ._errors import describe_validation_error

__all__ = ["DEFAULT_MODEL", "FalbindImageGenService", "FalbindImageGenSettings"]

DEFAULT_MODEL: Final = "fal-ai/fast-sdxl"
"""The model when none is set: the same default as Pipecat's ``FalImageGenService``."""
TEXT_TO_IMAGE: Final = "text-to-image"
_OPENAI_SIZE: Final = re.compile(r"^\s*(auto|\d+x\d+)\s*$")
_ESCAPE_HINT: Final = re.compile(r"\s*\(pass it through extra_body=[^)]*\)")
_CHECK_PROMPT: Final = "a settings check"
T = TypeVar("T")


@dataclass
class FalbindImageGenSettings(ImageGenSettings):
    """Settings for :class:`FalbindImageGenService` (Pipecat's store/delta pattern).

    Parameters:
        model: a bound text-to-image endpoint id (or alias).
        size: ``"WIDTHxHEIGHT"`` or ``"auto"`` (mapped from the model's schema), or a value of
            the model's own size parameter (``"landscape_16_9"``, ``{"width": .., "height": ..}``,
            ``"16:9"``); ``None``: the model's default.
        num_images: images per prompt, one frame each (the model's count field, or several
            requests); ``None``: one.
        seed: the model's ``seed``; ``None``: not sent.
        extra: any other model parameter, validated against the model; a value of ``None``
            removes the parameter (Pipecat merges ``extra`` key by key).
    """

    size: str | dict[str, int] | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    num_images: int | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    seed: int | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)


class FalbindImageGenService(ImageGenService):
    """Text-to-image through falbind's validated ``client.images.generate``.

    ``aiohttp_session`` is used for every request and never closed; without one (and without
    ``client``) the service opens its own pool and closes it in ``cleanup()``. ``run_url`` /
    ``queue_url`` (or a ready ``client``) point it at another fal-compatible server.
    ``use_queue`` sends through fal's queue. ``prefer_inline`` asks models that have
    ``sync_mode`` to return the image inline, which saves a download round trip.
    """

    Settings = FalbindImageGenSettings
    _settings: FalbindImageGenSettings

    def __init__(
        self,
        *,
        aiohttp_session: aiohttp.ClientSession | None = None,
        key: str | None = None,
        settings: FalbindImageGenSettings | None = None,
        client: falbind.AsyncFalClient | None = None,
        run_url: str | None = None,
        queue_url: str | None = None,
        use_queue: bool = False,
        prefer_inline: bool = True,
        strict_size: bool = False,
        retry: falbind.RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        store = FalbindImageGenSettings(
            model=DEFAULT_MODEL, size=None, num_images=None, seed=None, extra={}
        )
        if settings is not None:
            store.apply_update(settings)
        _drop_removed(store)
        self._use_queue = use_queue
        self._prefer_inline = prefer_inline
        self._strict_size = strict_size
        self._check(store)  # raises before anything is built: the mistake is in user code
        super().__init__(settings=store, **kwargs)
        self._owns_client = client is None and aiohttp_session is None
        self._client = client or _client(aiohttp_session, key, run_url, queue_url, retry)

    def can_generate_metrics(self) -> bool:
        return True

    # -- settings ------------------------------------------------------------------------------

    async def update_settings(self, delta: FalbindImageGenSettings) -> dict[str, Any]:
        """Apply ``delta`` if the result validates; else push an ``ErrorFrame`` and keep the
        old settings. Returns the changed fields and their previous values."""
        return await self._update_settings(delta)

    async def _update_settings(self, delta: Any) -> dict[str, Any]:
        candidate = self._settings.copy()
        candidate.apply_update(delta)
        _drop_removed(candidate)
        try:
            self._check(candidate)
        except Exception as error:
            # APPLICATION, not INVALID_REQUEST: the old settings stay and still work, so the
            # service must not be marked unusable.
            await self.push_error(
                f"{self}: settings update refused: {_describe(error, candidate.model)}",
                exception=error,
                category=ErrorCategory.APPLICATION,
            )
            return {}
        changed = await super()._update_settings(delta)
        _drop_removed(self._settings)
        return changed

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Also applies a ``ServiceUpdateSettingsFrame`` aimed at this service (or carrying
        this service's ``Settings``): Pipecat has no image-settings frame of its own."""
        if isinstance(frame, ServiceUpdateSettingsFrame) and self._is_for_me(frame):
            delta = frame.delta
            if delta is None:  # the deprecated ``settings`` mapping, aimed at this service
                delta = FalbindImageGenSettings.from_mapping(frame.settings)
            await self._update_settings(delta)
            return
        await super().process_frame(frame, direction)

    def _is_for_me(self, frame: ServiceUpdateSettingsFrame[Any]) -> bool:
        if frame.service is self:
            return frame.delta is None or isinstance(frame.delta, FalbindImageGenSettings)
        return frame.service is None and isinstance(frame.delta, FalbindImageGenSettings)

    def _check(self, settings: FalbindImageGenSettings) -> ImagesJob:
        """Plan a request with these settings (pure, no I/O); raises what is wrong."""
        endpoint_id = falbind.ENDPOINTS.resolve(_model_of(settings)).id
        category = falbind.ENDPOINTS[endpoint_id].category
        if category != TEXT_TO_IMAGE:
            raise ValueError(
                f"{endpoint_id} is a {category} endpoint; FalbindImageGenService needs a "
                f"{TEXT_TO_IMAGE} model"
            )
        return plan_images(**self._generate_args(settings, _CHECK_PROMPT, endpoint_id))

    def _generate_args(
        self, settings: FalbindImageGenSettings, prompt: str, endpoint_id: str
    ) -> dict[str, Any]:
        """``images.generate``/``plan_images`` arguments: only what the user set."""
        params: dict[str, Any] = {k: v for k, v in settings.extra.items() if v is not None}
        if _given(settings.seed) is not None:
            params["seed"] = settings.seed
        size = _given(settings.size)
        openai_size: str | None = None
        if isinstance(size, str) and _OPENAI_SIZE.match(size):
            openai_size = size.strip()
        elif size is not None:
            size_fields = model_traits(endpoint_id).size_fields
            if not size_fields:
                raise ValueError(f"{endpoint_id} has no size parameter for size={size!r}")
            params.setdefault(size_fields[0], size)
        sync_field = model_traits(endpoint_id).sync_mode_field
        if self._prefer_inline and sync_field and sync_field not in params:
            params[sync_field] = True
        num_images = _given(settings.num_images)
        return {
            "model": endpoint_id,
            "prompt": prompt,
            "n": num_images if num_images is not None else 1,
            "size": openai_size,
            "strict_size": self._strict_size,
            "model_params": params,
        }

    # -- generation ----------------------------------------------------------------------------

    async def run_image_gen(self, prompt: str) -> AsyncGenerator[Frame, None]:
        """One ``URLImageRawFrame`` per image (RGB), or an ``ErrorFrame``."""
        try:
            endpoint_id = falbind.ENDPOINTS.resolve(_model_of(self._settings)).id
            args = self._generate_args(self._settings, prompt, endpoint_id)
            model_params = args.pop("model_params")
            result = await self._client.images.generate(
                **args, use_queue=self._use_queue, **model_params
            )
            urls = [image.url for image in result.data if image.url]
            frames = await _all(self._frame(url) for url in urls)
        except Exception as error:
            model = _model_of(self._settings)
            yield ErrorFrame(error=f"{self}: {_describe(error, model)}", exception=error)
            return
        if not frames:
            yield ErrorFrame(
                error=f"{self}: {result.model} returned no image ({'; '.join(result.notes)})",
                category=ErrorCategory.APPLICATION,
            )
        for frame in frames:
            yield frame

    async def _frame(self, url: str) -> URLImageRawFrame:
        """The image at ``url`` (a ``data:`` URI is decoded locally; a download must be an
        image) as an RGB frame."""
        data = await self._client.download(url, expected_type="image/")
        pixels, size = await asyncio.to_thread(_rgb, data)
        return URLImageRawFrame(
            url=None if url.startswith("data:") else url, image=pixels, size=size, format="RGB"
        )

    def _classify_error(self, exception: Exception) -> ErrorCategory | None:
        """Pipecat's category for a failure, from :mod:`falbind.client.failures`'s kind;
        ``None`` lets Pipecat classify a fal answer by its ``status_code``."""
        kind = classify(exception)
        if kind is Kind.OTHER and isinstance(exception, OSError | Image.DecompressionBombError):
            return ErrorCategory.SERVER  # an image PIL cannot read
        return _CATEGORIES.get(kind)

    async def cleanup(self) -> None:
        await super().cleanup()  # type: ignore[no-untyped-call]
        if self._owns_client:
            await self._client.aclose()


async def _all(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Every result in order; all finish before the first error is raised (none is left
    running unobserved)."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [result for result in results if not isinstance(result, BaseException)]


def _client(
    session: aiohttp.ClientSession | None,
    key: str | None,
    run_url: str | None,
    queue_url: str | None,
    retry: falbind.RetryPolicy | None,
) -> falbind.AsyncFalClient:
    options: dict[str, Any] = {"key": key, "retry": retry}
    if run_url:
        options["run_url"] = run_url
    if queue_url:
        options["queue_url"] = queue_url
    if session is None:
        return falbind.AsyncFalClient(**options)
    # httpx over the user's aiohttp session. Nothing here ever closes it: AsyncFalClient leaves
    # a given http_client open, and this httpx client is never closed (httpx-aiohttp would
    # close the session with it).
    http = httpx.AsyncClient(transport=AiohttpTransport(client=lambda: session))
    return falbind.AsyncFalClient(http_client=http, **options)


def _given(value: Any) -> Any:
    return value if is_given(value) else None


def _model_of(settings: FalbindImageGenSettings) -> str:
    model = settings.model
    if not isinstance(model, str) or not model:
        raise ValueError("model must be a fal endpoint id")
    return model


_CATEGORIES: Final[dict[Kind, ErrorCategory]] = {
    Kind.INVALID_ARGUMENTS: ErrorCategory.INVALID_REQUEST,
    # The settings validated against the model's schema, so what fal refused is the prompt or
    # its content, and a failed job is the model's: not a reason to write the service off.
    Kind.INVALID_INPUT: ErrorCategory.APPLICATION,
    Kind.REQUEST_REFUSED: ErrorCategory.APPLICATION,
    Kind.MODEL_FAILED: ErrorCategory.APPLICATION,
    Kind.TIMEOUT: ErrorCategory.CONNECTIVITY,
    Kind.UNREACHABLE: ErrorCategory.CONNECTIVITY,
    Kind.UNDECODABLE: ErrorCategory.SERVER,
}
"""Pipecat's category for each kind of failure; fal's other answers (401, 402, 403, 404, 429,
5xx) are left to Pipecat, which classifies them by ``status_code``."""


def _drop_removed(settings: FalbindImageGenSettings) -> None:
    """``extra`` entries set to ``None`` mean "remove this parameter"."""
    settings.extra = {k: v for k, v in settings.extra.items() if v is not None}


def _describe(error: BaseException, model: Any) -> str:
    if isinstance(error, ValidationError):
        # falbind's hint names its client's unvalidated extra_body, which this service lacks.
        return _ESCAPE_HINT.sub("", describe_validation_error(error, str(model)))
    return str(error)


def _rgb(data: bytes) -> tuple[bytes, tuple[int, int]]:
    """Decode an image to RGB pixels (Pipecat's output transports render RGB)."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        return rgb.tobytes(), rgb.size
