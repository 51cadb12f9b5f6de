"""``falbind refresh`` never destroys the registry on a bad catalogue answer, and reads the
catalogue safely (no retries of permanent errors, a bounded read, no password in messages).
FakeCatalogue and purpose-built servers on 127.0.0.1, the CLI through the installed entry point."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from workspace import (
    CATALOGUE,
    ENDPOINT_DOCS,
    Workspace,
    assert_one_line_failure,
    fixture_workspace,
    load_json,
)

from falbind_codegen.fake_catalogue import FakeCatalogue
from falbind_codegen.refresh import RefreshItem, removal_guard, removal_limit
from falbind_codegen.registry import load_registry

from support import run_cli

LISTED = ("fal-ai/flux-pro/v1.1-ultra", "fal-ai/flux/schnell", "fal-ai/wan-ati")
EXTRA = (
    "fal-ai/flux/dev",
    "fal-ai/recraft/v3/text-to-image",
    "fal-ai/dia-tts/voice-clone",
    "fal-ai/flux-2-lora-gallery/ballpoint-pen-sketch",
    "fal-ai/pixverse/v5/transition",
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The fixture registry (4 endpoints, generated) plus 5 more in the registry: 9 entries."""
    workspace = fixture_workspace(tmp_path_factory.mktemp("guard") / "base")
    docs = [ENDPOINT_DOCS / (e.replace("/", "__") + ".json") for e in EXTRA]
    result = run_cli("vendor", *docs, *workspace.paths())
    assert result.returncode == 0, result.stderr
    return workspace


@pytest.fixture
def ws(base: Workspace, tmp_path: Path) -> Workspace:
    return base.copy_to(tmp_path / "ws")


def _listing(tmp_path: Path, ids: tuple[str, ...]) -> Path:
    models = [m for m in load_json(CATALOGUE)["models"] if m["endpoint_id"] in ids]
    assert len(models) == len(ids)
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps({"models": models}), encoding="utf-8")
    return path


def _refresh(ws: Workspace, fake: FakeCatalogue, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("refresh", "--catalogue-url", fake.url, *ws.paths(), *args)


def _ids(ws: Workspace) -> list[str]:
    return [e["id"] for e in yaml.safe_load((ws.registry / "models.yaml").read_text())["endpoints"]]


def test_an_empty_catalogue_removes_nothing_unless_allowed(ws: Workspace, tmp_path: Path) -> None:
    before = ws.digest()
    with FakeCatalogue(_listing(tmp_path, ()), ENDPOINT_DOCS) as fake:
        for mode in ("--yes", "--dry-run"):
            result = _refresh(ws, fake, mode)
            assert_one_line_failure(
                result,
                "refusing to remove 9 of 9 registry endpoint(s)",
                "the catalogue lists no endpoint",
                "--allow-removals",
            )
            assert result.returncode == 2
            assert "catalogue: 0 endpoint(s); 0 new, 0 changed, 0 deprecated, 9 removed" in (
                result.stdout
            )
        as_json = _refresh(ws, fake, "--yes", "--format", "json")
        assert as_json.returncode == 2
        assert json.loads(as_json.stdout)["refused"].startswith("refusing to remove 9")
        assert ws.digest() == before
        # A category fal lists nothing of is refused too, even for one entry in scope.
        videos = _refresh(ws, fake, "--yes", "--category", "image-to-video")
        assert_one_line_failure(videos, "lists no endpoint of category image-to-video")
        assert ws.digest() == before


def test_far_fewer_listed_is_refused_and_allow_removals_proceeds(
    ws: Workspace, tmp_path: Path
) -> None:
    before = ws.digest()
    with FakeCatalogue(_listing(tmp_path, LISTED[:2]), ENDPOINT_DOCS) as fake:
        refused = _refresh(ws, fake, "--yes")
        assert_one_line_failure(
            refused,
            "refusing to remove 7 of 9",
            "the catalogue lists 2 endpoint(s) and would remove more than 3",
        )
        assert ws.digest() == before
        allowed = _refresh(ws, fake, "--yes", "--allow-removals")
    assert allowed.returncode == 0, allowed.stderr
    assert _ids(ws) == sorted(LISTED[:2])
    assert run_cli("check", *ws.paths()).returncode == 0


def test_the_removal_limit() -> None:
    assert [removal_limit(n) for n in (0, 4, 9, 30, 40, 100, 200, 936)] == [
        3, 3, 3, 3, 4, 10, 20, 20,
    ]  # fmt: skip


def test_the_guard_counts_only_the_categories_asked_for(base: Workspace) -> None:
    registry = load_registry(base.registry)
    removed = [RefreshItem("removed", e.id, e.category) for e in registry.entries[:4]]
    assert removal_guard(registry, removed[:3], listed=5) is None
    assert "more than 3" in (removal_guard(registry, removed, listed=5) or "")
    assert "lists no endpoint" in (removal_guard(registry, removed[:1], listed=0) or "")
    assert removal_guard(registry, [], listed=0) is None
