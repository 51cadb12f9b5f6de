"""``falbind lint``: find the fal calls already in a codebase and check their literal arguments."""

# Reads Python source with :mod:`ast` (never imports or runs it), recognises calls made through
# fal-client, LiteLLM (``fal_ai/`` and ``falbind/`` models), Pipecat's ``FalImageGenService`` and
# falbind's own clients, and validates what it can read against the bound endpoint's request
# model. Rule codes: :data:`~.rules.RULES` (docs/lint.md).

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .findings import Finding, LintResult, Skip
from .report import FORMATS, render
from .rules import RULES, RULES_VERSION, Rule
from .scan import iter_python_files
from .walk import lint_source

__all__ = [
    "FORMATS",
    "RULES",
    "Finding",
    "LintResult",
    "Rule",
    "Skip",
    "lint_command",
    "lint_paths",
    "lint_text",
]

__version__ = RULES_VERSION

Echo = Callable[[str], None]


def _display(path: Path, cwd: Path) -> str:
    """``path`` as given when relative, else relative to the working folder when under it."""
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.relative_to(cwd).as_posix()
    except ValueError:
        return path.as_posix()


def lint_text(text: str, path: str = "<string>", *, explain: bool = False) -> LintResult:
    """Lint one source text (as if it were the file ``path``)."""
    result = LintResult()
    lint_source(path, text, result, explain=explain)
    return result


def lint_paths(
    paths: Iterable[Path],
    *,
    exclude: Iterable[str] = (),
    select: Iterable[str] = (),
    ignore: Iterable[str] = (),
    explain: bool = False,
) -> LintResult:
    """Lint files and folders (``*.py`` under folders); see :func:`lint_text`."""
    result = LintResult()
    cwd = Path.cwd()
    for path in iter_python_files(paths, exclude):
        shown = _display(path, cwd)
        try:
            raw = path.read_bytes()
            text = raw.decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            result.files_scanned += 1
            result.findings.append(Finding(shown, 1, 1, "FB900", f"cannot read: {exc}", "file"))
            continue
        lint_source(shown, text, result, explain=explain)
    chosen, dropped = set(select), set(ignore)
    if chosen or dropped:
        result.findings = [
            f
            for f in result.findings
            if (not chosen or any(f.code.startswith(c) for c in chosen))
            and not any(f.code.startswith(c) for c in dropped)
        ]
    result.findings.sort(key=lambda f: (f.path, f.line, f.column, f.code))
    result.skipped.sort(key=lambda s: (s.path, s.line, s.column))
    return result


def _known_codes(codes: Sequence[str]) -> list[str]:
    """Codes (or prefixes such as ``FB1``) that match no rule."""
    return [c for c in codes if not any(code.startswith(c) for code in RULES)]


def lint_command(
    *,
    paths: Sequence[Path],
    output_format: str,
    explain: bool,
    select: Sequence[str],
    ignore: Sequence[str],
    exclude: Sequence[str],
    echo: Echo,
) -> int:
    """Run ``falbind lint``: exit 0 when clean, 1 on findings, 2 on a usage error."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        for path in missing:
            print(f"falbind: lint: {path}: no such file or folder", file=sys.stderr)
        return 2
    select = [c.upper() for c in select]
    ignore = [c.upper() for c in ignore]
    unknown = _known_codes([*select, *ignore])
    if unknown:
        print(
            f"falbind: lint: unknown rule code(s) {', '.join(unknown)} (known: {', '.join(RULES)})",
            file=sys.stderr,
        )
        return 2
    result = lint_paths(paths, exclude=exclude, select=select, ignore=ignore, explain=explain)
    render(result, output_format, explain, echo)
    return 1 if result.findings else 0
