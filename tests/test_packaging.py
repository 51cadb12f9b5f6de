"""falbind as users install it: static type checkers on an app, from the editable install and
from the built wheel in a fresh venv, and a private registry generated with the installed wheel."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from support import FIXTURE_REGISTRY, ROOT

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

APP = ROOT / "tests" / "typing_app" / "app.py"
PRIVATE_ID = "acme/untrusted-v1"
MARK = re.compile(r"  # error: (\w+)$")
# Typed methods have two overloads (the Input model, or keywords); a call that fits neither gets
# the checker's generic message, which names the method but not always the field.
NO_OVERLOAD = re.compile(r'No overload variant of "\w+"|No overloads for "\w+"')


def _run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


def _expected_errors() -> dict[int, str]:
    """Line -> the word each ``# error: <word>`` mark in the app says the message names."""
    lines = APP.read_text(encoding="utf-8").splitlines()
    return {n: m.group(1) for n, line in enumerate(lines, 1) if (m := MARK.search(line))}


def _mypy_errors(python: str, cache: Path) -> dict[int, str]:
    result = _run(
        sys.executable, "-m", "mypy", "--strict", "--config-file", ROOT / "pyproject.toml",
        "--python-executable", python, "--cache-dir", cache, "--no-error-summary", APP,
        cwd=APP.parent,
    )  # fmt: skip
    errors: dict[int, str] = {}
    for line in result.stdout.splitlines():
        match = re.match(rf"{re.escape(APP.name)}:(\d+): error: (.*)", line)
        if match:
            errors[int(match.group(1))] = errors.get(int(match.group(1)), "") + match.group(2)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return errors


def _pyright_errors(python: str) -> dict[int, str]:
    pyright = shutil.which("pyright", path=str(Path(sys.executable).parent))
    assert pyright, "pyright is a dev dependency (scripts/setup installs it)"
    result = _run(pyright, "--outputjson", "--pythonpath", python, APP, cwd=APP.parent)
    report = json.loads(result.stdout)
    errors: dict[int, str] = {}
    for diagnostic in report["generalDiagnostics"]:
        if diagnostic["severity"] == "error":
            line = diagnostic["range"]["start"]["line"] + 1
            errors[line] = errors.get(line, "") + diagnostic["message"]
    return errors


def _check_app(python: str, cache: Path) -> None:
    expected = _expected_errors()
    assert len(expected) == 6
    for checker, errors in (
        ("mypy", _mypy_errors(python, cache)),
        ("pyright", _pyright_errors(python)),
    ):
        assert set(errors) == set(expected), (checker, errors)
        for line, word in expected.items():
            assert word in errors[line] or NO_OVERLOAD.search(errors[line]), (
                checker,
                line,
                errors[line],
            )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    result = _run(
        sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--wheel-dir", dist, ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (built,) = dist.glob("falbind-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the built wheel and its generator extra, nothing from the checkout."""
    venv = tmp_path_factory.mktemp("venv")
    assert _run(sys.executable, "-m", "venv", venv).returncode == 0
    result = _run(
        venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        f"falbind[codegen] @ {wheel.as_uri()}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return venv


def test_static_tools_resolve_falbind_in_the_editable_install(tmp_path: Path) -> None:
    _check_app(sys.executable, tmp_path / "mypy-cache")


def test_static_tools_resolve_falbind_from_the_wheel(wheel_venv: Path, tmp_path: Path) -> None:
    python = str(wheel_venv / "bin" / "python")
    where = _run(
        python, "-c", "import falbind, falbind_generated; print(falbind.__file__)", cwd=tmp_path
    )
    assert where.returncode == 0 and "site-packages" in where.stdout, where
    _check_app(python, tmp_path / "mypy-cache")


def test_wheel_ships_the_data_the_runtime_and_generator_need(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "falbind/py.typed",
        "falbind_generated/py.typed",
        "falbind_generated/_manifest.json",
        "falbind_generated/_typed_client.pyi",
        "falbind_codegen/py.typed",
        "falbind_codegen/default_sizes.yaml",
        "falbind_codegen/templates/endpoint.py.j2",
    ):
        assert needed in names, needed
    assert not any(n.startswith(("tests/", "registry/", "generated/", "codegen/")) for n in names)


def test_private_registry_from_the_wheel(wheel_venv: Path, tmp_path: Path) -> None:
    """README's private-registry recipe: a models.yaml and one schema (no sizes.yaml), generate
    into the user's own package, import it and validate, with the installed runtime."""
    registry = tmp_path / "acme-registry"
    (registry / "schemas").mkdir(parents=True)
    shutil.copy(FIXTURE_REGISTRY / "schemas" / "acme__untrusted-v1.json", registry / "schemas")
    entry = {"id": PRIVATE_ID, "category": "text-to-image"}
    (registry / "models.yaml").write_text(yaml.safe_dump({"endpoints": [entry]}))
    src = tmp_path / "src"
    falbind = wheel_venv / "bin" / "falbind"

    result = _run(falbind, "generate", "--registry", registry, "--out", src / "acme_fal")

    assert result.returncode == 0, result.stderr
    assert "bound 1 of 1 endpoints" in result.stdout
    code = (
        "import acme_fal, falbind, pydantic\n"
        "from acme_fal import AcmeUntrustedV1Input\n"
        "assert acme_fal.ENDPOINTS['acme/untrusted-v1'].input_model is AcmeUntrustedV1Input\n"
        "print(AcmeUntrustedV1Input(prompt='a fox', strength=0.5).to_body())\n"
        "try:\n"
        "    AcmeUntrustedV1Input(prompt='a fox', strenght=0.5)\n"
        "except pydantic.ValidationError as exc:\n"
        "    print(exc)\n"
        "print(falbind.__file__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(src)}
    ran = _run(wheel_venv / "bin" / "python", "-c", code, env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "{'prompt': 'a fox', 'strength': 0.5}" in ran.stdout
    assert "did you mean 'strength'" in ran.stdout
    assert "site-packages" in ran.stdout.splitlines()[-1]
    check = _run(falbind, "check", "--registry", registry, "--out", src / "acme_fal")
    assert check.returncode == 0, check.stdout + check.stderr


def test_generate_refuses_an_output_folder_that_is_no_import_name(tmp_path: Path) -> None:
    from support import run_cli

    result = run_cli("generate", "--registry", FIXTURE_REGISTRY, "--out", tmp_path / "acme-fal")
    assert result.returncode == 2
    assert "must be a Python identifier" in result.stderr
    assert not (tmp_path / "acme-fal").exists()


def test_wheel_carries_the_apache_licence(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    (metadata_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = archive.read(metadata_name).decode()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert "License-File: LICENSE" in metadata.splitlines()
    shipped = archive.read(metadata_name.replace("METADATA", "licenses/LICENSE"))
    assert shipped == (ROOT / "LICENSE").read_bytes()


def test_licence_file_is_the_full_apache_2_text_and_the_sdist_includes_it() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    sections = re.findall(r"^\s+(\d)\. [A-Z]", text, re.M)
    assert sections == [str(n) for n in range(1, 10)]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "Apache-2.0"
    assert project["project"]["license-files"] == ["LICENSE"]
    assert "LICENSE" in project["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
