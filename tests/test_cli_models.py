"""``falbind models`` and ``falbind show`` through the installed entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from workspace import assert_one_line_failure, project_digest

import falbind

from support import run_cli

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

SCHNELL = "fal-ai/flux/schnell"


def test_models_lists_bound_then_unbound_with_reasons() -> None:
    result = run_cli("models")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "PYTHON", "NAME", "CATEGORY"]
    assert [SCHNELL, "flux_schnell", "text-to-image"] in [line.split() for line in lines]
    assert f"{len(falbind.ENDPOINTS)} bound endpoint(s)" in lines
    tail = lines[lines.index(f"unbound ({len(falbind.UNBOUND)}):") + 1 :]
    assert tail == [f"  {i}: {reason}" for i, reason in sorted(falbind.UNBOUND.items())]


def test_models_filters_by_category_and_search_as_json() -> None:
    result = run_cli("models", "--category", "llm", "--format", "json")
    listed = json.loads(result.stdout)
    expected = sorted(s.id for s in falbind.ENDPOINTS.values() if s.category == "llm")
    assert sorted(row["id"] for row in listed["endpoints"]) == expected
    assert listed["unbound"] == []  # unbound endpoints have no category in the index
    found = json.loads(run_cli("models", "--search", "SCHNELL", "--format", "json").stdout)
    assert {row["id"] for row in found["endpoints"]} == {SCHNELL, "fal-ai/flux-1/schnell"}
    row = next(r for r in found["endpoints"] if r["id"] == SCHNELL)
    assert row["input_model"] == "FluxSchnellInput"
    assert row["module"] == "falbind_generated.endpoints.fal_ai__flux_schnell"


def test_models_imports_no_endpoint_module() -> None:
    probe = (
        "import sys\n"
        "from falbind.cli.main import main\n"
        "main(['models', '--format', 'json'])\n"
        "sys.stderr.write(str([m for m in sys.modules if m.startswith('falbind_generated.endpoints.')]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stderr == "[]"
    assert len(json.loads(result.stdout)["endpoints"]) == len(falbind.ENDPOINTS)


def test_show_prints_a_parameter_table() -> None:
    result = run_cli("show", SCHNELL)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"{SCHNELL} (text-to-image): FluxSchnellInput -> FluxSchnellOutput"
    header = next(line for line in lines if line.startswith("NAME"))
    assert header.split() == ["NAME", "TYPE", "REQUIRED", "DEFAULT", "ALLOWED", "DESCRIPTION"]
    rows = {line.split()[0]: line for line in lines if line and not line.startswith(" ")}
    assert rows["prompt"].split()[:3] == ["prompt", "string", "yes"]
    steps = rows["num_inference_steps"]
    assert steps.split()[:4] == ["num_inference_steps", "integer", "no", "4"]
    assert ">= 1; <= 12" in steps and "The number of inference steps to perform." in steps
    assert 'one of "jpeg", "png"' in rows["output_format"]
    assert "ImageSize:" in lines  # the referenced model's fields follow
    assert any(line.split()[:2] == ["width", "integer"] and "> 0" in line for line in lines)


def test_show_json_matches_the_model() -> None:
    result = run_cli("show", "flux_schnell", "--format", "json")  # Python name accepted
    shown = json.loads(result.stdout)
    model = falbind.ENDPOINTS[SCHNELL].input_model
    assert shown["endpoint"] == SCHNELL
    assert [p["name"] for p in shown["parameters"]] == [
        info.alias or name for name, info in model.model_fields.items()
    ]
    required = {p["name"] for p in shown["parameters"] if p["required"]}
    assert required == {n for n, info in model.model_fields.items() if info.is_required()}
    steps = next(p for p in shown["parameters"] if p["name"] == "num_inference_steps")
    assert (steps["has_default"], steps["default"], steps["allowed"]) == (
        True,
        4,
        [">= 1", "<= 12"],
    )
    assert "ImageSize" in shown["models"]


@pytest.mark.parametrize(
    ("endpoint", "reasons"),
    [
        ("fal-ai/flux/schnel", ("not a bound fal endpoint", "did you mean 'fal-ai/flux/schnell'")),
        ("openrouter/router/openai/v1/responses", ("could not be bound", "$ref")),
    ],
)
def test_show_unknown_or_unbound_endpoint_is_one_line(
    endpoint: str, reasons: tuple[str, ...]
) -> None:
    before = project_digest()
    result = run_cli("show", endpoint)
    assert_one_line_failure(result, *reasons)
    assert result.returncode == 2
    assert project_digest() == before
