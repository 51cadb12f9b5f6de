"""falbind: typed, validated bindings for fal.ai endpoints.

``falbind.ENDPOINTS`` maps each bound endpoint id to its spec (``.input_model``,
``.output_model``, ...). Every ``<Stem>Input``/``<Stem>Output`` model is also importable from
``falbind`` directly. Every name loads on first use, so ``import falbind`` imports neither
pydantic nor httpx nor any generated module (the generator's own CLI works on a broken tree).

Layout: the hand-written runtime lives here, split by concern (``falbind.client``,
``falbind.models``, ``falbind.images``, ``falbind.cli``, ``falbind.testing``, ``falbind.lint``,
and, with their extras, ``falbind.serve`` and ``falbind.integrations``); the models are
generated into the ``falbind_generated`` package and reached through the endpoint index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from falbind import testing as testing
    from falbind.client.clients import AsyncFalClient as AsyncFalClient, FalClient as FalClient
    from falbind.client.compat import encode_file as encode_file, encode_image as encode_image
    from falbind.client.errors import (
        AuthenticationError as AuthenticationError,
        BadRequestError as BadRequestError,
        FalConnectionError as FalConnectionError,
        FalDecodeError as FalDecodeError,
        FalError as FalError,
        FalRequestFailedError as FalRequestFailedError,
        FalStatusError as FalStatusError,
        FalTimeoutError as FalTimeoutError,
        FalWarning as FalWarning,
        FieldError as FieldError,
        InvalidArgumentsError as InvalidArgumentsError,
        InvalidArgumentTypeError as InvalidArgumentTypeError,
        InvalidKeyError as InvalidKeyError,
        MissingKeyError as MissingKeyError,
        NotFoundError as NotFoundError,
        OutputSchemaWarning as OutputSchemaWarning,
        PaymentRequiredError as PaymentRequiredError,
        PermissionDeniedError as PermissionDeniedError,
        RateLimitError as RateLimitError,
        RequestTimeoutError as RequestTimeoutError,
        ServerError as ServerError,
        UnexpectedContentTypeError as UnexpectedContentTypeError,
        UnprocessableEntityError as UnprocessableEntityError,
        UntrustedURLError as UntrustedURLError,
    )
    from falbind.client.files import decode_data_uri as decode_data_uri, to_data_uri as to_data_uri
    from falbind.client.queue import (
        AsyncQueueHandle as AsyncQueueHandle,
        Completed as Completed,
        InProgress as InProgress,
        LogEntry as LogEntry,
        Queued as Queued,
        QueueHandle as QueueHandle,
        QueueStatus as QueueStatus,
    )
    from falbind.client.retry import RetryPolicy as RetryPolicy
    from falbind.client.streaming import AsyncFalStream as AsyncFalStream, FalStream as FalStream
    from falbind.client.webhooks import (
        WebhookPayload as WebhookPayload,
        WebhookResult as WebhookResult,
        WebhookVerificationError as WebhookVerificationError,
        averify_webhook as averify_webhook,
        parse_webhook as parse_webhook,
        verify_webhook as verify_webhook,
    )
    from falbind.images.generate import (
        ImageData as ImageData,
        ImagesResponse as ImagesResponse,
        SizeInfo as SizeInfo,
    )
    from falbind.images.sizing import SizeError as SizeError, SizePlan as SizePlan
    from falbind.models.base import RequestModel as RequestModel, ResponseModel as ResponseModel
    from falbind.models.bindings import (
        ALIASES as ALIASES,
        ENDPOINTS as ENDPOINTS,
        UNBOUND as UNBOUND,
    )
    from falbind.models.index import (
        EndpointSpec as EndpointSpec,
        UnknownEndpointError as UnknownEndpointError,
    )

    # Every generated <Stem>Input/<Stem>Output model, for type checkers and IDEs.
    from falbind_generated import *  # noqa: F403

__version__ = "0.1.0"

# Public name -> the module that defines it, imported on first use. Must name exactly what the
# TYPE_CHECKING block above imports (tests/test_layout.py checks both ways).
_LAZY: dict[str, str] = {
    "testing": "falbind",
    **dict.fromkeys(("ALIASES", "ENDPOINTS", "UNBOUND"), "falbind.models.bindings"),
    **dict.fromkeys(("EndpointSpec", "UnknownEndpointError"), "falbind.models.index"),
    **dict.fromkeys(("AsyncFalClient", "FalClient"), "falbind.client.clients"),
    **dict.fromkeys(
        (
            "AuthenticationError",
            "BadRequestError",
            "FalConnectionError",
            "FalDecodeError",
            "FalError",
            "FalRequestFailedError",
            "FalStatusError",
            "FalTimeoutError",
            "FalWarning",
            "FieldError",
            "InvalidArgumentsError",
            "InvalidArgumentTypeError",
            "InvalidKeyError",
            "MissingKeyError",
            "NotFoundError",
            "OutputSchemaWarning",
            "PaymentRequiredError",
            "PermissionDeniedError",
            "RateLimitError",
            "RequestTimeoutError",
            "ServerError",
            "UnexpectedContentTypeError",
            "UnprocessableEntityError",
            "UntrustedURLError",
        ),
        "falbind.client.errors",
    ),
    **dict.fromkeys(("decode_data_uri", "to_data_uri"), "falbind.client.files"),
    **dict.fromkeys(("encode_file", "encode_image"), "falbind.client.compat"),
    **dict.fromkeys(
        (
            "AsyncQueueHandle",
            "Completed",
            "InProgress",
            "LogEntry",
            "QueueHandle",
            "QueueStatus",
            "Queued",
        ),
        "falbind.client.queue",
    ),
    "RetryPolicy": "falbind.client.retry",
    **dict.fromkeys(("AsyncFalStream", "FalStream"), "falbind.client.streaming"),
    **dict.fromkeys(
        (
            "WebhookPayload",
            "WebhookResult",
            "WebhookVerificationError",
            "averify_webhook",
            "parse_webhook",
            "verify_webhook",
        ),
        "falbind.client.webhooks",
    ),
    **dict.fromkeys(("ImageData", "ImagesResponse", "SizeInfo"), "falbind.images.generate"),
    **dict.fromkeys(("SizeError", "SizePlan"), "falbind.images.sizing"),
    **dict.fromkeys(("RequestModel", "ResponseModel"), "falbind.models.base"),
}

__all__ = [  # noqa: RUF022 -- grouped like the imports above
    "ALIASES",
    "ENDPOINTS",
    "UNBOUND",
    "EndpointSpec",
    "UnknownEndpointError",
    "AsyncFalClient",
    "FalClient",
    "AuthenticationError",
    "BadRequestError",
    "FalConnectionError",
    "FalDecodeError",
    "FalError",
    "FalRequestFailedError",
    "FalStatusError",
    "FalTimeoutError",
    "FalWarning",
    "FieldError",
    "InvalidArgumentsError",
    "InvalidArgumentTypeError",
    "InvalidKeyError",
    "MissingKeyError",
    "NotFoundError",
    "OutputSchemaWarning",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "UnexpectedContentTypeError",
    "UnprocessableEntityError",
    "UntrustedURLError",
    "decode_data_uri",
    "to_data_uri",
    "encode_file",
    "encode_image",
    "AsyncQueueHandle",
    "Completed",
    "InProgress",
    "LogEntry",
    "QueueHandle",
    "QueueStatus",
    "Queued",
    "RetryPolicy",
    "AsyncFalStream",
    "FalStream",
    "WebhookPayload",
    "WebhookResult",
    "WebhookVerificationError",
    "averify_webhook",
    "parse_webhook",
    "verify_webhook",
    "ImageData",
    "ImagesResponse",
    "SizeInfo",
    "SizeError",
    "SizePlan",
    "RequestModel",
    "ResponseModel",
]


def __getattr__(name: str) -> Any:
    """Runtime names and ``falbind.<Stem>Input``/``<Stem>Output``, imported on first use."""
    from falbind.models.lazy import model_attribute, runtime_attribute

    if name in _LAZY:
        return runtime_attribute(_LAZY, name, __name__)
    from falbind.models.bindings import ENDPOINTS

    return model_attribute(ENDPOINTS, name, __name__)
