"""``falbind sizes`` through the installed entry point, and docs/sizes.md kept equal to it."""

from __future__ import annotations

import json

import pytest
from workspace import assert_one_line_failure

import falbind
from falbind.images.sizing import plan_for, size_table
from falbind.models.bindings import sizes as _sizes

from starting_set import STARTING_SET
from support import ROOT, run_cli

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

DOC = ROOT / "docs" / "sizes.md"
TABLE_START = "| endpoint |"


def test_docs_sizes_md_is_the_commands_current_output() -> None:
    result = run_cli("sizes")
    assert result.returncode == 0, result.stderr
    doc = DOC.read_text(encoding="utf-8")
    intro, _, _ = doc.partition(TABLE_START)
    assert intro.strip(), "docs/sizes.md lost its introduction"
    assert doc[len(intro) :] == result.stdout, (
        "docs/sizes.md is out of date: replace its table with the output of `falbind sizes`"
    )
    text_to_image = [i for i, s in falbind.ENDPOINTS.items() if s.category == "text-to-image"]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `")]
    assert len(rows) == len(text_to_image)
    assert set(STARTING_SET) <= {row.split("`")[1] for row in rows}


def test_named_endpoints_by_id_alias_or_python_name_in_the_given_order() -> None:
    result = run_cli("sizes", "flux-ultra", "fal-ai/flux/dev", "recraft_v3")
    assert result.returncode == 0, result.stderr
    expected = ["fal-ai/flux-pro/v1.1-ultra", "fal-ai/flux/dev", "fal-ai/recraft-v3"]
    assert result.stdout == size_table(expected)
    lines = result.stdout.splitlines()
    assert lines[0] == "| endpoint | " + " | ".join(_sizes.OPENAI_SIZES) + " |"
    assert "| `fal-ai/flux/dev` | 256x256 | 512x512 | 1024x1024 | 1792x1024 |" in lines[3]


def test_json_gives_each_plan_with_its_parameters_and_note() -> None:
    result = run_cli("sizes", "fal-ai/imagen4/preview", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sizes"] == list(_sizes.OPENAI_SIZES)
    (entry,) = report["endpoints"]
    assert (entry["endpoint"], entry["kind"], entry["parameter"]) == (
        "fal-ai/imagen4/preview",
        "aspect_ratio",
        "aspect_ratio",
    )
    landscape = entry["sizes"]["1536x1024"]
    plan = plan_for("fal-ai/imagen4/preview", "1536x1024")
    assert landscape == {
        "params": {"aspect_ratio": "4:3"},
        "delivered": "aspect ratio 4:3",
        "adjusted": True,
        "note": plan.note,
    }
    assert entry["sizes"]["auto"] == {
        "params": {},
        "delivered": "model default",
        "adjusted": False,
        "note": None,
    }


def test_category_adds_every_endpoint_of_it() -> None:
    result = run_cli("sizes", "--category", "image-to-image", "--format", "json")
    assert result.returncode == 0, result.stderr
    listed = [e["endpoint"] for e in json.loads(result.stdout)["endpoints"]]
    expected = sorted(i for i, s in falbind.ENDPOINTS.items() if s.category == "image-to-image")
    assert listed == expected and listed


def test_unknown_endpoint_fails_in_one_line_with_a_suggestion() -> None:
    assert_one_line_failure(run_cli("sizes", "fal-ai/flux/shnell"), "did you mean", "flux/schnell")


def test_empty_category_fails_in_one_line() -> None:
    assert_one_line_failure(run_cli("sizes", "--category", "no-such"), "no bound endpoint")
