"""Generator and import figures (issue 2). Prints figures; asserts nothing.

    python benchmarks/bench_codegen.py [--competitors]

- full regeneration of the whole registry into a scratch folder (target < 60 s on 2 cores);
- `falbind check` on the unchanged committed tree (target < 5 s);
- `import falbind` with every endpoint registered, against `import fal_client` measured in the
  same run (target: no slower), first access to one endpoint's models (target < 50 ms), and peak
  memory after importing one endpoint against fal_client's import.

fal_client is looked up in this interpreter, then in `benchmarks/.env-competitors` (created with
`--competitors`, which pip-installs fal-client there).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FALBIND = str(Path(sys.executable).parent / "falbind")
COMPETITORS = ROOT / "benchmarks" / ".env-competitors"

PROBE = """
import resource, sys, time
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
{extra}
t2 = time.perf_counter()
print(t1 - t0, t2 - t1, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
FIRST_ACCESS = "falbind.ENDPOINTS['fal-ai/flux/dev'].input_model; falbind.ENDPOINTS['fal-ai/flux/dev'].output_model"
FIRST_USE = FIRST_ACCESS + "; falbind.ENDPOINTS['fal-ai/flux/dev'].input_model(prompt='x')"


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - started


def probe(
    python: str, module: str, extra: str = "pass", runs: int = 7
) -> tuple[float, float, float]:
    """Median import seconds, median extra seconds, median peak RSS MiB (fresh process each)."""
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [python, "-c", PROBE.format(module=module, extra=extra)],
            check=True,
            capture_output=True,
            text=True,
            cwd=tempfile.gettempdir(),
        ).stdout.split()
        samples.append(tuple(float(x) for x in out))
    return tuple(statistics.median(s[i] for s in samples) for i in range(3))  # type: ignore[return-value]


def competitor_python(install: bool) -> str | None:
    if (
        subprocess.run([sys.executable, "-c", "import fal_client"], capture_output=True).returncode
        == 0
    ):
        return sys.executable
    python = COMPETITORS / "bin" / "python"
    if install and not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(COMPETITORS)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "fal-client"], check=True)
    return str(python) if python.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--competitors", action="store_true", help="install fal-client into a side venv"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        full = timed([FALBIND, "generate", "--full", "--out", str(Path(scratch) / "out")])
    check = min(timed([FALBIND, "check"]) for _ in range(3))
    endpoints = subprocess.run(
        [sys.executable, "-c", "import falbind; print(len(falbind.ENDPOINTS))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"full regeneration of {endpoints} endpoints: {full:.1f} s (target < 60 s)")
    print(f"falbind check, unchanged tree:        {check:.2f} s (target < 5 s)")

    ours_import, first_access, ours_rss = probe(sys.executable, "falbind", FIRST_ACCESS)
    _, warm_access, _ = probe(sys.executable, "falbind, falbind.models.base", FIRST_ACCESS)
    _, first_use, used_rss = probe(sys.executable, "falbind, falbind.models.base", FIRST_USE)
    print(f"import falbind:                       {ours_import * 1000:.0f} ms")
    print(
        f"first access to one endpoint's models: {first_access * 1000:.1f} ms cold (imports pydantic)"
    )
    print(f"  ... with pydantic + runtime loaded:  {warm_access * 1000:.1f} ms (target < 50 ms)")
    print(
        f"  ... plus the first validation:       {first_use * 1000:.1f} ms (validators build on first use)"
    )
    print(
        f"peak RSS after importing one endpoint: {ours_rss:.1f} MiB ({used_rss:.1f} MiB after validating)"
    )
    python = competitor_python(args.competitors)
    if python is None:
        print("fal_client not installed: run with --competitors for the ratios")
        return
    theirs_import, _, theirs_rss = probe(python, "fal_client")
    print(
        f"import fal_client:                    {theirs_import * 1000:.0f} ms, peak RSS {theirs_rss:.1f} MiB"
    )
    print(f"ratio import falbind / fal_client:     {ours_import / theirs_import:.2f} (target <= 1)")
    print(f"ratio peak RSS falbind / fal_client:   {ours_rss / theirs_rss:.2f} (target <= 1)")


if __name__ == "__main__":
    main()
