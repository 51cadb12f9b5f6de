"""The pytest plugin costs nothing for runs that do not use its fixtures, and its fixtures work.

Every pytest run in an environment with falbind installed loads the plugin (entry point
``falbind``), so loading it must import neither the HTTP stack nor pydantic nor the fake server;
the fixtures import them when a test asks for them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

HEAVY = ("httpx", "pydantic", "aiohttp", "falbind.testing.server", "falbind.client.clients")

IDLE_TEST = f"""\
import sys

def test_plugin_loaded_but_idle(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("falbind")
    loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)
    assert loaded == [], loaded
"""

FIXTURE_TEST = """\
def test_fixtures_give_a_working_fake_server_and_client(fal_server, fal_client):
    out = fal_client.flux_schnell(prompt="a fox")
    assert out.images and out.images[0].url.startswith(fal_server.url)
    assert [(r.route, r.endpoint_id) for r in fal_server.requests] == [("run", "fal-ai/flux/schnell")]
"""


def test_importing_the_plugin_imports_nothing_heavy() -> None:
    probe = (
        "import sys, falbind.testing.pytest_plugin as p\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
        "print(sorted(n for n in ('fal_server', 'fal_client', 'async_fal_client') if hasattr(p, n)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.splitlines() == [
        "[]",
        "['async_fal_client', 'fal_client', 'fal_server']",
    ]


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(folder),
            "-c",
            str(folder / "pytest.ini"),
            *args,
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=folder,
    )


def test_a_pytest_run_without_the_fixtures_loads_the_plugin_but_not_the_client(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_idle.py").write_text(IDLE_TEST, encoding="utf-8")
    result = _pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_the_fixtures_still_work_through_the_entry_point(tmp_path: Path) -> None:
    (tmp_path / "test_app.py").write_text(FIXTURE_TEST, encoding="utf-8")
    result = _pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
