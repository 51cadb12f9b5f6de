"""``falbind lint``: fal calls found in source (never run), checked against the bindings."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from falbind.lint import RULES, Finding, lint_paths, lint_text

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "lint"
FALBIND = Path(sys.executable).parent / "falbind"


def _lint(source: str, *, explain: bool = False) -> list[Finding]:
    return lint_text(textwrap.dedent(source), "example.py", explain=explain).findings


def _codes(source: str) -> list[str]:
    return [f.code for f in _lint(source)]


def _position(path: Path, token: str, occurrence: int = -1) -> tuple[int, int]:
    """1-based line and column of ``token`` (its last occurrence by default) in ``path``."""
    hits = [
        (number, line.index(token) + 1)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if token in line
    ]
    return hits[occurrence]


# --------------------------------------------------------------------------- fixtures


@pytest.mark.parametrize(
    "name", ["fal_client_docs", "litellm_docs", "pipecat_docs", "falbind_calls", "untouched"]
)
def test_documentation_examples_and_untouchable_code_pass(name: str) -> None:
    result = lint_paths([FIXTURES / f"{name}.py"])
    assert result.findings == []
    assert result.files_parsed == 1


@pytest.mark.parametrize(
    ("name", "token", "code", "host"),
    [
        ("fal_client_mistake", '"num_image"', "FB101", "fal-client"),
        ("litellm_mistake", "safety_tolrance", "FB101", "litellm"),
        ("pipecat_mistake", "FalImageGenService.Settings(", "FB301", "pipecat"),
    ],
)
def test_one_injected_mistake_is_found_at_its_line_and_column(
    name: str, token: str, code: str, host: str
) -> None:
    path = FIXTURES / f"{name}.py"
    (finding,) = lint_paths([path]).findings
    assert (finding.line, finding.column) == _position(path, token)
    assert (finding.code, finding.host) == (code, host)


def test_messages_name_the_endpoint_and_the_nearest_names() -> None:
    (fal_client,) = lint_paths([FIXTURES / "fal_client_mistake.py"]).findings
    assert fal_client.message == (
        "unknown parameter 'num_image' for fal-ai/flux/dev; did you mean 'num_images'?"
    )
    assert fal_client.suggestions == ("num_images",)
    (pipecat,) = lint_paths([FIXTURES / "pipecat_mistake.py"]).findings
    assert "num_inference_steps=8" in pipecat.message
    assert "greater than or equal to 20" in pipecat.message


def test_aliased_imports_and_async_variants() -> None:
    path = FIXTURES / "aliases.py"
    found = {(f.line, f.column, f.code) for f in lint_paths([path]).findings}
    expected = {
        (*_position(path, '"num_inference_step"'), "FB101"),  # import fal_client as fc
        (*_position(path, '"gif"'), "FB102"),  # from fal_client import subscribe_async as ...
        (*_position(path, "9}"), "FB103"),  # AsyncClient().run
        (*_position(path, '"21:9"'), "FB102"),  # from litellm import aimage_generation as ...
        (*_position(path, "guidance_scal="), "FB101"),  # async with fb.AsyncFalClient() as fal
        (*_position(path, "seeds="), "FB101"),  # fal.images.generate
    }
    assert found == expected


def test_skipped_calls_are_explained() -> None:
    result = lint_paths([FIXTURES / "untouched.py"], explain=True)
    reasons = {(s.line, s.reason) for s in result.skipped}
    assert (14, "the endpoint id is not a literal string") in reasons
    assert (15, "the endpoint id is not a literal string") in reasons
    assert (16, "arguments is not a literal dict") in reasons
    assert (25, "arguments is not a literal dict") in reasons
    assert lint_paths([FIXTURES / "untouched.py"]).skipped == []  # only with explain


def test_ignore_comments() -> None:
    result = lint_paths([FIXTURES / "ignored.py"])
    assert [(f.line, f.code) for f in result.findings] == [(6, "FB101")]
    assert result.suppressed == 2


@pytest.mark.slow
def test_scanned_code_never_runs(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "side_effect.py", tmp_path / "side_effect.py")
    done = subprocess.run(
        [str(FALBIND), "lint", "."], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1, done.stderr
    assert "side_effect.py:7:" in done.stdout and "FB101" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["side_effect.py"]


# --------------------------------------------------------------------------- rules


def test_endpoint_ids() -> None:
    findings = _lint(
        """
        import fal_client
        fal_client.run("fal-ai/flux/dve", arguments={"prompt": "x"})
        fal_client.run("flux-dev", arguments={"prompt": "x"})
        """
    )
    assert [f.code for f in findings] == ["FB100", "FB100"]
    assert findings[0].suggestions[0] == "fal-ai/flux/dev"
    assert "did you mean 'fal-ai/flux/dev'" in findings[0].message
    assert "falbind's name for fal-ai/flux/dev" in findings[1].message


def test_fal_client_path_and_method() -> None:
    findings = _lint(
        """
        import fal_client
        fal_client.run("fal-ai/flux", arguments={"prompt": "p", "num_image": 1}, path="/dev")
        fal_client.run("fal-ai/flux/dev", arguments={"num_image": 1}, method="GET")
        fal_client.stream("fal-ai/flux/dev", arguments={"prompt": "p", "num_image": 1}, path="/stream")
        """
    )
    assert [(f.line, f.code, f.endpoint) for f in findings] == [
        (3, "FB101", "fal-ai/flux/dev"),
        (5, "FB101", "fal-ai/flux/dev"),
    ]


def test_missing_required_only_when_the_whole_dict_is_literal() -> None:
    source = """
        import fal_client
        extra = {"seed": 1}
        fal_client.run("fal-ai/flux/dev", arguments={"num_images": 1})
        fal_client.run("fal-ai/flux/dev", arguments={"num_images": 1, **extra})
        def f(**kwargs):
            fal_client.run("fal-ai/flux/dev", arguments=dict(num_images=1, **kwargs))
        """
    findings = _lint(source)
    assert [(f.line, f.code) for f in findings] == [(4, "FB104")]
    assert findings[0].message == "missing required parameter 'prompt' for fal-ai/flux/dev"


def test_nested_values_and_names_bound_to_literals() -> None:
    findings = _lint(
        """
        import fal_client
        SIZE = {"width": 0, "height": 1024}
        ARGUMENTS = {"prompt": "a fox", "image_size": SIZE}
        fal_client.run("fal-ai/flux/dev", arguments=ARGUMENTS)
        """
    )
    (finding,) = findings
    assert (finding.line, finding.column, finding.code) == (3, 18, "FB103")
    assert finding.message.startswith("image_size.width=0 for fal-ai/flux/dev")


def test_columns_count_characters_not_bytes() -> None:
    (finding,) = _lint(
        'import fal_client\nfal_client.run("fal-ai/flux/dev", arguments={"prompt": "café ☕", "num_image": 2})\n'
    )
    line = 'fal_client.run("fal-ai/flux/dev", arguments={"prompt": "café ☕", "num_image": 2})'
    assert finding.column == line.index('"num_image"') + 1


def test_unknown_values_are_not_judged() -> None:
    assert (
        _codes(
            """
        import fal_client
        def f(steps, width):
            fal_client.run("fal-ai/flux/dev", arguments={
                "prompt": "x", "num_inference_steps": steps, "image_size": {"width": width, "height": 512},
            })
        """
        )
        == []
    )


def test_litellm_openai_parameters() -> None:
    findings = _lint(
        """
        import litellm
        litellm.image_generation(model="fal_ai/fal-ai/flux-pro/v1.1-ultra", prompt="p", size="1792x1024")
        litellm.image_generation(model="fal_ai/fal-ai/flux/dev", prompt="p", size="big")
        litellm.image_generation(model="fal_ai/fal-ai/flux/dev", prompt="p", n=5)
        litellm.image_generation(model="fal_ai/fal-ai/recraft/v3/text-to-image", prompt="p", n=2)
        litellm.image_generation(model="fal_ai/fal-ai/flux/dev", prompt="p", n=0)
        litellm.image_generation(model="fal_ai/fal-ai/flux/dev", prompt="p", response_format="base64")
        litellm.image_generation(model="fal_ai/fal-ai/whisper", prompt="p")
        litellm.image_generation(model="fal_ai/flux/schnell", prompt="p")
        litellm.image_generation(model="falbind/flux-dev", prompt="p", n=6, size="1792x1024")
        litellm.image_generation(model="dall-e-3", prompt="p", num_image=2)
        litellm.image_generation(model="fal-ai/flux/dev", custom_llm_provider="fal_ai", prompt="p", guidance=1)
        litellm.image_edit(image=open("a.png", "rb"), prompt="p", model="fal_ai/fal-ai/flux-2/klein/9b/edit", num_image=1)
        """
    )
    assert [(f.line, f.code) for f in findings] == [
        (3, "FB201"),
        (4, "FB202"),
        (5, "FB203"),
        (6, "FB203"),
        (7, "FB203"),
        (8, "FB204"),
        (9, "FB205"),
        (10, "FB100"),
        (13, "FB101"),
        (14, "FB101"),
    ]
    assert "aspect ratio" in findings[0].message
    assert "maximum of 4" in findings[2].message
    assert "no image-count parameter" in findings[3].message
    assert "fal-ai/flux/schnell" in findings[7].suggestions


def test_falbind_clients() -> None:
    findings = _lint(
        """
        from falbind import AsyncFalClient, FalClient
        fal = FalClient()
        fal.images.generate(model="fal-ai/imagen4/preview", prompt="a fox", size="1536x1024", strict_size=True)
        fal.images.generate(model="fal-ai/imagen4/preview", prompt="a fox", size="1536x1024")
        fal.run("fal-ai/not-a-model", {"prompt": "a fox"}, untyped=True)
        fal.run("fal-ai/flux/dev", {"prompt": "a fox"}, untyped=True, num_image=1)
        fal.flux_dev(prompt="a fox", num_image=2)
        fal.queue.flux_dev(prompt="a fox", output_format="gif")
        fal.upload("photo.png")

        class Service:
            def __init__(self, client: AsyncFalClient) -> None:
                self.client = client

            async def go(self) -> None:
                await self.client.run("fal-ai/flux/dev", {"prompt": "a fox", "seeds": 1})
        """
    )
    assert [(f.line, f.code) for f in findings] == [
        (4, "FB201"),
        (7, "FB101"),
        (8, "FB101"),
        (9, "FB102"),
        (17, "FB101"),
    ]


def test_pipecat_settings() -> None:
    findings = _lint(
        """
        from pipecat.services.fal import FalImageGenService
        from pipecat.services.fal.image import FalImageGenSettings

        settings = FalImageGenSettings(model="fal-ai/flux/dev", num_image=2, extra={"seed": 1})
        FalImageGenService(aiohttp_session=None, model="bria/text-to-image/3.2", settings=FalImageGenService.Settings(seed=1))
        FalImageGenService(aiohttp_session=None, model="fal-ai/flux/dev", params=FalImageGenService.InputParams(num_image=2))
        FalImageGenService(aiohttp_session=None, settings=FalImageGenService.Settings(model="fal-ai/flux/dev", format="jpeg"))
        FalImageGenService(aiohttp_session=None, settings=FalImageGenService.Settings(model="fal-ai/flux/dev", num_inference_steps=100))
        """
    )
    assert [(f.line, f.code) for f in findings] == [
        (5, "FB302"),
        (5, "FB303"),
        (6, "FB301"),
        (7, "FB302"),
        (8, "FB101"),
        (9, "FB103"),
    ]
    assert "did you mean 'num_images'" in findings[0].message
    assert "InputParams ignores it" in findings[3].message


def test_common_import_and_client_patterns() -> None:
    findings = _lint(
        """
        try:
            import fal_client
        except ImportError:
            fal_client = None
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from falbind import FalClient

        def render(fal: "FalClient", key: str) -> None:
            fal_client.SyncClient(key=key).subscribe("fal-ai/flux/dev", {"prompt": "p", "num_image": 1})
            fal_client.stream("fal-ai/flux/dev", arguments={"prompt": "p", "num_image": 1})
            fal.run("fal-ai/flux/dev", {"prompt": "p", "num_image": 1})
            fal_client.run(application="fal-ai/flux/dev", arguments={"prompt": "p", "num_image": 1})
        """
    )
    assert [(f.line, f.code, f.host) for f in findings] == [
        (11, "FB101", "fal-client"),
        (12, "FB101", "fal-client"),
        (13, "FB101", "falbind"),
        (14, "FB101", "fal-client"),
    ]


def test_a_failure_inside_one_check_does_not_stop_the_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from falbind.lint import check

    def broken(self: check.Checker, node: object, *, stream: bool) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(check.Checker, "fal_client", broken)
    result = lint_text(
        "import fal_client, litellm\n"
        'fal_client.run("fal-ai/flux/dev", arguments={"prompt": "p"})\n'
        'litellm.image_generation(model="fal_ai/fal-ai/flux/dev", prompt="a fox", num_image=1)\n'
    )
    assert [(f.line, f.code) for f in result.findings] == [(3, "FB101")]
    assert "<string>:2:1: falbind could not check this call (RuntimeError: boom)" in (
        capsys.readouterr().err
    )
    assert [s.line for s in result.skipped] == [2]


def test_unreadable_files_and_the_fast_path(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import fal_client\ndef (:\n")
    (tmp_path / "plain.py").write_text("def (:\n")  # no fal-related name: never parsed
    (tmp_path / "latin.py").write_bytes("import fal_client  # caf\xe9\n".encode("latin-1"))
    result = lint_paths([tmp_path])
    assert sorted((Path(f.path).name, f.code) for f in result.findings) == [
        ("broken.py", "FB900"),
        ("latin.py", "FB900"),
    ]
    assert (result.files_scanned, result.files_parsed) == (3, 1)


def test_folders_skip_hidden_and_virtual_environments(tmp_path: Path) -> None:
    bad = 'import fal_client\nfal_client.run("fal-ai/flux/dev", arguments={"prompt": "x", "num_image": 1})\n'
    for folder in (".git", "node_modules", "venv", "env", "src"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "app.py").write_text(bad)
    (tmp_path / "env" / "pyvenv.cfg").write_text("")
    (tmp_path / "src" / "skipme.py").write_text(bad)
    result = lint_paths([tmp_path, tmp_path / "src" / "app.py"], exclude=["skipme*"])
    assert [Path(f.path).parent.name for f in result.findings] == ["src"]  # each file once


def test_rule_codes_are_documented() -> None:
    docs = (ROOT / "docs" / "lint.md").read_text(encoding="utf-8")
    for code, rule in RULES.items():
        assert f"`{code}`" in docs and rule.name in docs


# --------------------------------------------------------------------------- command line


def _falbind(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FALBIND), "lint", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


@pytest.mark.slow
def test_cli_text_and_exit_codes() -> None:
    clean = _falbind(str(FIXTURES / "fal_client_docs.py"))
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.strip().startswith("0 finding(s) in 1 file(s) scanned")
    dirty = _falbind(str(FIXTURES / "fal_client_mistake.py"))
    assert dirty.returncode == 1
    line, column = _position(FIXTURES / "fal_client_mistake.py", '"num_image"')
    assert (
        f"fal_client_mistake.py:{line}:{column}: FB101 unknown parameter 'num_image'"
        in dirty.stdout
    )
    for usage in (
        _falbind("no/such/path.py"),
        _falbind("--select", "FB999", str(FIXTURES)),
        _falbind("--format", "xml", str(FIXTURES)),
    ):
        assert usage.returncode == 2
        assert usage.stdout == ""


@pytest.mark.slow
def test_cli_select_ignore_and_explain() -> None:
    path = str(FIXTURES / "aliases.py")
    selected = _falbind("--select", "FB102", "--format", "json", path)
    codes = {f["code"] for f in json.loads(selected.stdout)["findings"]}
    assert codes == {"FB102"}
    assert _falbind("--ignore", "FB1", path).returncode == 0
    explained = _falbind("--explain", str(FIXTURES / "untouched.py"))
    assert explained.returncode == 0
    assert "skipped (fal-client): the endpoint id is not a literal string" in explained.stdout
    github = _falbind("--explain", "--format", "github", str(FIXTURES / "untouched.py"))
    assert "::notice file=tests/fixtures/lint/untouched.py,line=14,col=5::skipped" in github.stdout
    sarif = json.loads(
        _falbind("--explain", "--format", "sarif", str(FIXTURES / "untouched.py")).stdout
    )
    notes = sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert {n["locations"][0]["physicalLocation"]["region"]["startLine"] for n in notes} == {
        14,
        15,
        16,
        25,
    }


@pytest.mark.slow
def test_cli_json() -> None:
    done = _falbind("--format", "json", "--explain", str(FIXTURES / "litellm_mistake.py"))
    assert done.returncode == 1
    document = json.loads(done.stdout)
    (finding,) = document["findings"]
    assert finding["code"] == "FB101" and finding["rule"] == "unknown-parameter"
    assert finding["endpoint"] == "fal-ai/flux-pro/v1.1-ultra"
    assert finding["suggestions"] == ["safety_tolerance"]
    assert (finding["line"], finding["column"]) == _position(
        FIXTURES / "litellm_mistake.py", "safety_tolrance"
    )
    assert document["files_scanned"] == 1 and "skipped" in document


@pytest.mark.slow
def test_cli_github() -> None:
    done = _falbind("--format", "github", str(FIXTURES / "pipecat_mistake.py"))
    assert done.returncode == 1
    annotation = done.stdout.splitlines()[0]
    line, column = _position(FIXTURES / "pipecat_mistake.py", "FalImageGenService.Settings(")
    assert annotation.startswith("::error file=")
    props, message = annotation[len("::error ") :].split("::", 1)
    assert props.split(",") == [
        "file=tests/fixtures/lint/pipecat_mistake.py",
        f"line={line}",
        f"col={column}",
        "title=falbind lint FB301 (pipecat-default-rejected)",
    ]
    assert message.startswith("Pipecat sends num_inference_steps=8 by default")
    assert done.stdout.splitlines()[-1].startswith("1 finding(s)")


@pytest.mark.slow
def test_cli_sarif(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "fal_client_mistake.py", tmp_path / "app.py")
    done = _falbind("--format", "sarif", ".", cwd=tmp_path)
    assert done.returncode == 1
    document = json.loads(done.stdout)
    assert document["version"] == "2.1.0"
    (run,) = document["runs"]
    assert [rule["id"] for rule in run["tool"]["driver"]["rules"]] == list(RULES)
    (result,) = run["results"]
    assert result["ruleId"] == "FB101"
    assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == "FB101"
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "app.py"
    line, column = _position(tmp_path / "app.py", '"num_image"')
    assert location["region"] == {"startLine": line, "startColumn": column}
    clean = _falbind("--format", "sarif", str(FIXTURES / "fal_client_docs.py"))
    assert clean.returncode == 0 and json.loads(clean.stdout)["runs"][0]["results"] == []
