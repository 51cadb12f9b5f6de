"""``falbind add`` through the installed entry point, on copies of the fixture registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

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
)

from falbind.testing import FakeCatalogue

from support import run_cli

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

NEW_ID = "fal-ai/dia-tts/voice-clone"
DANGLING_ID = "openrouter/router/openai/v1/responses"  # fal's own document has a dangling $ref


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return fixture_workspace(tmp_path_factory.mktemp("add") / "base")


@pytest.fixture
def ws(base: Workspace, tmp_path: Path) -> Workspace:
    return base.copy_to(tmp_path / "ws")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCatalogue]:
    with FakeCatalogue(CATALOGUE, ENDPOINT_DOCS) as server:
        yield server


def registry_ids(ws: Workspace) -> list[str]:
    data = yaml.safe_load((ws.registry / "models.yaml").read_text(encoding="utf-8"))
    return [entry["id"] for entry in data["endpoints"]]


def test_add_from_file_binds_renders_only_the_new_endpoint(ws: Workspace) -> None:
    result = run_cli("add", NEW_ID, "--schema", current_doc(NEW_ID), *ws.paths())

    assert result.returncode == 0, result.stderr
    assert f"added {NEW_ID} (audio-to-audio)" in result.stdout
    assert "out.endpoints.fal_ai__dia_tts_voice_clone" in result.stdout
    assert "DiaTtsVoiceCloneInput, DiaTtsVoiceCloneOutput" in result.stdout
    assert "1 rendered, 4 reused" in result.stdout
    schema = load_json(current_doc(NEW_ID))["components"]["schemas"]["DiaTtsVoiceCloneInput"]
    params = len(schema["properties"])
    assert f"parameters: {params} ({len(schema['required'])} required)" in result.stdout
    assert NEW_ID in registry_ids(ws)
    stored = ws.registry / "schemas" / "fal-ai__dia-tts__voice-clone.json"
    assert stored.read_bytes() == current_doc(NEW_ID).read_bytes()
    module = (ws.out / "endpoints" / "fal_ai__dia_tts_voice_clone.py").read_text(encoding="utf-8")
    assert "class DiaTtsVoiceCloneInput(" in module
    assert NEW_ID in (ws.out / "_index.py").read_text(encoding="utf-8")
    check = run_cli("check", *ws.paths())
    assert check.returncode == 0, check.stdout


def test_add_category_option_overrides_the_document(ws: Workspace) -> None:
    result = run_cli(
        "add", NEW_ID, "--schema", current_doc(NEW_ID), "--category", "voice", *ws.paths()
    )
    assert result.returncode == 0, result.stderr
    assert f"added {NEW_ID} (voice)" in result.stdout
    data = yaml.safe_load((ws.registry / "models.yaml").read_text(encoding="utf-8"))
    assert {"id": NEW_ID, "category": "voice"} in data["endpoints"]
    assert "voice" in (ws.out / "_index.py").read_text(encoding="utf-8")


def test_add_fetch_downloads_from_the_openapi_url(ws: Workspace, fake: FakeCatalogue) -> None:
    endpoint_id = "fal-ai/flux/dev"
    result = run_cli("add", endpoint_id, "--fetch", "--openapi-url", fake.openapi_url, *ws.paths())

    assert result.returncode == 0, result.stderr
    assert "FluxDevInput, FluxDevOutput" in result.stdout
    stored = ws.registry / "schemas" / "fal-ai__flux__dev.json"
    assert json.loads(stored.read_bytes()) == load_json(current_doc(endpoint_id))
    assert stored.read_bytes() == current_doc(endpoint_id).read_bytes()  # fal-openapi's bytes
    assert any("endpoint_id=fal-ai%2Fflux%2Fdev" in r for r in fake.requests)


def _dangling_copy(tmp_path: Path) -> Path:
    document = load_json(current_doc("fal-ai/flux/dev"))
    props = document["components"]["schemas"]["FluxDevInput"]["properties"]
    props["image_size"] = {"$ref": "#/components/schemas/NowhereToBeFound"}
    path = tmp_path / "dangling.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("case", "reasons"),
    [
        ("duplicate", ("fal-ai/flux/schnell is already in",)),
        ("bad-id", ("'fal-ai//x' is not a fal endpoint id",)),
        ("other-endpoint", ("describes 'fal-ai/dia-tts/voice-clone', not 'fal-ai/flux/dev'",)),
        ("missing-file", ("missing.json: cannot read",)),
        ("invalid-json", ("broken.json: not valid JSON",)),
        ("not-openapi", ("list.json", "not an OpenAPI document")),
        ("dangling-ref", ("cannot be bound", "NowhereToBeFound", "nothing was changed")),
        ("dangling-ref-upstream", ("cannot be bound", "RouterOpenaiV1ResponsesInput")),
        ("fetch-unknown", ("cannot fetch the OpenAPI document of fal-ai/not-listed", "404")),
        ("out-not-a-folder", ("cannot update",)),
    ],
)
def test_add_refusals_leave_registry_and_generated_identical(
    ws: Workspace, tmp_path: Path, fake: FakeCatalogue, case: str, reasons: tuple[str, ...]
) -> None:
    (tmp_path / "broken.json").write_text('{"openapi": "3.0.4", ', encoding="utf-8")
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    paths = ws.paths()
    args: tuple[str | Path, ...] = {
        "duplicate": ("fal-ai/flux/schnell", "--schema", current_doc("fal-ai/flux/schnell")),
        "bad-id": ("fal-ai//x", "--schema", current_doc(NEW_ID)),
        "other-endpoint": ("fal-ai/flux/dev", "--schema", current_doc(NEW_ID)),
        "missing-file": ("fal-ai/flux/dev", "--schema", tmp_path / "missing.json"),
        "invalid-json": ("fal-ai/flux/dev", "--schema", tmp_path / "broken.json"),
        "not-openapi": ("fal-ai/flux/dev", "--schema", tmp_path / "list.json"),
        "dangling-ref": ("fal-ai/flux/dev", "--schema", _dangling_copy(tmp_path)),
        "dangling-ref-upstream": (DANGLING_ID, "--schema", current_doc(DANGLING_ID)),
        "fetch-unknown": ("fal-ai/not-listed", "--fetch", "--openapi-url", fake.openapi_url),
        "out-not-a-folder": ("fal-ai/flux/dev", "--schema", current_doc("fal-ai/flux/dev")),
    }[case]
    if case == "out-not-a-folder":
        blocker = tmp_path / "not_a_folder"
        blocker.write_text("", encoding="utf-8")
        paths = ("--registry", str(ws.registry), "--out", str(blocker))
    before = ws.digest()

    result = run_cli("add", *args, *paths)

    assert_one_line_failure(result, *reasons)
    assert ws.digest() == before


def test_add_needs_a_document_source(ws: Workspace) -> None:
    before = ws.digest()
    result = run_cli("add", NEW_ID, *ws.paths())
    assert result.returncode == 2
    assert "--schema" in result.stderr and "--fetch" in result.stderr
    assert ws.digest() == before
