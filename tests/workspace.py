"""Throw-away registry + generated trees for CLI tests, and the checks they share.

A workspace is a copy of a registry and the tree generated from it, so tests of ``add`` and
``refresh`` never touch the project's own ``registry/`` and ``generated/``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import FIXTURE_REGISTRY, GENERATED, REGISTRY, SHARED, run_cli

ENDPOINT_DOCS = SHARED / "endpoints"
HISTORY = SHARED / "history"
CATALOGUE = SHARED / "catalogue.json"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def registry(self) -> Path:
        return self.root / "registry"

    @property
    def out(self) -> Path:
        return self.root / "out"

    def paths(self) -> tuple[str, str, str, str]:
        return ("--registry", str(self.registry), "--out", str(self.out))

    def digest(self) -> dict[str, str]:
        """sha256 of every file of the registry and the generated tree."""
        return tree_digest(self.registry) | {
            f"out/{k}": v for k, v in tree_digest(self.out).items()
        }

    def copy_to(self, target: Path) -> Workspace:
        shutil.copytree(self.root, target, ignore=shutil.ignore_patterns("__pycache__"))
        return Workspace(target)


def tree_digest(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Relative path -> sha256 for every file under ``root`` (``__pycache__`` and ``skip``
    top-level folders left out)."""
    digest: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if "__pycache__" in relative.parts or relative.parts[0] in skip or not path.is_file():
            continue
        digest[relative.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def project_digest() -> dict[str, str]:
    """The project's registry and generated files."""
    return tree_digest(REGISTRY) | {
        f"generated/{k}": v for k, v in tree_digest(GENERATED.parent).items()
    }


def fixture_workspace(root: Path) -> Workspace:
    """The 4-endpoint fixture registry, generated."""
    workspace = Workspace(root)
    shutil.copytree(FIXTURE_REGISTRY, workspace.registry)
    result = run_cli("generate", *workspace.paths())
    assert result.returncode == 0, result.stderr
    return workspace


def slug(endpoint_id: str) -> str:
    return endpoint_id.replace("/", "__")


def current_doc(endpoint_id: str) -> Path:
    return ENDPOINT_DOCS / f"{slug(endpoint_id)}.json"


def older_doc(endpoint_id: str, version: int = 1) -> Path:
    return HISTORY / slug(endpoint_id) / f"older-{version}.json"


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def assert_one_line_failure(result: subprocess.CompletedProcess[str], *reasons: str) -> None:
    """Non-zero exit, exactly one ``falbind: ...`` line on stderr naming every reason."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("falbind: "), lines[0]
    assert "Traceback" not in result.stderr
    for reason in reasons:
        assert reason in lines[0], (reason, lines[0])
