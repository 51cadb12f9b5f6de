"""Time ``falbind validate --manifest`` of 1,000 requests (figures only, no assertions).

    python benchmarks/bench_validate.py [--requests N] [--endpoints K] [--runs R]

The manifest spreads the requests over K text-to-image endpoints (each needs only a prompt);
one in ten has a misspelt parameter, so the error path (JSON paths, line numbers,
did-you-mean) is part of the figure. Timed end to end as a subprocess of the installed entry
point (interpreter start, ``import falbind``, importing the K endpoint modules), for a JSON and
a YAML manifest. Target: 1,000 requests under 2 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

import falbind

FALBIND = str(Path(sys.executable).parent / "falbind")
TARGET_SECONDS = 2.0


def _manifest(requests: int, endpoints: int) -> list[dict[str, Any]]:
    ids = [
        spec.id
        for spec in falbind.ENDPOINTS.values()
        if spec.category == "text-to-image"
        and set(spec.input_model.model_json_schema().get("required", [])) <= {"prompt"}
    ][:endpoints]
    items = []
    for index in range(requests):
        arguments: dict[str, Any] = {"prompt": f"request {index}"}
        if index % 10 == 0:
            arguments["promt"] = "typo"
        items.append({"endpoint": ids[index % len(ids)], "arguments": arguments})
    return items


def _time(manifest: Path) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    result = subprocess.run(
        [FALBIND, "validate", "--manifest", str(manifest), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1):
        raise SystemExit(f"falbind validate failed: {result.stderr.strip()}")
    report: dict[str, Any] = json.loads(result.stdout)
    return elapsed, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=25)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    items = _manifest(options.requests, options.endpoints)
    endpoints = len({item["endpoint"] for item in items})
    with tempfile.TemporaryDirectory(prefix="falbind-bench-validate-") as folder:
        for suffix, dump in (
            ("json", lambda data: json.dumps(data, indent=1)),
            ("yaml", lambda data: yaml.safe_dump(data, sort_keys=False)),
        ):
            manifest = Path(folder) / f"manifest.{suffix}"
            manifest.write_text(dump(items), encoding="utf-8")
            times = []
            for _ in range(options.runs):
                elapsed, report = _time(manifest)
                times.append(elapsed)
            print(
                f"validate --manifest ({suffix}): {report['checked']} requests over {endpoints} "
                f"endpoints, {len(report['errors'])} errors: median {statistics.median(times):.2f} s, "
                f"min {min(times):.2f} s ({options.runs} runs; target < {TARGET_SECONDS:.0f} s)"
            )
    started = time.perf_counter()
    subprocess.run([FALBIND, "--help"], capture_output=True, check=True)
    print(
        f"for scale, `falbind --help` (interpreter + CLI start): {time.perf_counter() - started:.2f} s"
    )


if __name__ == "__main__":
    main()
