"""``falbind demo``: the README quick start, run through the installed entry point."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from test_fake_server import falbind_command

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers


def test_demo_runs_a_typed_call_saves_the_image_and_refuses_a_typo(tmp_path: Path) -> None:
    output = tmp_path / "fox.png"
    result = subprocess.run(
        falbind_command("demo", "--output", str(output)),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "FAL_KEY": "must-not-be-used"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("-> FluxSchnellOutput") for line in lines)
    assert f"saved the image to {output}" in result.stdout
    data = output.read_bytes()
    assert data.startswith(b"\x89PNG") and struct.unpack(">II", data[16:24]) == (1024, 576)
    assert "did you mean 'num_images'?" in result.stdout
    assert lines[-1] == "requests the server received for that call: 0"


def test_demo_default_output_is_in_the_working_directory(tmp_path: Path) -> None:
    result = subprocess.run(
        falbind_command("demo"), capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "falbind-demo.png").read_bytes().startswith(b"\x89PNG")
