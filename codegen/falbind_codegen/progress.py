"""A one-line progress indicator on stderr, drawn only when stderr is a terminal.

Hand-written on purpose: the only progress libraries in reach (tqdm, rich) are not dependencies
of falbind, and ``refresh`` needs just two shapes, a running count (catalogue pages: the total
is unknown) and a bar (rendering: the total is known). Nothing is drawn in pipes, CI logs or
tests, so machine-readable output on stdout is never interleaved with it.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]

BAR_WIDTH = 30
MIN_INTERVAL = 0.1  # seconds between redraws, so a fast loop does not flood the terminal


class Progress:
    """``update(done)`` redraws ``label: [####----] done/total`` (or ``label: done``)."""

    def __init__(
        self, label: str, total: int | None = None, *, stream: TextIO | None = None
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self._last_draw = 0.0

    def update(self, done: int) -> None:
        """Set the running count (absolute) and redraw if enough time passed."""
        self.done = done
        now = time.monotonic()
        if self.enabled and (now - self._last_draw >= MIN_INTERVAL or done == self.total):
            self._last_draw = now
            self._draw()

    def advance(self, step: int) -> None:
        """Add ``step`` to the count (for callbacks that report increments)."""
        self.update(self.done + step)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self) -> None:
        if self.total:
            filled = min(BAR_WIDTH, BAR_WIDTH * self.done // self.total)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            text = f"{self.label}: [{bar}] {self.done}/{self.total}"
        else:
            text = f"{self.label}: {self.done}"
        self.stream.write("\r" + text)
        self.stream.flush()
