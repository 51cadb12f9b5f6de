"""Registry validation: every malformed registry fails with file, entry and reason, through the
real CLI, and leaves the output folder untouched."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from falbind_codegen.registry import RegistryError, load_registry

from support import FIXTURE_REGISTRY, run_cli

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(
        p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    ):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def generated_fixture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("reg")
    registry = root / "registry"
    shutil.copytree(FIXTURE_REGISTRY, registry)
    result = run_cli("generate", "--registry", registry, "--out", root / "out")
    assert result.returncode == 0, result.stderr
    return registry, root / "out"


@pytest.fixture
def workspace(tmp_path: Path, generated_fixture: tuple[Path, Path]) -> tuple[Path, Path]:
    registry, out = generated_fixture
    shutil.copytree(registry, tmp_path / "registry")
    shutil.copytree(out, tmp_path / "out")
    return tmp_path / "registry", tmp_path / "out"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


BREAKAGES: list[tuple[str, Callable[[Path], None], list[str]]] = [
    (
        "duplicate id",
        lambda r: edit(
            r / "models.yaml",
            "- id: fal-ai/flux/schnell\n",
            "- id: fal-ai/flux/schnell\n  category: x\n- id: fal-ai/flux/schnell\n",
        ),
        ["models.yaml", "fal-ai/flux/schnell", "duplicate id"],
    ),
    (
        "missing schema file",
        lambda r: (r / "schemas" / "fal-ai__flux__schnell.json").unlink(),
        ["models.yaml", "fal-ai/flux/schnell", "missing schema file"],
    ),
    (
        "unknown key",
        lambda r: edit(
            r / "models.yaml", "  aliases: [flux-ultra]\n", "  aliases: [flux-ultra]\n  nmae: x\n"
        ),
        ["models.yaml", "entry 1", "line", "fal-ai/flux-pro/v1.1-ultra", "unknown key 'nmae'"],
    ),
    (
        "malformed entry",
        lambda r: edit(
            r / "models.yaml", "  category: image-to-video\n", "  category: [not, a, string]\n"
        ),
        ["models.yaml", "fal-ai/wan-ati", "category"],
    ),
    (
        "missing category",
        lambda r: edit(
            r / "models.yaml",
            "- id: fal-ai/flux/schnell\n  category: text-to-image\n",
            "- id: fal-ai/flux/schnell\n",
        ),
        ["models.yaml", "fal-ai/flux/schnell", "missing key 'category'"],
    ),
    (
        "bad id",
        lambda r: edit(r / "models.yaml", "- id: fal-ai/flux/schnell\n", "- id: flux schnell\n"),
        ["models.yaml", "is not a fal endpoint id"],
    ),
    (
        "name clash",
        lambda r: edit(
            r / "models.yaml",
            "  aliases: [untrusted]\n",
            "  aliases: [untrusted]\n  name: flux_schnell\n",
        ),
        [
            "models.yaml",
            "entry fal-ai/flux/schnell",
            "'FluxSchnell' clashes with acme/untrusted-v1",
            "name:",
        ],
    ),
    (
        "alias naming two endpoints",
        lambda r: edit(r / "models.yaml", "  aliases: [flux-ultra]\n", "  aliases: [untrusted]\n"),
        ["models.yaml", "alias 'untrusted'"],
    ),
    (
        "invalid yaml",
        lambda r: edit(r / "models.yaml", "endpoints:\n", "endpoints: [\n"),
        ["models.yaml", "invalid YAML"],
    ),
    (
        "patch that does not apply",
        lambda r: edit(
            r / "models.yaml",
            "    op: add\n    path: /components/schemas/TrackPoint",
            "    op: replace\n    path: /components/nothing/here",
        ),
        ["fal-ai/wan-ati", "patch", "does not apply"],
    ),
    (
        "bad sizes file",
        lambda r: edit(r / "sizes.yaml", "- 1792x1024", "- 1792by1024"),
        ["sizes.yaml", "1792by1024"],
    ),
    (
        "stray schema file",
        lambda r: shutil.copy(
            r / "schemas" / "fal-ai__flux__schnell.json", r / "schemas" / "acme__stray.json"
        ),
        ["schemas", "acme__stray.json", "no registry entry"],
    ),
]


@pytest.mark.parametrize(("label", "breaks", "expected"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_bad_registry_fails_clearly_and_leaves_output_untouched(
    workspace: tuple[Path, Path], label: str, breaks: Callable[[Path], None], expected: list[str]
) -> None:
    registry, out = workspace
    before = tree_digest(out)
    breaks(registry)
    result = run_cli("generate", "--registry", registry, "--out", out)
    assert result.returncode == 2, result.stdout
    message = result.stderr.strip()
    assert message.startswith("falbind: ") and "\n" not in message, message
    for fragment in expected:
        assert fragment in message, (fragment, message)
    assert tree_digest(out) == before


def test_registry_loads_and_exposes_entries() -> None:
    registry = load_registry(FIXTURE_REGISTRY)
    assert [e.id for e in registry] == sorted(e.id for e in registry)
    ultra = registry.get("fal-ai/flux-pro/v1.1-ultra")
    assert ultra is not None and ultra.aliases == ("flux-ultra",)
    assert registry.sizes.presets["portrait_16_9"].height == 1024


def test_missing_registry_folder(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no such file"):
        load_registry(tmp_path)
