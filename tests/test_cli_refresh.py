"""``falbind refresh`` against FakeCatalogue on 127.0.0.1, through the installed entry point.

The workspace registry holds the fixture endpoints plus three endpoints at their *older*
``history/`` version; the fake catalogue serves ``endpoints/`` (the newer documents), so a
refresh must report what fal changed, old -> new, and classify it.
"""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from workspace import (
    CATALOGUE,
    ENDPOINT_DOCS,
    Workspace,
    assert_one_line_failure,
    current_doc,
    fixture_workspace,
    load_json,
    older_doc,
)

from falbind.testing import FakeCatalogue
from falbind.tooling.progress import Progress
from falbind_codegen.catalogue import CatalogueEntry
from falbind_codegen.refresh import plan_refresh
from falbind_codegen.registry import load_registry

from support import FALBIND, run_cli

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

DIA = "fal-ai/dia-tts/voice-clone"
PEN = "fal-ai/flux-2-lora-gallery/ballpoint-pen-sketch"
PIXVERSE = "fal-ai/pixverse/v5/transition"
CHANGED = (DIA, PEN, PIXVERSE)
NEW = ("fal-ai/flux/dev", "fal-ai/recraft/v3/text-to-image")
FIXTURE_LISTED = ("fal-ai/flux-pro/v1.1-ultra", "fal-ai/flux/schnell", "fal-ai/wan-ati")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """Fixture registry + the three endpoints at their older version, generated."""
    workspace = fixture_workspace(tmp_path_factory.mktemp("refresh") / "base")
    for endpoint_id in CHANGED:
        result = run_cli("add", endpoint_id, "--schema", older_doc(endpoint_id), *workspace.paths())
        assert result.returncode == 0, result.stderr
    return workspace


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A subset of the real catalogue: listed fixture endpoints, the changed and the new ones."""
    wanted = {*CHANGED, *NEW, *FIXTURE_LISTED}
    models = [m for m in load_json(CATALOGUE)["models"] if m["endpoint_id"] in wanted]
    assert len(models) == len(wanted)
    path = tmp_path_factory.mktemp("catalogue") / "catalogue.json"
    path.write_text(json.dumps({"models": models}), encoding="utf-8")
    return path


@pytest.fixture
def ws(base: Workspace, tmp_path: Path) -> Workspace:
    return base.copy_to(tmp_path / "ws")


@pytest.fixture
def fake(catalogue: Path) -> Iterator[FakeCatalogue]:
    with FakeCatalogue(
        catalogue, ENDPOINT_DOCS, page_size=3, expanded_page_size=2, fail_first_with_429=True
    ) as server:
        yield server


def refresh(ws: Workspace, fake: FakeCatalogue, *args: str) -> Any:
    return run_cli(
        "refresh",
        "--catalogue-url",
        fake.url,
        "--openapi-url",
        fake.openapi_url,
        *ws.paths(),
        *args,
    )


def changes(report: dict[str, Any], endpoint_id: str) -> list[dict[str, Any]]:
    item = next(i for i in report["items"] if i["endpoint_id"] == endpoint_id)
    assert item["kind"] == "changed"
    result: list[dict[str, Any]] = item["diff"]["changes"]
    return result


def test_report_only_names_breaking_changes_and_writes_nothing(
    ws: Workspace, fake: FakeCatalogue
) -> None:
    before = ws.digest()
    result = refresh(ws, fake)

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "catalogue: 8 endpoint(s); 2 new, 3 changed, 0 deprecated, 1 removed" in out
    for endpoint_id in NEW:
        assert f"+ new        {endpoint_id} (text-to-image)" in out
    assert f"~ changed    {DIA}: 2 change(s), 2 breaking" in out
    assert "input.ref_audio_url: field removed" in out
    assert "input.ref_text: field removed" in out
    assert (
        "input.num_inference_steps: lower bound changed from >= 1 to >= 4 [bound_tightened]" in out
    )
    assert "input.end_image_url: became required" in out
    assert "- removed    acme/untrusted-v1" in out
    assert "report only (stdin is not a terminal): pass --yes to apply 6 change(s)" in out
    assert ws.digest() == before
    # 429 once, then several cursor pages of the expanded listing.
    listings = [r for r in fake.requests if r.startswith("/v1/models")]
    assert len(listings) >= 5
    assert all("expand=openapi-3.0" in r for r in listings)
    assert any("cursor=" in r for r in listings)


def test_json_report_classifies_real_history_pairs(ws: Workspace, fake: FakeCatalogue) -> None:
    result = refresh(ws, fake, "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["counts"] == {"new": 2, "changed": 3, "deprecated": 0, "removed": 1}
    assert report["applied"] == [] and report["mode"] == "report"

    dia = {(c["path"], c["kind"]): c["breaking"] for c in changes(report, DIA)}
    assert dia == {
        ("input.ref_audio_url", "field_removed"): True,
        ("input.ref_text", "field_removed"): True,
    }

    pen = changes(report, PEN)
    assert [(c["path"], c["kind"], c["breaking"], c["old"], c["new"]) for c in pen] == [
        ("input.num_inference_steps", "bound_tightened", True, ">= 1", ">= 4")
    ]

    pixverse = {(c["path"], c["kind"]): c["breaking"] for c in changes(report, PIXVERSE)}
    assert pixverse[("input.end_image_url", "field_became_required")] is True
    assert pixverse[("input.seed", "nullable_added")] is False  # callers may now send null
    assert pixverse[("output.video.file_data", "field_removed")] is True


def test_yes_applies_everything_and_regenerates(ws: Workspace, fake: FakeCatalogue) -> None:
    result = refresh(ws, fake, "--yes")

    assert result.returncode == 0, result.stderr
    assert "applied 6 of 6 change(s)" in result.stdout
    assert "(5 rendered, 3 reused)" in result.stdout  # only new and changed endpoints rendered
    ids = [e["id"] for e in yaml.safe_load((ws.registry / "models.yaml").read_text())["endpoints"]]
    assert ids == sorted([*CHANGED, *NEW, *FIXTURE_LISTED])  # acme/untrusted-v1 removed
    for endpoint_id in (*CHANGED, *NEW):
        stored = ws.registry / "schemas" / current_doc(endpoint_id).name
        assert stored.read_bytes() == current_doc(endpoint_id).read_bytes()
    assert not (ws.registry / "schemas" / "acme__untrusted-v1.json").exists()
    assert not (ws.out / "endpoints" / "acme__untrusted_v1.py").exists()
    assert run_cli("check", *ws.paths()).returncode == 0
    again = refresh(ws, fake)
    assert "the registry is up to date with the catalogue" in again.stdout


def test_dry_run_and_only_new_and_category(ws: Workspace, fake: FakeCatalogue) -> None:
    before = ws.digest()
    dry = refresh(ws, fake, "--yes", "--dry-run")
    assert "dry run: 6 change(s) not applied" in dry.stdout
    only_new = json.loads(refresh(ws, fake, "--only-new", "--format", "json").stdout)
    assert {i["endpoint_id"] for i in only_new["items"]} == set(NEW)
    audio = json.loads(refresh(ws, fake, "--category", "audio-to-audio", "--format", "json").stdout)
    assert [(i["kind"], i["endpoint_id"]) for i in audio["items"]] == [("changed", DIA)]
    assert audio["catalogue_endpoints"] == 1
    assert ws.digest() == before


def test_history_override_reverses_the_direction(ws: Workspace, catalogue: Path) -> None:
    """Serve the older document again (FakeCatalogue overrides) to a registry that moved on:
    the dropped required fields come back, which is breaking for callers."""
    applied = ws.copy_to(ws.root.parent / "applied")
    with FakeCatalogue(catalogue, ENDPOINT_DOCS) as newer:
        assert refresh(applied, newer, "--yes").returncode == 0
    overrides = {DIA: load_json(older_doc(DIA))}
    with FakeCatalogue(catalogue, ENDPOINT_DOCS, overrides=overrides) as older:
        report = json.loads(refresh(applied, older, "--format", "json").stdout)
    assert [i["endpoint_id"] for i in report["items"]] == [DIA]
    kinds = {(c["path"], c["kind"], c["breaking"]) for c in changes(report, DIA)}
    assert kinds == {
        ("input.ref_audio_url", "field_required_added", True),
        ("input.ref_text", "field_required_added", True),
    }


def test_malformed_catalogue_page_is_one_line_and_writes_nothing(
    ws: Workspace, catalogue: Path
) -> None:
    before = ws.digest()
    with FakeCatalogue(catalogue, ENDPOINT_DOCS, expanded_page_size=2, malformed_page=2) as fake:
        result = refresh(ws, fake, "--yes")
    assert_one_line_failure(
        result, "cannot read the catalogue", "catalogue page 2 is not valid JSON"
    )
    assert result.returncode == 2
    assert ws.digest() == before


def test_catalogue_error_status_is_one_line(ws: Workspace, fake: FakeCatalogue) -> None:
    before = ws.digest()
    result = run_cli("refresh", "--catalogue-url", f"{fake.url}/wrong-base", *ws.paths())
    assert_one_line_failure(result, "cannot read the catalogue", "HTTP 404", "no route")
    assert ws.digest() == before


def test_dangling_ref_in_a_new_document_is_refused(ws: Workspace, tmp_path: Path) -> None:
    document = load_json(current_doc("fal-ai/flux/dev"))
    document["components"]["schemas"]["FluxDevInput"]["properties"]["seed"] = {
        "$ref": "#/components/schemas/Gone"
    }
    listing = tmp_path / "catalogue.json"
    models = [m for m in load_json(CATALOGUE)["models"] if m["endpoint_id"] == "fal-ai/flux/dev"]
    listing.write_text(json.dumps({"models": models}), encoding="utf-8")
    before = ws.digest()
    overrides = {"fal-ai/flux/dev": document}
    with FakeCatalogue(listing, ENDPOINT_DOCS, overrides=overrides) as fake:
        result = refresh(ws, fake, "--only-new", "--yes")
    assert result.returncode == 1
    problem = [line for line in result.stdout.splitlines() if "cannot be applied" in line]
    assert len(problem) == 1 and "cannot be bound" in problem[0] and "'Gone'" in problem[0]
    assert ws.digest() == before


def test_missing_expanded_document_is_fetched(base: Workspace) -> None:
    """A catalogue entry without ``openapi`` is completed from the per-endpoint URL."""
    registry = load_registry(base.registry)
    fetched: list[str] = []

    def fetch(endpoint_id: str) -> dict[str, Any]:
        fetched.append(endpoint_id)
        result: dict[str, Any] = load_json(current_doc(endpoint_id))
        return result

    entry = CatalogueEntry("fal-ai/flux/dev", "text-to-image", "active", "FLUX.1 [dev]")
    deprecated = CatalogueEntry("fal-ai/old", "text-to-image", "deprecated", "old")
    items = plan_refresh(registry, {e.endpoint_id: e for e in (entry, deprecated)}, fetch)
    assert fetched == ["fal-ai/flux/dev"]
    new = next(i for i in items if i.kind == "new")
    assert new.actionable and new.document is not None
    assert new.document.raw == current_doc("fal-ai/flux/dev").read_bytes()
    old = next(i for i in items if i.kind == "deprecated")
    assert not old.actionable and old.note == "status deprecated; not in the registry"


def test_terminal_on_stdin_asks_per_item(ws: Workspace, fake: FakeCatalogue) -> None:
    """With a terminal on stdin, each change is asked about; only the accepted one is applied."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"y\n" + b"n\n" * 5)
        result = subprocess.run(
            [FALBIND, "refresh", "--catalogue-url", fake.url, *ws.paths()],
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("[y/N]") == 6
    assert "add fal-ai/flux/dev? [y/N]" in result.stderr
    assert "applied 1 of 6 change(s)" in result.stdout
    ids = [e["id"] for e in yaml.safe_load((ws.registry / "models.yaml").read_text())["endpoints"]]
    assert "fal-ai/flux/dev" in ids and "acme/untrusted-v1" in ids
    assert "fal-ai/recraft/v3/text-to-image" not in ids


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_only_on_a_terminal() -> None:
    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        bar = Progress("rendering", total=4, stream=stream)
        bar.advance(2)
        bar.advance(2)
        bar.close()
    assert terminal.getvalue().endswith("\rrendering: [" + "#" * 30 + "] 4/4\n")
    assert pipe.getvalue() == ""
    counter = _Terminal()
    reading = Progress("reading catalogue", stream=counter)
    reading.update(40)
    reading.close()
    assert counter.getvalue() == "\rreading catalogue: 40\rreading catalogue: 40\n"
