"""Inspect the bindings: ``falbind models`` (list endpoints) and ``falbind show`` (parameters).

Runtime-only (needs just ``falbind``). ``models`` reads the generated index and never imports
an endpoint module; ``show`` imports the one endpoint it describes and reads its request model's
JSON schema (pydantic's ``model_json_schema``), so what it prints is what validation enforces.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict

import falbind
from falbind.tooling.endpoints import EndpointLookupError, resolve_endpoint
from falbind.tooling.parameters import Parameter, parameters

__all__ = ["models_command", "render_table", "show_command", "terminal_width"]

Echo = Callable[[str], None]
# Text-mode columns that wrap when the table is wider than the terminal, widest first
# (JSON output and piped text are never wrapped; no value is ever cut).
_WRAPPABLE = ("description", "allowed", "type", "default")
_MIN_WRAP_WIDTH = 12
_MIN_TABLE_DESCRIPTION = 24


# --------------------------------------------------------------------------- tables


_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` safe for any terminal and any stdout encoding: lone surrogates (which UTF-8
    cannot encode) become U+FFFD, control characters (escape sequences) become ``\\x..``."""
    return _UNPRINTABLE.sub(
        lambda m: "\ufffd" if "\ud800" <= m.group() <= "\udfff" else ascii(m.group())[1:-1],
        text,
    )


def terminal_width() -> int | None:
    """The terminal's width in columns when stdout is a terminal (``COLUMNS`` overrides the
    terminal's own size, as ``shutil`` does), else ``None``: piped output is never wrapped and
    keeps one line per row, for ``grep`` and friends."""
    if not sys.stdout.isatty():
        return None
    return max(20, shutil.get_terminal_size().columns)


def _fit(widths: list[int], headers: Sequence[str], wrap: Sequence[str], width: int) -> list[int]:
    """Narrow the wrappable columns, widest first, until the table fits ``width`` or every
    wrappable column is at its minimum (then the table stays wider than the terminal)."""
    fitted = list(widths)
    wrappable = [i for i, h in enumerate(headers) if h.lower() in wrap]
    while sum(fitted) + 2 * (len(fitted) - 1) > width:
        candidates = [i for i in wrappable if fitted[i] > max(_MIN_WRAP_WIDTH, len(headers[i]))]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: (fitted[i], -wrap.index(headers[i].lower())))
        fitted[widest] -= 1
    return fitted


def _cell_lines(cell: str, width: int) -> list[str]:
    if len(cell) <= width:
        return [cell]
    # break_long_words: a long word is split across lines, never shortened.
    return textwrap.wrap(cell, width, break_on_hyphens=False) or [""]


def render_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    width: int | None = None,
    wrap: Sequence[str] = _WRAPPABLE,
) -> list[str]:
    """Left-aligned columns. With ``width``, the columns named in ``wrap`` (lower-case headers)
    are narrowed to fit it and their values wrapped onto more lines; nothing is cut."""
    table = [[printable(str(cell)) for cell in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in table)]) for i, h in enumerate(headers)]
    if width is not None:
        widths = _fit(widths, headers, wrap, width)
    lines = []
    for row in [list(headers), ["-" * w for w in widths], *table]:
        cells = [_cell_lines(cell, w) for cell, w in zip(row, widths, strict=True)]
        for n in range(max(len(c) for c in cells)):
            parts = [
                (c[n] if n < len(c) else "").ljust(w) for c, w in zip(cells, widths, strict=True)
            ]
            lines.append("  ".join(parts).rstrip())
    return lines


# --------------------------------------------------------------------------- models


def _aliases_by_id() -> dict[str, list[str]]:
    by_id: dict[str, list[str]] = {}
    for alias, endpoint_id in sorted(falbind.ALIASES.items()):
        by_id.setdefault(endpoint_id, []).append(alias)
    return by_id


def _matches(search: str | None, *fields: str) -> bool:
    return search is None or any(search.lower() in f.lower() for f in fields)


