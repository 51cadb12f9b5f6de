"""What ``falbind lint`` knows about each host library's fal calls: names, signatures, defaults.

Facts read from the libraries' own code (fal-client 1.0.3, LiteLLM 1.110.2, pipecat-ai 1.14.0)
and kept here as data, because the scanned project's libraries are never imported: the lint must
run where they are not installed, and importing them would be slow (LiteLLM takes seconds).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CLIENT_CLASSES",
    "CONSTRUCTED",
    "FALBIND_CLIENTS",
    "FAL_CLIENT_CLASSES",
    "FAL_CLIENT_FUNCTIONS",
    "FAL_CLIENT_METHODS",
    "LITELLM_EDIT",
    "LITELLM_FUNCTIONS",
    "MODULE_ROOTS",
    "PIPECAT_DEFAULTS",
    "PIPECAT_INPUT_PARAMS",
    "PIPECAT_PARAMS",
    "PIPECAT_SERVICE",
    "PIPECAT_SETTINGS",
    "PIPECAT_SETTINGS_FIELDS",
    "canonical",
    "is_litellm_owned",
]

MODULE_ROOTS: Final = frozenset({"fal_client", "litellm", "falbind", "pipecat"})
"""Top-level modules whose imports the lint follows; a file naming none of them is skipped."""

# Where a name is defined -> the name users import it by (longest prefix first).
_CANONICAL_PREFIXES: Final = (
    ("fal_client.client.", "fal_client."),
    ("litellm.images.main.", "litellm."),
    ("falbind.client.clients.", "falbind."),
    ("pipecat.services.fal.image.", "pipecat.services.fal."),
    (
        "pipecat.services.fal.FalImageGenService.Settings",
        "pipecat.services.fal.FalImageGenSettings",
    ),
)


def canonical(name: str) -> str:
    """``fal_client.client.SyncClient`` -> ``fal_client.SyncClient`` (and the like)."""
    for prefix, replacement in _CANONICAL_PREFIXES:
        if name.startswith(prefix):
            name = replacement + name[len(prefix) :]
    return name


# -- fal-client: module functions (fal_client/__init__.py) and client methods (client.py)
FAL_CLIENT_FUNCTIONS: Final = frozenset(
    f"fal_client.{name}"
    for name in (
        "run",
        "run_async",
        "submit",
        "submit_async",
        "subscribe",
        "subscribe_async",
        "stream",
        "stream_async",
    )
)
FAL_CLIENT_CLASSES: Final = frozenset({"fal_client.SyncClient", "fal_client.AsyncClient"})
FAL_CLIENT_METHODS: Final = frozenset({"run", "submit", "subscribe", "stream"})

# -- falbind's own clients
FALBIND_CLIENTS: Final = frozenset({"falbind.FalClient", "falbind.AsyncFalClient"})
CLIENT_CLASSES: Final = FAL_CLIENT_CLASSES | FALBIND_CLIENTS

# -- LiteLLM (litellm/images/main.py)
LITELLM_FUNCTIONS: Final = frozenset(
    {
        "litellm.image_generation",
        "litellm.aimage_generation",
        "litellm.image_edit",
        "litellm.aimage_edit",
    }
)
LITELLM_EDIT: Final = frozenset({"litellm.image_edit", "litellm.aimage_edit"})
# The keywords image_generation/image_edit take for themselves, and the commonly passed names of
# LiteLLM's own kwargs (`litellm.types.utils.all_litellm_params`, 406 names in 1.110.2, most of
# them cost-map and logging settings, matched here by prefix). Everything else is forwarded to
# fal as a model parameter.
_LITELLM_OWNED: Final = frozenset(
    {
        "prompt", "model", "n", "quality", "response_format", "size", "style", "user",
        "timeout", "api_key", "api_base", "api_version", "custom_llm_provider",
        "image", "mask", "extra_headers", "extra_query", "extra_body", "headers",
        "metadata", "client", "mock_response", "mock_timeout", "num_retries", "max_retries",
        "tags", "logger_fn", "base_model", "model_info", "proxy_server_request",
        "azure_ad_token_provider", "aimg_generation", "caching", "cache", "ttl", "fallbacks",
        "context_window_fallback_dict", "drop_params", "additional_drop_params",
        "allowed_openai_params", "request_timeout", "ssl_verify", "region_name", "guardrails",
        "prompt_id", "prompt_variables", "prompt_version", "prompt_label", "use_litellm_proxy",
        "shared_session", "no-log", "id", "order", "rpm", "tpm", "max_budget",
        "budget_duration", "cooldown_time", "model_list", "verbose", "async_call",
        "preset_cache_key", "stream_timeout", "secret_fields", "tenant_id", "client_id",
        "client_secret", "azure_username", "azure_password", "azure_scope", "azure",
        "use_in_pass_through", "merge_reasoning_content_in_choices", "weight",
    }
)  # fmt: skip
_LITELLM_OWNED_PREFIXES: Final = (
    "_",
    "litellm_",
    "input_cost_per_",
    "output_cost_per_",
    "cache_",
    "langfuse_",
    "langsmith_",
    "arize_",
    "anthropic_",
    "openai_identity",
    "s3_",
    "gcs_",
    "dd_",
    "aws_",
    "token_exchange_",
    "auto_router_",
    "posthog_",
    "newrelic_",
    "signoz_",
)


def is_litellm_owned(name: str) -> bool:
    """A keyword LiteLLM keeps for itself (not forwarded to fal as a model parameter)."""
    return name in _LITELLM_OWNED or name.startswith(_LITELLM_OWNED_PREFIXES)


# -- Pipecat (pipecat/services/fal/image.py, 1.14.0)
PIPECAT_SERVICE: Final = "pipecat.services.fal.FalImageGenService"
PIPECAT_SETTINGS: Final = "pipecat.services.fal.FalImageGenSettings"
PIPECAT_INPUT_PARAMS: Final = "pipecat.services.fal.FalImageGenService.InputParams"
PIPECAT_DEFAULT_MODEL: Final = "fal-ai/fast-sdxl"
PIPECAT_DEFAULTS: Final[dict[str, object]] = {
    "model": PIPECAT_DEFAULT_MODEL,
    "seed": None,
    "num_inference_steps": 8,
    "num_images": 1,
    "image_size": "square_hd",
    "expand_prompt": False,
    "enable_safety_checker": True,
    "format": "png",
    "negative_prompt": None,
    "guidance_scale": None,
}
"""``FalImageGenService.__init__``'s hard-coded settings: every key but ``model`` is sent to fal
(``seed``, ``negative_prompt`` and ``guidance_scale`` only when not ``None``:
``FalImageGenSettings.to_api_arguments``)."""
CONSTRUCTED: Final = frozenset({PIPECAT_SETTINGS, PIPECAT_INPUT_PARAMS})
"""Pipecat classes whose instances the lint reads back (``settings = Settings(...)``)."""
PIPECAT_SENT_WHEN_NOT_NONE: Final = frozenset({"seed", "negative_prompt", "guidance_scale"})
PIPECAT_SETTINGS_FIELDS: Final = frozenset({*PIPECAT_DEFAULTS, "extra"})
PIPECAT_PARAMS: Final = frozenset(
    {
        "seed",
        "num_inference_steps",
        "num_images",
        "image_size",
        "expand_prompt",
        "enable_safety_checker",
        "format",
    }
)
"""The fields of the deprecated ``FalImageGenService.InputParams`` (a pydantic model that
ignores other keywords)."""
