"""Bad input files end in one ``falbind: ...`` line and a non-zero exit, with the registry and
the generated tree byte-identical: files over the size limit, nesting past the depth limit,
YAML alias bombs, and documents that parse but would generate an unusable module. ``show``
prints any text a schema holds. Every command runs through the installed entry point."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from workspace import Workspace, assert_one_line_failure, current_doc, fixture_workspace, load_json

from falbind.tooling.limits import MAX_ARGUMENTS_BYTES, MAX_DEPTH, MAX_DOCUMENT_BYTES

from support import run_cli

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

DEV = "fal-ai/flux/dev"
SCHNELL = "fal-ai/flux/schnell"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return fixture_workspace(tmp_path_factory.mktemp("bounds") / "base")


@pytest.fixture
def ws(base: Workspace, tmp_path: Path) -> Workspace:
    return base.copy_to(tmp_path / "ws")


def _sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space (the limit is checked before reading)."""
    path.write_bytes(b"{")
    os.truncate(path, size)
    return path


def _deep_json(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


def _dev_doc(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    document: dict[str, Any] = copy.deepcopy(load_json(current_doc(DEV)))
    mutate(document["components"]["schemas"])
    return document


def _bad_pattern(schemas: dict[str, Any]) -> None:
    schemas["FluxDevInput"]["properties"]["prompt"]["pattern"] = "(?<=a)b["


def _huge_pattern(schemas: dict[str, Any]) -> None:  # compiles in `re`, not in pydantic's engine
    schemas["FluxDevInput"]["properties"]["prompt"]["pattern"] = "a{99999999}"


def _shadows_to_body(schemas: dict[str, Any]) -> None:
    schemas["FluxDevInput"]["properties"]["to_body"] = {"type": "string"}


def _required_cycle(schemas: dict[str, Any]) -> None:
    schemas["FluxDevInput"]["properties"]["loop"] = {"$ref": "#/components/schemas/Loop"}
    schemas["FluxDevInput"]["required"].append("loop")
    schemas["Loop"] = {
        "type": "object",
        "properties": {"next": {"$ref": "#/components/schemas/Loop"}},
        "required": ["next"],
    }


def _surrogate_enum(schemas: dict[str, Any]) -> None:
    schemas["FluxDevInput"]["properties"]["output_format"]["enum"].append("x\ud83d")


UNUSABLE = {
    "pattern": (_bad_pattern, "pattern '(?<=a)b[' is not a valid regular expression"),
    "engine": (_huge_pattern, "pattern 'a{99999999}' cannot be compiled by pydantic"),
    "shadow": (_shadows_to_body, "property 'to_body' would shadow RequestModel.to_body"),
    "cycle": (_required_cycle, "no value can satisfy FluxDevInput, Loop: a $ref cycle"),
    "surrogate": (_surrogate_enum, "is not valid Unicode (a lone surrogate)"),
}


def test_oversized_inputs_are_refused_before_reading(ws: Workspace, tmp_path: Path) -> None:
    before = ws.digest()
    huge = _sparse(tmp_path / "huge.json", MAX_DOCUMENT_BYTES + 1)
    limit = "over the 8.0 MiB limit for an OpenAPI document"
    assert_one_line_failure(run_cli("add", DEV, "--schema", huge, *ws.paths()), limit)
    assert_one_line_failure(run_cli("vendor", huge, *ws.paths()), limit)
    assert_one_line_failure(run_cli("diff", huge, current_doc(DEV)), limit)
    arguments = _sparse(tmp_path / "args.json", MAX_ARGUMENTS_BYTES + 1)
    result = run_cli("validate", SCHNELL, arguments)
    assert_one_line_failure(result, "over the 32.0 MiB limit for an argument file")
    assert result.returncode == 2
    _sparse(ws.registry / "models.yaml", MAX_DOCUMENT_BYTES + 1)
    models = run_cli("generate", *ws.paths())
    assert_one_line_failure(models, "models.yaml", "over the 8.0 MiB limit for a registry file")
    assert ws.digest() == before | {"models.yaml": ws.digest()["models.yaml"]}


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 100_000])
def test_deep_nesting_is_refused_without_recursion_errors(
    ws: Workspace, tmp_path: Path, levels: int
) -> None:
    before = ws.digest()
    deep = tmp_path / "deep.json"
    deep.write_text(_deep_json(levels), encoding="utf-8")
    reason = f"nested deeper than {MAX_DEPTH} levels"
    assert_one_line_failure(run_cli("add", DEV, "--schema", deep, *ws.paths()), reason)
    assert_one_line_failure(run_cli("vendor", deep, *ws.paths()), reason)
    assert_one_line_failure(run_cli("diff", current_doc(DEV), deep), reason)
    assert_one_line_failure(run_cli("validate", SCHNELL, deep), reason)
    assert ws.digest() == before
    stored = ws.registry / "schemas" / "fal-ai__flux__schnell.json"
    stored.write_text(_deep_json(levels), encoding="utf-8")
    assert_one_line_failure(run_cli("generate", *ws.paths()), str(stored), reason)
    assert ws.digest() == before | {f"schemas/{stored.name}": ws.digest()[f"schemas/{stored.name}"]}


