"""The generator's CLI commands (``falbind generate|check|vendor``); the parser lives in the runtime
CLI so ``falbind`` is one command whether or not the codegen extra is installed."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from falbind.tooling.progress import Progress

from .generate import (
    BuildResult,
    build_files,
    check_registry_files,
    drift,
    staging_folder,
    write_tree,
)
from .registry import EndpointEntry, RegistryError, load_registry

# diff, normalise, update and vendor are imported by the commands that use them: `falbind check`
# must stay fast, and importing modules it does not need was a good part of its time.

__all__ = ["check_command", "diff_command", "generate_command", "vendor_command"]

Echo = Callable[[str], None]


def _report_unbound(result: BuildResult, echo: Echo) -> None:
    if result.unbound:
        echo(f"{len(result.unbound)} endpoint(s) could not be bound:")
        for endpoint_id, reason in sorted(result.unbound.items()):
            echo(f"  {endpoint_id}: {reason}")


def generate_command(registry_dir: Path, out_dir: Path, *, full: bool, echo: Echo) -> int:
    started = time.perf_counter()
    registry = load_registry(registry_dir)
    check_registry_files(registry)
    rendering = Progress("rendering")  # drawn on a terminal only
    # Built in a staging folder of the output: each rendered module is formatted there, and so
    # written once.
    with staging_folder(out_dir) as staging:
        result = build_files(
            registry,
            previous_dir=None if full else out_dir,
            progress=rendering.advance,
            on_plan=rendering.set_total,
            staging=staging,
        )
        if rendering.total:
            rendering.close()
        report = write_tree(
            out_dir, result.files, result.unchanged, staging=staging, staged=result.staged
        )
    _report_unbound(result, echo)
    echo(
        f"bound {len(result.bound)} of {len(registry)} endpoints "
        f"({result.rendered} rendered, {len(result.bound) - result.rendered} unchanged); "
        f"{len(report.changed)} changed, {len(report.missing)} added, {len(report.extra)} removed "
        f"files in {out_dir} ({time.perf_counter() - started:.1f}s)"
    )
    return 0


def check_command(registry_dir: Path, out_dir: Path, *, echo: Echo) -> int:
    registry = load_registry(registry_dir)
    check_registry_files(registry)
    result = build_files(registry, previous_dir=out_dir)
    report = drift(out_dir, result.files, result.unchanged)
    if report.clean:
        echo(f"{out_dir} is up to date with {registry_dir} ({len(result.bound)} endpoints bound)")
        return 0
    echo(f"{out_dir} differs from what {registry_dir} generates; run `falbind generate`:")
    for line in report.lines():
        echo(f"  {line}")
    return 1


def vendor_command(
    registry_dir: Path, documents: list[Path], out_dir: Path | None, *, echo: Echo
) -> int:
    """Copy documents into the registry (new ids are added, known ids get the new document).

    With ``out_dir``, the registry and the bindings change together or not at all: a document
    that cannot be bound (or would generate an unusable module) is refused with the reason and
    nothing is written. Without it (``--no-generate``), the documents are only copied, so a
    broken one can be given a registry patch before ``falbind generate``.
    """
    # Deferred so that `falbind check`, which needs none of these, starts fast.
    from .normalise import UnbindableEndpoint, normalise_document
    from .update import RegistryUpdate, apply_update
    from .vendor import read_document, store_schema, write_models_file

    registry = load_registry(registry_dir)
    entries: dict[str, EndpointEntry] = {e.id: e for e in registry.entries}
    vendored = [read_document(path) for path in documents]  # all read before anything is written
    seen: set[str] = set()
    for document in vendored:
        if document.endpoint_id in seen:
            raise RegistryError(f"{document.endpoint_id}: given twice")
        seen.add(document.endpoint_id)
    for document in vendored:
        if document.endpoint_id not in entries:
            entries[document.endpoint_id] = EndpointEntry(
                id=document.endpoint_id, category=document.category
            )
    if out_dir is not None:
        for document in vendored:  # refused before anything is written
            entry = entries[document.endpoint_id]
            try:
                normalise_document(
                    registry.document(entry, document.raw), entry.id, entry.names.stem
                )
            except UnbindableEndpoint as exc:
                raise RegistryError(
                    f"{document.endpoint_id} cannot be bound: {exc}; nothing was changed "
                    "(--no-generate copies it anyway, for a registry patch to fix)"
                ) from None
        update = apply_update(
            registry_dir,
            out_dir,
            RegistryUpdate(tuple(entries.values()), tuple(vendored)),
            must_bind=tuple(seen),
        )
        echo(f"vendored {len(vendored)} document(s) into {registry_dir}; {update.summary()}")
        return 0
    for document in vendored:
        store_schema(registry_dir, document)
    write_models_file(registry_dir, entries.values())
    echo(f"vendored {len(vendored)} document(s) into {registry_dir}")
    return 0


def diff_command(old: Path, new: Path, *, output_format: str, echo: Echo) -> int:
    """Print the breaking-change report of ``old`` -> ``new``.

    Exit status: 0 no breaking change, 1 breaking changes, 2 the documents cannot be compared
    (missing file, invalid JSON, not an endpoint's OpenAPI document, different endpoints).
    """
    from .diff import DiffError, diff_files  # deferred: `falbind check` starts fast

    try:
        report = diff_files(old, new)
    except DiffError as exc:
        print(f"falbind: {exc}", file=sys.stderr)
        return 2
    if output_format == "json":
        echo(json.dumps(report.to_dict(), indent=2))
    else:
        echo(report.to_text().rstrip("\n"))
    return 1 if report.is_breaking else 0
