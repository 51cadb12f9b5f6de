"""``falbind serve``: an OpenAI-compatible images gateway over every bound fal model."""

# ``create_app(config)`` returns the ASGI app (Starlette); ``load_config(path)`` reads a LiteLLM
# Proxy-style ``config.yaml``. Needs ``pip install "falbind[serve]"``. See docs/serve.md.

from __future__ import annotations

from .app import create_app
from .config import ConfigError, GatewayConfig, ModelEntry, load_config, parse_config
from .store import Store, StoreError

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "ModelEntry",
    "Store",
    "StoreError",
    "create_app",
    "load_config",
    "parse_config",
]