def test_yaml_depth_and_alias_bombs_are_refused(ws: Workspace, tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), encoding="utf-8")
    assert_one_line_failure(run_cli("validate", SCHNELL, deep), "nested deeper than 64")
    very_deep = tmp_path / "very-deep.yaml"
    very_deep.write_text("[" * 5000 + "]" * 5000, encoding="utf-8")
    assert_one_line_failure(run_cli("validate", SCHNELL, very_deep), "invalid YAML")
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        bomb.append(
            f"{chr(97 + level)}: &{chr(97 + level)} [{', '.join(['*' + chr(96 + level)] * 10)}]"
        )
    manifest = tmp_path / "bomb.yaml"
    manifest.write_text("\n".join(bomb) + "\n", encoding="utf-8")
    assert_one_line_failure(run_cli("validate", "--manifest", manifest), "more than 2000000 values")
    before = ws.digest()
    models = ws.registry / "models.yaml"
    models.write_text("\n".join(bomb) + "\nendpoints: []\n", encoding="utf-8")
    assert_one_line_failure(run_cli("generate", *ws.paths()), "more than 2000000 values")
    assert ws.digest() == before | {"models.yaml": ws.digest()["models.yaml"]}


@pytest.mark.parametrize("case", sorted(UNUSABLE))
def test_documents_that_would_generate_an_unusable_module_are_refused(
    ws: Workspace, tmp_path: Path, case: str
) -> None:
    mutate, reason = UNUSABLE[case]
    document = tmp_path / "fal-ai__flux__dev.json"
    document.write_text(json.dumps(_dev_doc(mutate)), encoding="utf-8")  # \ud83d stays escaped
    before = ws.digest()
    added = run_cli("add", DEV, "--schema", document, *ws.paths())
    assert_one_line_failure(
        added, f"{DEV} ", "could not be bound" if case == "engine" else "cannot be bound", reason
    )
    assert_one_line_failure(run_cli("vendor", document, *ws.paths()), reason)
    assert ws.digest() == before


def test_generate_fails_only_the_unusable_endpoint(ws: Workspace, tmp_path: Path) -> None:
    """In a registry (``vendor --no-generate`` copies without checking, so that a registry
    patch can fix the document), such a document leaves that one endpoint unbound with the
    reason; the rest of the run goes on."""
    for case, (mutate, reason) in UNUSABLE.items():
        document = tmp_path / f"{case}.json"
        document.write_text(json.dumps(_dev_doc(mutate)), encoding="utf-8")
        copied = run_cli("vendor", "--no-generate", document, *ws.paths())
        assert copied.returncode == 0, copied.stderr
        result = run_cli("generate", *ws.paths())
        assert result.returncode == 0, result.stderr
        assert "1 endpoint(s) could not be bound:" in result.stdout, case
        line = next(line for line in result.stdout.splitlines() if f"{DEV}:" in line)
        assert reason in line, (case, line)
        assert "bound 4 of 5 endpoints" in result.stdout
        assert not (ws.out / "endpoints" / "fal_ai__flux_dev.py").exists()


def test_show_prints_any_text_a_schema_holds(ws: Workspace) -> None:
    """Lone surrogates and terminal escapes in descriptions: printed safely (U+FFFD, \\x1b)."""

    def describe(schemas: dict[str, Any]) -> None:
        prompt = schemas["FluxDevInput"]["properties"]["prompt"]
        prompt["description"] = "lone \ud800 surrogate \x1b[31m red \U0001f600"
        prompt["title"] = "T\udfff"

    document = ws.root / "fal-ai__flux__dev.json"
    document.write_text(json.dumps(_dev_doc(describe)), encoding="utf-8")
    # A package named falbind_generated, first on sys.path: `show` reads these bindings.
    paths = ("--registry", str(ws.registry), "--out", str(ws.root / "gen" / "falbind_generated"))
    assert run_cli("generate", *paths).returncode == 0
    added = run_cli("add", DEV, "--schema", document, *paths)
    assert added.returncode == 0, added.stderr
    env = {**os.environ, "PYTHONPATH": str(ws.root / "gen")}
    shown = run_cli("show", DEV, env=env)
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if line.startswith("prompt "))
    assert row.endswith("lone \ufffd surrogate \\x1b[31m red \U0001f600")
    as_json = run_cli("show", DEV, "--format", "json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    prompt = json.loads(as_json.stdout)["parameters"][0]
    assert prompt["description"] == "lone \ud800 surrogate \x1b[31m red \U0001f600"
