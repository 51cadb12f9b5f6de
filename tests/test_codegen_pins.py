"""``falbind[codegen]`` pins only what determinism needs, and the manifest's fingerprint agrees.

datamodel-code-generator is pinned exactly (its output changes between patch releases). ruff may
be any patch of one minor series (its formatter's stable style changes only in minor releases),
so installing the generator does not downgrade a newer patch of ruff a user already has, and the
manifest records the series: a patch upgrade leaves ``falbind check`` clean.
"""

from __future__ import annotations

import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from falbind_codegen import generate
from falbind_codegen.commands import check_command

from support import GENERATED, REGISTRY, ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _requirements(extra: str) -> dict[str, Requirement]:
    requirements = [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    return {r.name: r for r in requirements}


def _ruff_series() -> tuple[Version, Version]:
    """The lower and upper bound of the ruff requirement."""
    (lower,) = (
        Version(s.version) for s in _requirements("codegen")["ruff"].specifier if s.operator == ">="
    )
    (upper,) = (
        Version(s.version) for s in _requirements("codegen")["ruff"].specifier if s.operator == "<"
    )
    return lower, upper


def test_only_datamodel_code_generator_is_pinned_exactly() -> None:
    codegen = _requirements("codegen")
    exact = {name for name, r in codegen.items() if any(s.operator == "==" for s in r.specifier)}
    assert exact == {"datamodel-code-generator"}
    runtime = [Requirement(r) for r in PROJECT["dependencies"]]
    assert not [r for r in runtime if any(s.operator == "==" for s in r.specifier)]


def test_ruff_accepts_every_patch_of_one_minor_series_only() -> None:
    lower, upper = _ruff_series()
    assert (upper.major, upper.minor, upper.micro) == (lower.major, lower.minor + 1, 0)
    specifier = _requirements("codegen")["ruff"].specifier
    assert specifier.contains(f"{lower.major}.{lower.minor}.{lower.micro + 7}")
    assert not specifier.contains(str(upper))
    assert specifier.contains(metadata.version("ruff"))


def test_manifest_records_the_ruff_series_and_the_exact_datamodel_version() -> None:
    lower, _ = _ruff_series()
    fingerprint = generate.generator_fingerprint()
    assert fingerprint["ruff"] == f"{lower.major}.{lower.minor}"
    assert fingerprint["datamodel-code-generator"] == metadata.version("datamodel-code-generator")


def _fake_versions(monkeypatch: pytest.MonkeyPatch, ruff: str) -> None:
    real = generate._version
    monkeypatch.setattr(generate, "_version", lambda name: ruff if name == "ruff" else real(name))


def test_a_ruff_patch_upgrade_keeps_falbind_check_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    lower, _ = _ruff_series()
    _fake_versions(monkeypatch, f"{lower.major}.{lower.minor}.{lower.micro + 3}")
    lines: list[str] = []
    assert check_command(REGISTRY, GENERATED, echo=lines.append) == 0, lines


def test_a_new_ruff_series_or_datamodel_release_changes_the_fingerprint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    current = generate.generator_fingerprint()
    _, upper = _ruff_series()
    _fake_versions(monkeypatch, str(upper))
    assert generate.generator_fingerprint()["ruff"] != current["ruff"]
    real = generate._version
    monkeypatch.setattr(
        generate,
        "_version",
        lambda name: "0.89.1" if name == "datamodel-code-generator" else real(name),
    )
    assert generate.generator_fingerprint() != current
