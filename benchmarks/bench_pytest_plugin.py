"""What falbind's pytest plugin costs a pytest run that does not use its fixtures (figures only).

    python benchmarks/bench_pytest_plugin.py [--rounds R]

Installing falbind registers ``falbind.testing.pytest_plugin`` (entry point ``falbind``), so every
pytest run in that environment loads it. Each round runs, in turn, the same one-test session:

* ``without``: ``-p no:falbind`` (the plugin disabled: the baseline);
* ``with``: the plugin loaded as every user gets it;
* ``eager``: the plugin plus ``-p falbind.testing.server``, i.e. what loading the server and the
  clients (httpx, pydantic, aiohttp) at plugin import cost before the fixtures became lazy.

The variants are interleaved round by round so drift in machine load hits all of them alike;
medians are reported, with ``with``/``without`` as the ratio. Target: no measurable difference
(ratio within the round-to-round noise, about 1.0).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {
    "without": ["-p", "no:falbind"],
    "with": [],
    "eager": ["-p", "falbind.testing.server"],
}
TEST = "def test_nothing_of_falbind():\n    assert True\n"


def _session(folder: Path, extra: list[str]) -> float:
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "--rootdir", str(folder), "-c", str(folder / "pytest.ini"), *extra, str(folder),
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=folder)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"pytest failed ({' '.join(extra)}): {result.stdout}{result.stderr}")
    return elapsed


IMPORT_PROBE = """
import time, pytest
started = time.perf_counter()
import falbind.testing.pytest_plugin
{extra}
print(time.perf_counter() - started)
"""


def _import_cost(extra: str) -> float:
    """Seconds to import the plugin (plus ``extra``) in a fresh interpreter that already has
    pytest: the plugin's own share of a session's startup, without pytest's noise."""
    probe = IMPORT_PROBE.format(extra=extra)
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return float(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="falbind-bench-pytest-") as tmp:
        folder = Path(tmp)
        (folder / "test_idle.py").write_text(TEST, encoding="utf-8")
        (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        for extra in VARIANTS.values():  # warm the file cache and bytecode once
            _session(folder, extra)
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(args.rounds):
            for name, extra in VARIANTS.items():
                times[name].append(_session(folder, extra))
        imports: dict[str, list[float]] = {"lazy": [], "eager": []}
        for _ in range(args.rounds):
            imports["lazy"].append(_import_cost(""))
            imports["eager"].append(
                _import_cost("import falbind.testing.server, falbind.client.clients")
            )
    medians = {name: statistics.median(values) for name, values in times.items()}
    spread = {
        name: statistics.quantiles(values, n=4) if len(values) >= 4 else [min(values), max(values)]
        for name, values in times.items()
    }
    print(f"pytest session with one idle test, {args.rounds} interleaved rounds (median, IQR):")
    for name in VARIANTS:
        low, high = spread[name][0], spread[name][-1]
        print(f"  {name:8} {medians[name] * 1000:7.1f} ms  ({low * 1000:.1f}-{high * 1000:.1f} ms)")
    print(
        f"plugin cost: {(medians['with'] - medians['without']) * 1000:+.1f} ms, "
        f"ratio with/without {medians['with'] / medians['without']:.3f}"
    )
    print(
        f"eager imports would cost: {(medians['eager'] - medians['without']) * 1000:+.1f} ms, "
        f"ratio {medians['eager'] / medians['without']:.3f}"
    )

    lazy, eager = (statistics.median(imports[k]) * 1000 for k in ("lazy", "eager"))
    print(
        f"importing the plugin after pytest: {lazy:.1f} ms "
        f"(with the server and clients eagerly: {eager:.1f} ms)"
    )


if __name__ == "__main__":
    main()
