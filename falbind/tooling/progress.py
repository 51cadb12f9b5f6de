"""A one-line progress indicator on stderr, drawn only when stderr is a terminal.

Hand-written on purpose: the only progress libraries in reach (tqdm, rich) are not dependencies
of falbind, and the long commands (``generate --full``, ``refresh``, ``validate`` over many files)
need just two shapes, a running count (catalogue pages: the total is unknown) and a bar (the total
is known). Nothing is drawn in pipes, CI logs or tests, so machine-readable output on stdout is
never interleaved with it. The line never exceeds the terminal's width: the bar narrows first.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

__all__ = ["Progress"]

BAR_WIDTH = 30
MIN_BAR_WIDTH = 5
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
        self._drawn = 0

    def set_total(self, total: int | None) -> None:
        """Set (or learn late) how many steps there are; ``None`` or 0 draws a plain count."""
        self.total = total or None

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
        columns = shutil.get_terminal_size().columns
        if self.total:
            counter = f"] {self.done}/{self.total}"
            room = columns - 1 - len(self.label) - len(": [") - len(counter)
            if room >= MIN_BAR_WIDTH:
                width = min(BAR_WIDTH, room)
                filled = min(width, width * self.done // self.total)
                text = f"{self.label}: [{'#' * filled}{'-' * (width - filled)}{counter}"
            else:  # too narrow for a readable bar: the count alone
                text = f"{self.label}: {self.done}/{self.total}"
        else:
            text = f"{self.label}: {self.done}"
        text = text[: max(columns - 1, 1)]  # never wrap onto a second line, which \r cannot erase
        padding = " " * max(0, self._drawn - len(text))  # erase what a longer line left behind
        self._drawn = len(text)
        self.stream.write("\r" + text + padding)
        self.stream.flush()
