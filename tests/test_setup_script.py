"""scripts/setup prints a few lines: pip's per-package "local index page missing" warnings are
counted, not printed, while every other line (errors above all) and pip's exit status are kept.

The real script's ``run_pip`` is sourced and given a stand-in pip (a shell function printing
what pip prints on a machine whose pip config lists file:// mirrors), so this runs in
milliseconds; running the whole setup takes minutes."""

from __future__ import annotations

import subprocess

import pytest

from support import ROOT

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

FAKE_PIP = r"""
fake_pip() {
  echo "WARNING: Location 'file:///opt/pypi-more/simple/pip/' is ignored: it is neither a file nor a directory." >&2
  echo "Looking in indexes: https://pypi.org/simple"
  echo "WARNING: Location 'file:///opt/pypi/simple/httpx-aiohttp/' is ignored: it is neither a file nor a directory." >&2
  echo "WARNING: Retrying (Retry(total=4)) after connection broken" >&2
  echo "ERROR: Could not find a version that satisfies the requirement nosuch" >&2
  echo "  WARNING: Location 'file:///x/' is ignored: it is neither a file nor a directory. (indented: not pip's line)" >&2
  return "$1"
}
"""


def _run_pip(status: int) -> subprocess.CompletedProcess[str]:
    script = f"set -euo pipefail\nsource {ROOT / 'scripts' / 'setup'}\n{FAKE_PIP}\nrun_pip fake_pip {status}\n"
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


def test_mirror_warnings_are_counted_and_everything_else_is_shown() -> None:
    result = _run_pip(3)
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        "WARNING: Retrying (Retry(total=4)) after connection broken",
        "ERROR: Could not find a version that satisfies the requirement nosuch",
        "  WARNING: Location 'file:///x/' is ignored: it is neither a file nor a directory. (indented: not pip's line)",
    ]
    assert result.stdout.splitlines() == [
        "Looking in indexes: https://pypi.org/simple",
        "setup: pip skipped 2 local index page(s) that do not exist (file:// extra-index-url in your pip config; harmless)",
    ]


def test_success_keeps_status_zero() -> None:
    result = _run_pip(0)
    assert result.returncode == 0
    assert "ERROR: Could not find" in result.stderr


def test_sourcing_the_script_runs_nothing() -> None:
    result = subprocess.run(
        ["bash", "-c", f"source {ROOT / 'scripts' / 'setup'}; type run_pip >/dev/null; echo ok"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")
