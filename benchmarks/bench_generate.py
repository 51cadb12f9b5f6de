"""Generator speed (issue 11): `falbind generate --full` and `falbind check`. Prints figures;
asserts nothing about time.

    python benchmarks/bench_generate.py [--rounds 5] [--baseline REF]

Each round regenerates the whole registry into a fresh scratch folder (`generate --full`), then
runs `check` on that folder three times. Wall and CPU time are measured per run (CPU includes the
worker processes and ruff); medians and the spread (min-max) are printed beside the targets:
`generate --full` <= 6 s wall, `check` <= 0.5 s wall.

`--baseline REF` also measures the generator of a git revision (e.g. `main`), its `codegen/`
exported to a scratch folder and put first on PYTHONPATH (the runtime, registry and tools stay
this checkout's), interleaved round by round with the working tree's, and prints the ratios and
whether both produced the same endpoint and package files (the manifests differ by the
generator's fingerprint).

The machine is shared, so the script also prints the load average and the CPU time of a fixed
pure-Python loop: figures from runs on differently loaded machines compare only through it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "registry"
FULL_TARGET = 6.0
CHECK_TARGET = 0.5
CHECKS_PER_ROUND = 3


@dataclass
class Variant:
    name: str
    env: dict[str, str]
    out: Path
    full: list[tuple[float, float]] = field(default_factory=list)
    check: list[tuple[float, float]] = field(default_factory=list)


def run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, the command's child processes included)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=output, stderr=output)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            output.seek(0)
            sys.exit(f"{' '.join(command)} failed:\n{output.read().decode(errors='replace')}")
    return wall, usage.ru_utime + usage.ru_stime


def falbind(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "falbind", *map(str, args)]


def calibration() -> float:
    """CPU seconds of a fixed pure-Python loop (10 million additions), best of three."""
    code = "import time\nt=time.process_time()\ns=0\nfor i in range(10**7): s+=i\nprint(time.process_time()-t)"
    return min(
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
        for _ in range(3)
    )


def baseline_env(ref: str, scratch: Path) -> dict[str, str]:
    source = scratch / "baseline-src"
    source.mkdir()
    archive = subprocess.run(
        ["git", "archive", ref, "codegen"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    env = {**os.environ, "PYTHONPATH": str(source / "codegen")}
    found = subprocess.run(
        [sys.executable, "-c", "import falbind_codegen; print(falbind_codegen.__file__)"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not found.startswith(str(source)):
        sys.exit(f"the baseline's falbind_codegen is not the one imported ({found})")
    return env


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.name != "_manifest.json"
    }


def summary(samples: list[tuple[float, float]], index: int) -> tuple[float, str]:
    values = [sample[index] for sample in samples]
    median = statistics.median(values)
    return median, f"{median:6.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def report(label: str, variants: list[Variant], kind: str, target: float) -> None:
    for variant in variants:
        samples = getattr(variant, kind)
        wall, wall_text = summary(samples, 0)
        _, cpu_text = summary(samples, 1)
        verdict = "met" if wall <= target else "not met"
        name = f"{label} [{variant.name}]"
        print(f"{name:<32} wall {wall_text}  CPU {cpu_text}  target <= {target} s wall: {verdict}")
    if len(variants) == 2:
        (ours_wall, ours_cpu), (base_wall, base_cpu) = (
            (summary(getattr(v, kind), 0)[0], summary(getattr(v, kind), 1)[0]) for v in variants
        )
        print(
            f"{label + ' ratio':<32} wall {ours_wall / base_wall:.2f}x, "
            f"CPU {ours_cpu / base_cpu:.2f}x the baseline's"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", metavar="REF", help="git revision to compare with")
    args = parser.parse_args()

    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
        f"10M-addition loop {calibration():.2f} s CPU"
    )
    with tempfile.TemporaryDirectory(prefix="falbind-bench-generate-") as tmp:
        scratch = Path(tmp)
        variants = [Variant("this tree", dict(os.environ), scratch / "this" / "falbind_generated")]
        if args.baseline:
            variants.append(
                Variant(
                    args.baseline,
                    baseline_env(args.baseline, scratch),
                    scratch / "baseline" / "falbind_generated",
                )
            )
        for round_number in range(args.rounds):
            # Interleaved, and the order alternates: neither side always runs on a warmer cache.
            order = variants if round_number % 2 == 0 else variants[::-1]
            for variant in order:
                shutil.rmtree(variant.out, ignore_errors=True)
                variant.full.append(
                    run(
                        falbind("generate", "--full", "--registry", REGISTRY, "--out", variant.out),
                        variant.env,
                    )
                )
            for _ in range(CHECKS_PER_ROUND):
                for variant in order:
                    variant.check.append(
                        run(
                            falbind("check", "--registry", REGISTRY, "--out", variant.out),
                            variant.env,
                        )
                    )
            print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
        print(
            f"{args.rounds} rounds; load average now {os.getloadavg()[0]:.2f}; "
            f"each `check` on the tree its own `generate --full` wrote ({CHECKS_PER_ROUND} per round)"
        )
        report("generate --full", variants, "full", FULL_TARGET)
        report("check", variants, "check", CHECK_TARGET)
        if len(variants) == 2:
            same = files_of(variants[0].out) == files_of(variants[1].out)
            print(f"output identical to the baseline's (manifest aside): {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
