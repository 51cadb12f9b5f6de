"""``python -m falbind``: the ``falbind`` command line, for environments without the script on PATH."""

from __future__ import annotations

import sys

from falbind.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
