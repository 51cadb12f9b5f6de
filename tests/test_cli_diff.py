"""``falbind diff OLD NEW`` on real history pairs (history/ is older, endpoints/ is newer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from workspace import assert_one_line_failure, current_doc, older_doc

from support import run_cli

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

DIA = "fal-ai/dia-tts/voice-clone"
PEN = "fal-ai/flux-2-lora-gallery/ballpoint-pen-sketch"
PIXVERSE = "fal-ai/pixverse/v5/transition"
COMPATIBLE = "fal-ai/clarity-upscaler"  # older-2 -> older-1 only loosens a bound


@pytest.mark.parametrize(
    ("endpoint_id", "expected_lines"),
    [
        (
            DIA,
            [
                "input.ref_audio_url: field removed; requests that still set it are invalid [field_removed]",
                "input.ref_text: field removed; requests that still set it are invalid [field_removed]",
            ],
        ),
        (
            PEN,
            ["input.num_inference_steps: lower bound changed from >= 1 to >= 4 [bound_tightened]"],
        ),
        (
            PIXVERSE,
            ["input.end_image_url: became required; requests without it are rejected"],
        ),
    ],
)
def test_breaking_pairs_exit_1_and_name_the_changes(
    endpoint_id: str, expected_lines: list[str]
) -> None:
    result = run_cli("diff", older_doc(endpoint_id), current_doc(endpoint_id))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{endpoint_id}: ")
    assert lines[1] == "BREAKING"
    breaking = lines[1 : lines.index("compatible")] if "compatible" in lines else lines[1:]
    for expected in expected_lines:
        assert any(line.strip().startswith(expected) for line in breaking), expected


def test_json_format_is_the_diff_as_data() -> None:
    result = run_cli("diff", older_doc(PEN), current_doc(PEN), "--format", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["endpoint_id"] == PEN
    assert report["is_breaking"] is True
    assert report["counts"] == {"breaking": 1, "compatible": 0}
    change = report["changes"][0]
    assert (change["path"], change["kind"], change["old"], change["new"]) == (
        "input.num_inference_steps",
        "bound_tightened",
        ">= 1",
        ">= 4",
    )


def test_reverse_direction_is_also_classified() -> None:
    result = run_cli("diff", current_doc(DIA), older_doc(DIA), "--format", "json")
    kinds = {(c["path"], c["kind"], c["breaking"]) for c in json.loads(result.stdout)["changes"]}
    assert ("input.ref_audio_url", "field_required_added", True) in kinds
    assert result.returncode == 1


def test_compatible_changes_exit_0() -> None:
    # The 2026-06 data holds an intermediate version of this endpoint (older-1) between the
    # seed's minimum being dropped and put back: that step only loosens the bound.
    result = run_cli("diff", older_doc(COMPATIBLE, 2), older_doc(COMPATIBLE, 1))
    assert result.returncode == 0, result.stdout
    assert "0 breaking" in result.stdout.splitlines()[0]
    assert "compatible" in result.stdout


def test_identical_documents_exit_0() -> None:
    result = run_cli("diff", current_doc(PEN), current_doc(PEN))
    assert result.returncode == 0
    assert result.stdout.strip() == f"{PEN}: 0 change(s), 0 breaking, 0 compatible"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "file not found"),
        ("{oops", "invalid JSON"),
        ("[]", "not an OpenAPI document"),
        ('{"openapi": "3.0.4", "paths": {}}', "cannot tell the endpoint id"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, content: str | None, reason: str) -> None:
    old = tmp_path / "old.json"
    if content is not None:
        old.write_text(content, encoding="utf-8")
    result = run_cli("diff", old, current_doc(PEN))
    assert_one_line_failure(result, "old.json", reason)
    assert result.returncode == 2


def test_documents_of_different_endpoints_exit_2() -> None:
    result = run_cli("diff", current_doc(DIA), current_doc(PEN))
    assert_one_line_failure(result, "different endpoints")
    assert result.returncode == 2
