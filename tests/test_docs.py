"""The documentation stays true: the endpoint reference is current and complete, every link
resolves, README links survive PyPI, and the testing guide's examples run.

The README's links are absolute (``https://github.com/falbind/falbind/blob/main/<path>``): the
README is also the package's PyPI page, where a relative link would point nowhere. Each such
link must name a file (or folder) of this repository. Links between pages under ``docs/`` stay
relative (GitHub renders them), and each must resolve to a file.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import falbind
from falbind.tooling.parameters import parameters
from falbind_codegen.reference import (
    FAL_MODEL_PAGE,
    endpoint_entry,
    reference_command,
    reference_files,
)
from falbind_codegen.registry import load_registry

from starting_set import STARTING_SET
from support import REGISTRY, ROOT

DOCS = ROOT / "docs"
REFERENCE = DOCS / "endpoints"
README_BASE = "https://github.com/falbind/falbind/"
README_FILE_BASE = README_BASE + "blob/main/"
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return reference_files(load_registry(REGISTRY))


def test_endpoint_reference_is_current(files: dict[str, str]) -> None:
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in REFERENCE.glob("*.md")}
    stale = sorted(n for n in files.keys() | on_disk.keys() if files.get(n) != on_disk.get(n))
    assert not stale, f"docs/endpoints is stale ({', '.join(stale)}): run `falbind reference`"


def test_every_bound_endpoint_has_one_entry_with_its_method_models_and_page(
    files: dict[str, str],
) -> None:
    ids = [m.group(1) for text in files.values() for m in re.finditer(r"^## `(.+)`$", text, re.M)]
    assert sorted(ids) == sorted(falbind.ENDPOINTS) and len(ids) == len(set(ids))
    for spec in falbind.ENDPOINTS.values():
        entry = endpoint_entry(files, spec.id)
        assert f"({FAL_MODEL_PAGE.format(id=spec.id)})" in entry
        assert f"`client.{spec.name}(...)`" in entry
        assert f"`{spec.class_stem}Input`" in entry and f"`{spec.class_stem}Output`" in entry
    index = files["index.md"]
    for endpoint_id in falbind.UNBOUND:
        assert f"`{endpoint_id}`" in index


@pytest.mark.parametrize("endpoint_id", STARTING_SET)
def test_parameters_match_the_pydantic_models(files: dict[str, str], endpoint_id: str) -> None:
    """The reference reads the normalised schemas; the models must agree on names, required
    fields, defaults and enums (the generated models are what validation enforces)."""
    spec = falbind.ENDPOINTS[endpoint_id]
    model_params = parameters(spec.input_model.model_json_schema(by_alias=True))
    entry = endpoint_entry(files, endpoint_id)
    table = entry.split("\n\n`")[0]  # the input model's table, before the nested models
    rows = [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        for line in table.splitlines()
        if line.startswith("| `")
    ]
    assert [r[0].strip("`") for r in rows] == [p.name for p in model_params]
    for row, param in zip(rows, model_params, strict=True):
        assert row[2] == ("yes" if param.required else "no"), param.name
        # pydantic reports ``default: null`` for an optional field the schema gives no default
        # (the generated ``T | None = None``); the reference shows the schema's own defaults.
        if param.has_default and param.default is not None:
            assert json.loads(row[3].strip("`")) == param.default, param.name
        elif row[3]:
            assert json.loads(row[3].strip("`")) is None, (param.name, row[3])
        enums = [a for a in param.allowed if a.startswith("one of ")]
        for allowed in enums:
            assert allowed in row[4], (param.name, allowed, row[4])


def test_reference_command_writes_checks_and_removes_stale_pages(tmp_path: Path) -> None:
    out = tmp_path / "endpoints"
    lines: list[str] = []
    assert reference_command(REGISTRY, out, check=True, echo=lines.append) == 1
    assert reference_command(REGISTRY, out, check=False, echo=lines.append) == 0
    assert reference_command(REGISTRY, out, check=True, echo=lines.append) == 0
    page = out / "text-to-image.md"
    page.write_text(page.read_text(encoding="utf-8") + "edited\n", encoding="utf-8")
    (out / "gone-category.md").write_text("old\n", encoding="utf-8")
    assert reference_command(REGISTRY, out, check=True, echo=lines.append) == 1
    assert "gone-category.md" in lines[-1] and "text-to-image.md" in lines[-1]
    assert reference_command(REGISTRY, out, check=False, echo=lines.append) == 0
    assert not (out / "gone-category.md").exists()
    assert sorted(p.name for p in out.glob("*.md")) == sorted(
        p.name for p in REFERENCE.glob("*.md")
    )


def _links(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no links
    return [m.group(1) for m in LINK.finditer(text)]


def test_readme_links_are_absolute_and_point_at_repository_files() -> None:
    links = _links(ROOT / "README.md")
    assert links
    for link in links:
        assert re.match(r"https?://", link), f"README link {link!r} is relative (PyPI breaks it)"
        if link.startswith(README_BASE) or "github.com/falbind/" in link:
            assert link.startswith(README_FILE_BASE), f"{link!r} does not use {README_FILE_BASE}"
            target = link.removeprefix(README_FILE_BASE).split("#", 1)[0]
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_docs_relative_links_resolve() -> None:
    pages = [p for p in DOCS.rglob("*.md") if p.parent != REFERENCE]
    pages += [REFERENCE / "index.md"]
    checked = 0
    for page in pages:
        for link in _links(page):
            if re.match(r"[a-z]+:", link) or link.startswith("#"):
                continue
            target = (page.parent / link.split("#", 1)[0]).resolve()
            assert target.exists(), f"{page.relative_to(ROOT)} links to missing {link}"
            checked += 1
    assert checked > 30


def test_docs_index_reaches_every_page() -> None:
    linked = {(DOCS / link.split("#")[0]).resolve() for link in _links(DOCS / "index.md")}
    pages = {p.resolve() for p in DOCS.rglob("*.md") if p.parent != REFERENCE}
    pages.discard((DOCS / "index.md").resolve())
    assert pages <= linked, sorted(str(p.relative_to(ROOT)) for p in pages - linked)


@pytest.mark.slow
def test_the_testing_guides_examples_run_under_pytest(tmp_path: Path) -> None:
    blocks = re.findall(
        r"```python\n(.*?)```", (DOCS / "guides" / "testing.md").read_text("utf-8"), re.S
    )
    app, tests, custom, plain = blocks[:4]
    (tmp_path / "app.py").write_text(app, encoding="utf-8")
    (tmp_path / "test_app.py").write_text(tests, encoding="utf-8")
    (tmp_path / "test_custom.py").write_text(custom, encoding="utf-8")
    body = "".join(f"    {line}\n" for line in plain.splitlines())
    (tmp_path / "test_plain.py").write_text(f"def test_plain():\n{body}", encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(tmp_path), "-c", str(tmp_path / "pytest.ini"), str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout
