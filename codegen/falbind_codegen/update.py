"""Change the registry and regenerate as one step: all of it happens, or none of it.

``falbind add`` and ``falbind refresh`` validate everything they can before calling
:func:`apply_update`; what can only fail afterwards (the registry loader's checks, rendering,
writing the tree) makes :func:`apply_update` put back the registry files it touched, byte for
byte, before the error propagates. ``write_tree`` itself leaves ``generated/`` intact on failure.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from .generate import BuildResult, Drift, build_files, check_registry_files, write_tree
from .naming import schema_filename
from .registry import MODELS_FILE, SCHEMAS_DIR, EndpointEntry, RegistryError, load_registry
from .vendor import VendoredDocument, store_schema, write_models_file

__all__ = ["RegistryUpdate", "UpdateResult", "apply_update"]


@dataclass(frozen=True)
class RegistryUpdate:
    """What to write: the complete new entry list, documents to store, ids to drop."""

    entries: tuple[EndpointEntry, ...]
    documents: tuple[VendoredDocument, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.documents or self.removed)


@dataclass(frozen=True)
class UpdateResult:
    build: BuildResult
    drift: Drift
    """What ``write_tree`` changed, over the whole generated tree."""

    @property
    def reused(self) -> int:
        return len(self.build.bound) - self.build.rendered

    def summary(self) -> str:
        build, drift = self.build, self.drift
        return (
            f"regenerated: {len(build.bound)} bound ({build.rendered} rendered, {self.reused} "
            f"reused), {len(build.unbound)} unbound; {len(drift.changed)} changed, "
            f"{len(drift.missing)} added, {len(drift.extra)} removed files"
        )


def _snapshot(paths: Collection[Path]) -> dict[Path, bytes | None]:
    return {path: path.read_bytes() if path.is_file() else None for path in paths}


def _restore(saved: dict[Path, bytes | None]) -> None:
    for path, content in saved.items():
        if content is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(content)


def apply_update(
    registry_dir: Path,
    out_dir: Path,
    update: RegistryUpdate,
    *,
    must_bind: Collection[str] = (),
    progress: Callable[[int], None] | None = None,
) -> UpdateResult:
    """Write ``update`` into the registry and regenerate ``out_dir`` incrementally.

    Raises :class:`RegistryError` (after restoring the registry) when an endpoint in
    ``must_bind`` ends up unbound or a file cannot be written; any other failure also restores
    the registry and propagates.
    """
    schemas = registry_dir / SCHEMAS_DIR
    touched = {d.endpoint_id for d in update.documents} | set(update.removed)
    saved = _snapshot(
        [registry_dir / MODELS_FILE, *(schemas / schema_filename(i) for i in sorted(touched))]
    )
    try:
        for document in update.documents:
            store_schema(registry_dir, document)
        for endpoint_id in update.removed:
            (schemas / schema_filename(endpoint_id)).unlink(missing_ok=True)
        write_models_file(registry_dir, update.entries)
        registry = load_registry(registry_dir)
        check_registry_files(registry)
        build = build_files(registry, previous_dir=out_dir, progress=progress)
        failed = [i for i in must_bind if i in build.unbound]
        if failed:
            raise RegistryError(
                f"{failed[0]} could not be bound: {build.unbound[failed[0]]}; nothing was changed"
            )
        drift = write_tree(out_dir, build.files, build.unchanged)
    except OSError as exc:
        _restore(saved)
        raise RegistryError(f"cannot update {registry_dir} and {out_dir}: {exc}") from exc
    except BaseException:
        _restore(saved)
        raise
    return UpdateResult(build, drift)
