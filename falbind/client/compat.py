"""fal-client's call shapes, accepted or refused with falbind's spelling.

fal-client spells a few things differently (``run(id, arguments=...)``, ``path=``,
``headers=``, module-level ``encode_file``/``encode_image``). A keyword the client does not
take ends up among the model's parameters, where it would be reported as an unknown model
parameter; :func:`adapt_call` catches the names that are really call options first and says
which option (or which call) was meant.
"""

from __future__ import annotations

import io
import os
from collections.abc import Container, Iterable, Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel

from falbind.models.base import RequestModel

from .errors import InvalidArgumentsError, InvalidArgumentTypeError
from .files import to_data_uri

__all__ = ["adapt_call", "check_misplaced", "encode_file", "encode_image", "image_bytes"]

CallKind = Literal["run", "submit", "subscribe", "stream", "images"]

_QUEUE_ONLY: Final = "is an option of the queue calls"
# name -> (the calls that take it as an option, the hint given elsewhere)
_MISPLACED: Final[dict[str, tuple[frozenset[CallKind], str]]] = {
    "headers": (frozenset(), "did you mean the call option `extra_headers=`?"),
    "webhook_url": (
        frozenset({"submit", "subscribe"}),
        "`webhook_url` is a call option of `submit`/`subscribe` (fal's queue), not of this "
        "call; did you mean `client.submit(..., webhook_url=...)`?",
    ),
    "priority": (
        frozenset({"submit", "subscribe"}),
        "`priority` is a call option of `submit`/`subscribe` (fal's queue); did you mean "
        "`client.submit(..., priority=...)`?",
    ),
    "on_enqueue": (
        frozenset({"subscribe"}),
        "`on_enqueue` is a call option of `subscribe`; did you mean "
        "`client.subscribe(..., on_enqueue=...)`?",
    ),
    "on_queue_update": (
        frozenset({"subscribe"}),
        "`on_queue_update` is a call option of `subscribe`; did you mean "
        "`client.subscribe(..., on_queue_update=...)`?",
    ),
    "with_logs": (
        frozenset({"subscribe"}),
        "`with_logs` is a call option of `subscribe`; did you mean "
        "`client.subscribe(..., with_logs=True)`?",
    ),
    "client_timeout": (
        frozenset({"subscribe"}),
        "`client_timeout` is a call option of `subscribe`; for `run` use the call option "
        "`timeout=`",
    ),
    "timeout": (
        frozenset({"run", "stream"}),
        "`timeout` is a call option of `run`/`stream`; for the queue, did you mean the call "
        "option `client_timeout=` of `subscribe`?",
    ),
    "extra_query": (frozenset(), "fal takes no query parameters; did you mean `extra_body=`?"),
}


def _fields(spec_model: type[BaseModel] | None) -> Mapping[str, Any]:
    return {} if spec_model is None else spec_model.model_fields


def adapt_call(
    kind: CallKind,
    endpoint_id: str,
    arguments: Mapping[str, Any] | RequestModel | None,
    params: dict[str, Any],
    input_model: type[BaseModel] | None,
) -> tuple[str, Mapping[str, Any] | RequestModel | None]:
    """fal-client's spelling mapped onto falbind's, before the arguments are validated.

    ``arguments=`` given as a keyword (as ``fal_client.run(id, arguments=...)``) becomes the
    positional arguments, and ``path=`` is appended to the endpoint id (fal-client's
    sub-path: ``run("fal-ai/flux", path="dev")`` calls ``fal-ai/flux/dev``) — each only when
    the endpoint's Input model has no field of that name. ``params`` is changed in place.
    A call option misplaced among the model's parameters (``headers=``, or ``webhook_url=``
    on ``run``) raises :class:`~falbind.InvalidArgumentsError` naming the option meant.
    Returns the endpoint id and the arguments to use.
    """
    if not params and (
        arguments is None or (type(arguments) is dict and _MISPLACED.keys().isdisjoint(arguments))
    ):
        # The common call (arguments only, none of them a call option) needs nothing below:
        # the result is what the checks would return. Spared a copy of the arguments and a
        # lookup per name on every request.
        return endpoint_id, arguments
    fields = _fields(input_model)
    if "arguments" in params and "arguments" not in fields:
        given = params.pop("arguments")
        if arguments is not None:
            raise InvalidArgumentTypeError.because(
                "arguments", "arguments given both positionally and as arguments="
            )
        if given is not None and not isinstance(given, Mapping | RequestModel):
            raise InvalidArgumentTypeError.because(
                "arguments",
                f"arguments must be a mapping or an Input model, not {type(given).__name__}",
            )
        arguments = given
    if "path" in params and "path" not in fields:
        path = params.pop("path")
        if not isinstance(path, str):
            raise InvalidArgumentTypeError.because(
                "path", f"path must be a str, not {type(path).__name__}", path
            )
        endpoint_id = join_path(endpoint_id, path)
    named = dict(params)
    if isinstance(arguments, Mapping):
        named.update(arguments)
    check_misplaced(kind, endpoint_id, named, fields)
    return endpoint_id, arguments


def check_misplaced(
    kind: CallKind, endpoint_id: str, named: Iterable[str], fields: Container[str]
) -> None:
    """Raise :class:`~falbind.InvalidArgumentsError` for a name among the model's arguments
    (``named``) that is a call option this ``kind`` of call does not take (``headers``, or
    ``webhook_url`` on ``run``), naming the option or call meant, unless the model has a field
    of that name."""
    for name in named:
        if name in fields or name not in _MISPLACED:
            continue
        takes, hint = _MISPLACED[name]
        if kind not in takes:
            raise InvalidArgumentsError.because(
                name, f"`{name}` is not a parameter of {endpoint_id}: {hint}", None
            )


def join_path(endpoint_id: str, path: str) -> str:
    """``endpoint_id`` with fal-client's ``path`` appended (``"dev"`` or ``"/dev"``)."""
    tail = path.strip("/")
    return f"{endpoint_id.rstrip('/')}/{tail}" if tail else endpoint_id


def encode_file(path: str | os.PathLike[str] | bytes, content_type: str | None = None) -> str:
    """A base64 ``data:`` URI of a file (a path, or bytes), usable as any ``*_url`` input;
    fal-client's ``encode_file``. The content type is guessed from the suffix or the bytes."""
    return to_data_uri(path, content_type)


def encode_image(image: Any, format: str = "jpeg") -> str:
    """A base64 ``data:`` URI of a PIL image (saved as ``format``, default JPEG, as
    fal-client's ``encode_image``), usable as any ``image_url`` input."""
    data, content_type = image_bytes(image, format)
    return to_data_uri(data, content_type)


def image_bytes(image: Any, format: str = "jpeg") -> tuple[bytes, str]:
    """A PIL image saved as ``format``: its bytes and content type. Pillow is imported only
    here, so falbind does not need it unless images are passed this way."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "encoding a PIL image needs Pillow: pip install pillow "
            "(or pass the file's path or bytes to upload()/encode_file())"
        ) from None
    if not isinstance(image, Image.Image):
        raise InvalidArgumentTypeError.because(
            "image", f"expected a PIL.Image.Image, not {type(image).__name__}"
        )
    name = format.lower()
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if name == "jpg" else name.upper())
    subtype = "jpeg" if name in ("jpg", "jpeg") else name
    return buffer.getvalue(), f"image/{subtype}"
