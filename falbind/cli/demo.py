"""``falbind demo``: the README's quick start, end to end against a local fake fal server.

It needs no fal key: a typed call, the result, the image saved to a file, and an unknown
parameter refused (with a did-you-mean) before any request is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from falbind.client.clients import FalClient
from falbind.testing.server import FakeFalServer

__all__ = ["run_demo"]

PROMPT: Final = "a lighthouse at dusk, oil painting"


def run_demo(output: Path, echo: Callable[[str], None]) -> int:
    """Run the demo, saving the image to ``output``; the exit status (0)."""
    with (
        FakeFalServer() as server,
        FalClient(key="", run_url=server.run_url, queue_url=server.queue_url) as client,
    ):
        echo(f"fake fal server: {server.url} (no fal key needed)")
        echo(f"client.flux_schnell(prompt={PROMPT!r}, image_size='landscape_16_9')")
        result = client.flux_schnell(prompt=PROMPT, image_size="landscape_16_9")
        echo(f"-> {type(result).__name__}: seed={result.seed}, prompt={result.prompt!r}")
        for number, image in enumerate(result.images, 1):
            echo(
                f"   image {number}: {image.width}x{image.height} {image.content_type} {image.url}"
            )
        path = client.download(result.images[0], path=output, expected_type="image/")
        echo(f"saved the image to {path.resolve()} ({path.stat().st_size} bytes)")

        before = server.count()
        echo("client.flux_schnell(prompt=..., num_image=2)  # a typo for num_images")
        try:
            # A type checker flags this line too; the runtime check is what the demo shows.
            client.flux_schnell(prompt=PROMPT, num_image=2)  # type: ignore[call-overload]
        except ValidationError as exc:
            echo(f"-> refused before sending: {exc.errors()[0]['msg']}")
        else:
            raise AssertionError("the unknown parameter was not refused")
        echo(f"requests the server received for that call: {server.count() - before}")
    return 0
