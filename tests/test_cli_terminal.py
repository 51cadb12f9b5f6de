"""The command line in a terminal and out of one: ``--version``, ``python -m falbind``, ``show``
wrapped to the terminal's width (never cut), and progress bars drawn only on a terminal.

The terminal is a real pseudo-terminal (``pty``) with its window size set, so ``isatty`` and the
size come from the kernel as they would in a user's shell."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from importlib import metadata
from pathlib import Path

import pytest

from falbind.tooling.progress import Progress
from falbind_codegen.generate import build_files
from falbind_codegen.registry import load_registry

from support import FALBIND, FIXTURE_REGISTRY, run_cli

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

ULTRA = "fal-ai/flux-pro/v1.1-ultra"


def _environment(**extra: str) -> dict[str, str]:
    """This process's environment without a ``COLUMNS``/``LINES`` override, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(extra)
    return env


def _run_on_terminal(
    args: list[str], columns: int, *, stream: str = "stdout", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run ``falbind ARGS`` with ``stream`` on a pseudo-terminal ``columns`` wide; returns the
    exit status, what the terminal showed and what the other stream (a pipe) received."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR  # keep "\n" as written (no "\r\n" translation)
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, stream: slave}
    process = subprocess.Popen(
        [FALBIND, *args],
        stdout=pipes["stdout"],
        stderr=pipes["stderr"],
        stdin=subprocess.DEVNULL,
        env=env if env is not None else _environment(),
    )
    os.close(slave)
    other = process.stderr if stream == "stdout" else process.stdout
    assert other is not None
    shown = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if not ready:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed its end (EIO on Linux)
            break
        if not chunk:
            break
        shown.extend(chunk)
    status = process.wait(timeout=60)
    rest = other.read().decode()
    other.close()
    os.close(master)
    return status, shown.decode(), rest


def test_version_flag_and_python_dash_m_report_the_installed_version() -> None:
    expected = f"falbind {metadata.version('falbind')}"
    result = run_cli("--version")
    assert (result.returncode, result.stdout.strip()) == (0, expected)
    module = subprocess.run(
        [sys.executable, "-m", "falbind", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (module.returncode, module.stdout.strip()) == (0, expected)


def test_python_dash_m_runs_the_same_commands() -> None:
    module = subprocess.run(
        [sys.executable, "-m", "falbind", "show", ULTRA, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert module.returncode == 0, module.stderr
    assert module.stdout == run_cli("show", ULTRA, "--format", "json").stdout


def _cells(shown: str) -> list[list[str]]:
    """The rows of ``show``'s main table (or parameter blocks), each cell's wrapped pieces
    joined back, with the spaces taken out (wrapping replaces a space by a line break)."""
    lines = shown.splitlines()
    rule = next((n for n, line in enumerate(lines) if line.startswith("----")), None)
    if rule is None:  # narrow terminal: one block per parameter, indented continuation lines
        blocks: list[list[str]] = []
        for line in lines[lines.index("") + 1 :]:
            if not line:
                break
            if line.startswith(" "):
                blocks[-1].append(line.strip())
            else:
                blocks.append([line])
        return [["".join(block).replace(" ", "")] for block in blocks]
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", lines[rule])]
    rows: list[list[str]] = []
    for line in lines[rule + 1 :]:
        if not line:
            break
        pieces = [line[start : end + 1].strip() for start, end in spans]
        if pieces[0]:
            rows.append(pieces)
        else:
            rows[-1] = [a + b for a, b in zip(rows[-1], pieces, strict=True)]
    return [[cell.replace(" ", "") for cell in row] for row in rows]


@pytest.mark.parametrize("columns", [50, 80, 120])
def test_show_fits_the_terminal_and_keeps_every_value_whole(columns: int) -> None:
    status, shown, errors = _run_on_terminal(["show", ULTRA], columns)
    assert status == 0, errors
    lines = shown.splitlines()
    assert lines and all(len(line) <= columns for line in lines), max(map(len, lines))
    document = json.loads(run_cli("show", ULTRA, "--format", "json").stdout)
    rows = _cells(shown)
    assert len(rows) == len(document["parameters"])
    for row, parameter in zip(rows, document["parameters"], strict=True):
        text = "".join(row)
        # Every value appears whole once the wrapping (spaces, line breaks) is taken out.
        for value in (parameter["name"], parameter["description"], "; ".join(parameter["allowed"])):
            assert value.replace(" ", "") in text, (value, row)
        if parameter["has_default"]:
            assert json.dumps(parameter["default"]).replace(" ", "") in text


def test_columns_overrides_the_terminal_size_as_shutil_documents() -> None:
    status, shown, _ = _run_on_terminal(["show", ULTRA], 200, env=_environment(COLUMNS="60"))
    assert status == 0
    assert max(len(line) for line in shown.splitlines()) <= 60


def test_piped_show_is_never_wrapped_or_cut() -> None:
    result = run_cli("show", ULTRA, env=_environment(COLUMNS="40"))
    assert result.returncode == 0
    rows = [line for line in result.stdout.splitlines() if line.startswith("prompt ")]
    document = json.loads(run_cli("show", ULTRA, "--format", "json").stdout)
    prompt = next(p for p in document["parameters"] if p["name"] == "prompt")
    assert len(rows) == 1 and rows[0].rstrip().endswith(prompt["description"])
    assert "…" not in result.stdout


def _argument_files(folder: Path, count: int) -> list[str]:
    paths = []
    for n in range(count):
        path = folder / f"args{n}.json"
        path.write_text(json.dumps({"prompt": f"fox {n}"}), encoding="utf-8")
        paths.append(str(path))
    return paths


def test_validate_draws_a_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    files = _argument_files(tmp_path, 30)
    status, drawn, out = _run_on_terminal(
        ["validate", "fal-ai/flux/schnell", *files], 60, stream="stderr"
    )
    assert status == 0
    assert "30 request(s) checked: 30 valid" in out
    final = drawn.split("\r")[-1]
    assert final.startswith("validating: [") and final.rstrip().endswith("] 30/30")
    assert all(len(part.rstrip("\n")) < 60 for part in drawn.split("\r"))
    piped = run_cli("validate", "fal-ai/flux/schnell", *files)
    assert piped.returncode == 0 and piped.stderr == ""
    assert "30 request(s) checked" in piped.stdout


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_narrows_to_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for columns, bar_drawn in ((40, True), (30, False)):
        monkeypatch.setenv("COLUMNS", str(columns))
        stream = _Terminal()
        bar = Progress("rendering endpoints", total=1000, stream=stream)
        bar.update(500)
        bar.close()
        frames = stream.getvalue().rstrip("\n").split("\r")[1:]
        assert all(len(frame) < columns for frame in frames)
        if bar_drawn:
            assert frames[-1].startswith("rendering endpoints: [##")
            assert frames[-1].endswith("] 500/1000")
        else:  # too narrow for a bar: the count alone, never cut
            assert frames[-1] == "rendering endpoints: 500/1000"


def test_generate_reports_its_rendering_total_before_rendering() -> None:
    registry = load_registry(FIXTURE_REGISTRY)
    stream = _Terminal()
    bar = Progress("rendering", stream=stream)
    result = build_files(registry, progress=bar.advance, on_plan=bar.set_total)
    bar.close()
    assert bar.total == result.rendered == len(result.bound) > 0
    assert stream.getvalue().endswith(f"] {bar.total}/{bar.total}\n")
