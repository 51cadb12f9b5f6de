"""Cold start of a fresh interpreter, step by step (issue 11; figures only, asserts nothing).

    python benchmarks/bench_cold_start.py [--rounds N]

Each round starts new interpreters and times, in each:

* ``import falbind`` (nothing but the lazy export table: no pydantic, no httpx);
* first access: ``from falbind import FalClient`` (the client and its HTTP stack; pydantic's
  ``BaseModel`` machinery comes with it);
* ``falbind.ENDPOINTS["fal-ai/flux/schnell"].input_model`` (the endpoint's generated module);
* first validation of that model (pydantic builds the deferred validator, and scans for its
  plugins once per process);
* a second validation (the steady state).

References measured in the same rounds, in their own fresh interpreters: ``import pydantic``
then a first validation of a small ``BaseModel`` (what any pydantic app pays), and
``import httpx``. Medians over the rounds, with the lowest and highest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

FALBIND = """
import json, time
t0 = time.perf_counter()
import falbind
t1 = time.perf_counter()
import sys
pydantic_after_import = "pydantic" in sys.modules
from falbind import FalClient
t2 = time.perf_counter()
model = falbind.ENDPOINTS["fal-ai/flux/schnell"].input_model
t3 = time.perf_counter()
model(prompt="a red fox")
t4 = time.perf_counter()
model(prompt="a blue fox")
t5 = time.perf_counter()
print(json.dumps({
    "import falbind": t1 - t0,
    "from falbind import FalClient": t2 - t1,
    "ENDPOINTS[...].input_model": t3 - t2,
    "first validation": t4 - t3,
    "second validation": t5 - t4,
    "pydantic after import falbind": pydantic_after_import,
}))
"""

PYDANTIC = """
import json, time
t0 = time.perf_counter()
import pydantic
class Small(pydantic.BaseModel):
    prompt: str
t1 = time.perf_counter()
Small(prompt="a red fox")
t2 = time.perf_counter()
import httpx
t3 = time.perf_counter()
print(json.dumps({
    "import pydantic + a small model": t1 - t0,
    "its first validation": t2 - t1,
    "import httpx (after pydantic)": t3 - t2,
}))
"""


def fresh(code: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    figures: dict[str, float] = json.loads(result.stdout.splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {}
    pydantic_loaded = False
    for round_ in range(args.rounds):
        codes = (FALBIND, PYDANTIC) if round_ % 2 == 0 else (PYDANTIC, FALBIND)
        for code in codes:
            for name, value in fresh(code).items():
                if isinstance(value, bool):
                    pydantic_loaded |= value
                else:
                    samples.setdefault(name, []).append(value * 1000)
    print(f"{args.rounds} rounds, fresh interpreters, median (lowest-highest) in ms")
    for name, values in samples.items():
        print(
            f"  {name:<34} {statistics.median(values):7.1f}  ({min(values):.1f}-{max(values):.1f})"
        )
    print(f"  pydantic imported by `import falbind`: {'yes' if pydantic_loaded else 'no'}")


if __name__ == "__main__":
    main()
