"""The progress indicator, shared with the runtime CLI (``falbind validate`` draws it too): see
:mod:`falbind.cli.progress`."""

from __future__ import annotations

from falbind.cli.progress import Progress

__all__ = ["Progress"]
