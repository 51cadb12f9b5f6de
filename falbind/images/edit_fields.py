"""Where an image edit's images and mask go in a fal endpoint's Input, and what it refuses.

OpenAI's ``images.edit`` sends one or more images and an optional mask; fal's edit models take
them under their own field names (a list ``image_urls``, one ``image_url`` or
``inpaint_image_url``, a ``mask_url`` or ``mask_image_url``). The gateway (``falbind serve``'s
``/v1/images/edits``) and the LiteLLM provider both map an edit through this one module, so
that a model one of them can edit the other can too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

__all__ = [
    "IMAGE_LIST_FIELDS",
    "MASK_FIELDS",
    "SINGLE_IMAGE_FIELDS",
    "EditFields",
    "EditRefusedError",
    "edit_fields",
]

T = TypeVar("T")

IMAGE_LIST_FIELDS: Final = ("image_urls",)
"""Input fields that take a list of image URLs, in order of preference."""
SINGLE_IMAGE_FIELDS: Final = ("image_url", "inpaint_image_url")
"""Input fields that take one image URL, in order of preference (``inpaint_image_url``: the
Fooocus inpainting models, whose mask is ``mask_image_url``)."""
MASK_FIELDS: Final = ("mask_url", "mask_image_url")
"""Input fields that take the mask's URL, in order of preference."""


class EditRefusedError(ValueError):
    """An edit the endpoint cannot take (no image field, too many images, a mask it has no
    field for); nothing was sent.

    A plain ``ValueError`` rather than falbind's ``InvalidArgumentsError``: that one is a
    pydantic ``ValidationError`` whose message is pydantic's multi-line report and which
    callers treat as "the Input model refused a value", while this is one readable sentence
    about the request's shape. ``param`` (the OpenAI form field: ``image`` or ``mask``) and
    ``code`` (OpenAI's error code) let the gateway answer with an OpenAI error body; the
    LiteLLM provider already turns a ``ValueError`` into a 400.
    """

    def __init__(
        self, message: str, *, param: Literal["image", "mask"], code: str = "invalid_value"
    ) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


@dataclass(frozen=True, slots=True)
class EditFields:
    """An endpoint's image-list, single-image and mask fields (each ``None`` when absent)."""

    image_list: str | None
    single_image: str | None
    mask: str | None

    def check(
        self, endpoint_id: str, *, images: int, mask: bool, model_name: str | None = None
    ) -> None:
        """Refuse an edit of ``images`` images (and a mask when ``mask``) that this endpoint
        cannot take, with :class:`EditRefusedError` naming the endpoint (and ``model_name``,
        the name the caller used, when given)."""
        who = endpoint_id if model_name is None else f"model {model_name!r} ({endpoint_id})"
        if self.image_list is None and self.single_image is None:
            raise EditRefusedError(
                f"{who} takes no input image; use /v1/images/generations", param="image"
            )
        if images < 1:
            raise EditRefusedError(f"{who}: an image edit needs at least one image", param="image")
        if self.image_list is None and images > 1:
            raise EditRefusedError(
                f"{who} takes one image ({self.single_image}), not {images}", param="image"
            )
        if mask and self.mask is None:
            raise EditRefusedError(f"{who} takes no mask", param="mask", code="unknown_parameter")

    def place(self, images: Sequence[T], mask: T | None) -> dict[str, Any]:
        """The Input fields for ``images`` (and ``mask``), which :meth:`check` accepted: a
        list for a list field, else the one image; the mask under the mask field."""
        placed: dict[str, Any] = {}
        if self.image_list is not None:
            placed[self.image_list] = list(images)
        elif self.single_image is not None and images:
            placed[self.single_image] = images[0]
        if mask is not None and self.mask is not None:
            placed[self.mask] = mask
        return placed


def edit_fields(properties: Mapping[str, Any]) -> EditFields:
    """The edit fields of an endpoint whose Input properties (JSON schema by wire name, as
    :func:`falbind.models.base.field_schemas` gives them) are ``properties``."""

    def first(names: Sequence[str]) -> str | None:
        return next((name for name in names if name in properties), None)

    return EditFields(first(IMAGE_LIST_FIELDS), first(SINGLE_IMAGE_FIELDS), first(MASK_FIELDS))
