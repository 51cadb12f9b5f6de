"""Time ``falbind add`` of one endpoint into a copy of the full registry (figures only).

    python benchmarks/bench_add.py [--runs N] [--endpoint ID]

Each run copies ``registry/`` and ``generated/`` (~940 endpoints) to a temporary folder, takes
the endpoint out of the copy and regenerates it (untimed), then times, as subprocesses of the
installed entry point, ``falbind add ID --schema <its fal-openapi document>`` end to end
(registry validation, rendering the one new module, the drift check over the whole tree) and a
``falbind check`` afterwards. Target: add under 5 s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from falbind_codegen.naming import schema_filename
from falbind_codegen.registry import load_registry
from falbind_codegen.vendor import write_models_file

ROOT = Path(__file__).resolve().parents[1]
SHARED_ENDPOINTS = ROOT.parent / "shared" / "fal-openapi" / "endpoints"
FALBIND = str(Path(sys.executable).parent / "falbind")
TARGET_SECONDS = 5.0


def _run(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([FALBIND, *args], check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def _prepare(work: Path, endpoint_id: str) -> tuple[Path, Path]:
    """A copy of the project's registry and generated tree without ``endpoint_id``."""
    registry, out = work / "registry", work / "falbind_generated"
    shutil.copytree(ROOT / "registry", registry)
    shutil.copytree(
        ROOT / "generated" / "falbind_generated", out, ignore=shutil.ignore_patterns("__pycache__")
    )
    entries = [e for e in load_registry(registry).entries if e.id != endpoint_id]
    write_models_file(registry, entries)
    (registry / "schemas" / schema_filename(endpoint_id)).unlink()
    _run("generate", "--registry", str(registry), "--out", str(out))
    return registry, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--endpoint", default="fal-ai/flux/dev")
    options = parser.parse_args()
    document = SHARED_ENDPOINTS / schema_filename(options.endpoint)
    adds: list[float] = []
    checks: list[float] = []
    for _ in range(options.runs):
        with tempfile.TemporaryDirectory(prefix="falbind-bench-add-") as folder:
            registry, out = _prepare(Path(folder), options.endpoint)
            paths = ("--registry", str(registry), "--out", str(out))
            count = len(load_registry(registry))
            adds.append(_run("add", options.endpoint, "--schema", str(document), *paths))
            checks.append(_run("check", *paths))
    print(
        f"falbind add {options.endpoint} into a registry of {count} endpoints ({options.runs} runs)"
    )
    print(
        f"  add:   median {statistics.median(adds):.2f} s, min {min(adds):.2f} s, max {max(adds):.2f} s"
    )
    print(f"  check: median {statistics.median(checks):.2f} s (whole tree, after the add)")
    print(f"  target: add < {TARGET_SECONDS:.0f} s end to end")


if __name__ == "__main__":
    main()