def models_command(
    *, categories: Sequence[str], search: str | None, output_format: str, echo: Echo
) -> int:
    """List bound endpoints (id, Python name, category), then the unbound ones with reasons."""
    wanted = set(categories)
    aliases = _aliases_by_id()
    bound = [
        spec
        for spec in falbind.ENDPOINTS.values()
        if (not wanted or spec.category in wanted)
        and _matches(search, spec.id, spec.name, spec.category, *aliases.get(spec.id, []))
    ]
    # Unbound endpoints have no category in the index; a category filter leaves them out.
    unbound = {
        endpoint_id: reason
        for endpoint_id, reason in sorted(falbind.UNBOUND.items())
        if not wanted and _matches(search, endpoint_id)
    }
    if output_format == "json":
        rows = [
            {
                "id": s.id,
                "name": s.name,
                "category": s.category,
                "module": s.module_path,
                "input_model": f"{s.class_stem}Input",
                "output_model": f"{s.class_stem}Output",
                "aliases": aliases.get(s.id, []),
            }
            for s in bound
        ]
        unbound_rows = [{"id": i, "reason": r} for i, r in unbound.items()]
        echo(json.dumps({"endpoints": rows, "unbound": unbound_rows}, indent=2))
        return 0
    table = [(s.id, s.name, s.category) for s in bound]
    for line in render_table(("ID", "PYTHON NAME", "CATEGORY"), table):
        echo(line)
    echo(f"{len(bound)} bound endpoint(s)")
    if unbound:
        echo(f"unbound ({len(unbound)}):")
        for endpoint_id, reason in unbound.items():
            echo(f"  {endpoint_id}: {reason}")
    return 0


# --------------------------------------------------------------------------- show


def _parameter_table(params: list[Parameter], width: int | None) -> list[str]:
    """A table of ``params``; on a terminal too narrow for a readable table (the description
    column would drop under ``_MIN_TABLE_DESCRIPTION`` characters), one wrapped block each."""
    headers = ("NAME", "TYPE", "REQUIRED", "DEFAULT", "ALLOWED", "DESCRIPTION")
    rows = [
        (
            p.name,
            p.type,
            "yes" if p.required else "no",
            json.dumps(p.default) if p.has_default else "",
            "; ".join(p.allowed),
            p.description,
        )
        for p in params
    ]
    lines = render_table(headers, rows, width)
    if width is None or all(len(line) <= width for line in lines):
        description_width = len(lines[1].rsplit("  ", 1)[-1]) if len(lines) > 1 else 0
        if width is None or description_width >= _MIN_TABLE_DESCRIPTION:
            return lines
    return _parameter_blocks(params, width)


def _parameter_blocks(params: list[Parameter], width: int) -> list[str]:
    """``name: type, required|optional, default X`` then the allowed values and the
    description, indented and wrapped to ``width`` (long words split, never cut)."""
    lines: list[str] = []
    for p in params:
        head = f"{p.name}: {p.type}, {'required' if p.required else 'optional'}"
        if p.has_default:
            head += f", default {json.dumps(p.default)}"
        lines.extend(textwrap.wrap(head, width, subsequent_indent="    ", break_on_hyphens=False))
        for text in (f"allowed: {'; '.join(p.allowed)}" if p.allowed else "", p.description):
            if text:
                lines.extend(
                    textwrap.wrap(
                        text,
                        width,
                        initial_indent="    ",
                        subsequent_indent="    ",
                        break_on_hyphens=False,
                    )
                )
    return lines


def show_command(endpoint: str, *, output_format: str, echo: Echo) -> int:
    """Print an endpoint's parameters (and those of the models they reference) as tables."""
    try:
        spec = resolve_endpoint(endpoint)
    except EndpointLookupError as exc:
        print(f"falbind: {exc}", file=sys.stderr)
        return 2
    input_model = spec.input_model
    schema = input_model.model_json_schema(by_alias=True)
    params = parameters(schema)
    nested = {
        name: parameters(definition)
        for name, definition in sorted((schema.get("$defs") or {}).items())
        if definition.get("properties")
    }
    if output_format == "json":
        document = {
            "endpoint": spec.id,
            "name": spec.name,
            "category": spec.category,
            "input_model": input_model.__name__,
            "output_model": spec.output_model.__name__,
            "parameters": [asdict(p) for p in params],
            "models": {name: [asdict(p) for p in rows] for name, rows in nested.items()},
        }
        echo(json.dumps(document, indent=2))
        return 0
    width = terminal_width()
    for line in (
        f"{spec.id} ({spec.category}): {input_model.__name__} -> {spec.output_model.__name__}",
        f"python: {spec.module_path}, client method {spec.name}",
    ):
        for part in textwrap.wrap(line, width, subsequent_indent="  ") if width else [line]:
            echo(part)
    echo("")
    for line in _parameter_table(params, width):
        echo(line)
    for name, rows in nested.items():
        echo("")
        echo(f"{printable(name)}:")
        for line in _parameter_table(rows, None if width is None else width - 2):
            echo("  " + line)
    return 0
