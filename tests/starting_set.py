"""The starting set: the endpoints the README documents and every issue tests in depth."""

from __future__ import annotations

STARTING_SET: tuple[str, ...] = (
    "fal-ai/flux/schnell",
    "fal-ai/flux/dev",
    "fal-ai/flux-pro/v1.1",
    "fal-ai/flux-pro/v1.1-ultra",
    "fal-ai/bytedance/seedream/v3/text-to-image",
    "fal-ai/bytedance/dreamina/v3.1/text-to-image",
    "fal-ai/imagen4/preview",
    "fal-ai/recraft/v3/text-to-image",
    "fal-ai/recraft-v3",
    "fal-ai/ideogram/v3",
    "fal-ai/stable-diffusion-v35-medium",
    "bria/text-to-image/3.2",
    "fal-ai/fast-sdxl",
)


def _module(endpoint_id: str) -> str:
    import re

    owner, _, rest = endpoint_id.partition("/")
    snake = lambda text: "_".join(w for w in re.split(r"[^a-z0-9]+", text.lower()) if w)  # noqa: E731
    return f"{snake(owner)}__{snake(rest)}"


STARTING_SET_MODULES: tuple[str, ...] = tuple(_module(i) for i in STARTING_SET)
