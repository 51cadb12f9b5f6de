"""``falbind refresh``: compare the registry with fal's catalogue and apply what the user accepts.

1. Read the catalogue (``GET /v1/models?expand=openapi-3.0``, cursor paging, retries: see
   :mod:`falbind_codegen.catalogue`), per ``--category`` if given. An entry without an inlined
   document is fetched from the per-endpoint OpenAPI URL.
2. Plan, without writing anything: *new* endpoints (listed, not in the registry), *changed*
   documents (with the breaking/compatible report of :mod:`falbind_codegen.diff`), *deprecated*
   ones (catalogue status other than ``active``: reported only) and *removed* ones (in the
   registry, absent from the catalogue; with ``--category``, only registry entries of those
   categories count). A new or changed document that cannot be bound (invalid, describes another
   id, dangling ``$ref``, a registry patch no longer applies) is reported with the reason and is
   never written.
3. Choose: ``--dry-run`` applies nothing, ``--yes`` everything, a terminal on stdin asks per
   item, anything else (CI, pipes) only reports.
4. Guard the registry: when the catalogue lists no endpoint (of the categories asked for) or
   would remove more than :func:`removal_limit` allows (more than 20 endpoints, or more than 10%
   of the registry entries in scope with at least 3 always allowed), the catalogue is taken to
   be incomplete: the report is printed, nothing is applied, and the run fails, in every mode,
   unless ``--allow-removals`` says fal really removed them.
5. Apply the accepted items and regenerate incrementally, all or nothing
   (:func:`falbind_codegen.update.apply_update`).

Exit status: 0 when every reported item could be applied (or nothing changed), 1 when some new
or changed document cannot be bound, 2 on errors (catalogue unreadable, registry invalid,
removals refused by the guard).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from falbind.tooling.progress import Progress

from .add import new_entry, normalise_entry
from .catalogue import (
    DEFAULT_BASE_URL,
    DEFAULT_OPENAPI_URL,
    CatalogueClient,
    CatalogueEntry,
    CatalogueError,
)
from .diff import DiffError, SchemaDiff, diff_documents
from .normalise import UnbindableEndpoint
from .registry import (
    MODELS_FILE,
    EndpointEntry,
    Registry,
    RegistryError,
    _check_unique as check_unique,  # the loader's clash rules, reused as is
    load_registry,
)
from .update import RegistryUpdate, UpdateResult, apply_update
from .vendor import VendoredDocument, document_bytes, parse_document

__all__ = [
    "RefreshError",
    "RefreshItem",
    "apply_items",
    "plan_refresh",
    "read_catalogue",
    "refresh_command",
    "removal_guard",
    "removal_limit",
]

Kind = Literal["new", "changed", "deprecated", "removed"]
Mode = Literal["report", "dry-run", "yes", "interactive"]
Echo = Callable[[str], None]
Fetch = Callable[[str], dict[str, Any]]
ACTIVE = "active"
MAX_REMOVALS = 20
"""More removals than this in one refresh need ``--allow-removals``."""
MAX_REMOVAL_SHARE = 0.10
"""... as do removals of more than this share of the registry entries in scope ..."""
MIN_REMOVALS_ALLOWED = 3
"""... except that this many are always allowed (a small registry may lose one endpoint)."""
_SYMBOL = {"new": "+", "changed": "~", "deprecated": "!", "removed": "-"}


class RefreshError(RegistryError):
    """``falbind refresh`` could not run or apply; nothing was written. One line."""


@dataclass(frozen=True)
class RefreshItem:
    """One difference between the registry and the catalogue."""

    kind: Kind
    endpoint_id: str
    category: str | None = None
    status: str | None = None
    entry: EndpointEntry | None = None
    """The registry entry after applying (new: the entry to add; changed: the current one)."""
    document: VendoredDocument | None = field(default=None, repr=False)
    diff: SchemaDiff | None = None
    problem: str | None = None
    """Why the item cannot be applied (its document cannot be bound)."""
    note: str | None = None

    @property
    def actionable(self) -> bool:
        return self.kind != "deprecated" and self.problem is None

    def headline(self) -> str:
        what = f"{_SYMBOL[self.kind]} {self.kind:<10} {self.endpoint_id}"
        if self.kind == "changed" and self.diff is not None:
            diff = self.diff
            return f"{what}: {len(diff.changes)} change(s), {len(diff.breaking)} breaking"
        details = [d for d in (self.category, self.note) if d]
        return f"{what} ({'; '.join(details)})" if details else what

    def lines(self) -> list[str]:
        lines = [self.headline()]
        if self.kind == "changed" and self.diff is not None:
            lines.extend("    " + line for line in self.diff.to_text().splitlines()[1:])
        if self.problem:
            lines.append(f"    cannot be applied: {self.problem}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "endpoint_id": self.endpoint_id,
            "category": self.category,
            "status": self.status,
            "actionable": self.actionable,
            "problem": self.problem,
            "note": self.note,
            "diff": self.diff.to_dict() if self.diff is not None else None,
        }


# --------------------------------------------------------------------------- reading


def read_catalogue(
    client: CatalogueClient, categories: Sequence[str], progress: Progress | None = None
) -> dict[str, CatalogueEntry]:
    """Every catalogue entry (of ``categories``, if any) with its document inlined, by id."""
    entries: dict[str, CatalogueEntry] = {}
    listings: Sequence[str | None] = categories or [None]
    for category in listings:
        callback = None
        if progress is not None:
            callback = functools.partial(_shifted, progress, len(entries))
        for entry in client.iter_models(category, expand_openapi=True, progress=callback):
            entries.setdefault(entry.endpoint_id, entry)
    return entries


def _shifted(progress: Progress, base: int, count: int) -> None:
    """Progress across several category listings: ``count`` is per listing."""
    progress.update(base + count)


# --------------------------------------------------------------------------- planning


def _document(entry: CatalogueEntry, fetch: Fetch) -> VendoredDocument:
    """The entry's document (fetched if the catalogue did not inline it), checked to be a fal
    OpenAPI document of this endpoint; raises ``RegistryError``/``CatalogueError``."""
    raw = entry.openapi if entry.openapi is not None else fetch(entry.endpoint_id)
    source = f"catalogue document of {entry.endpoint_id}"
    return parse_document(document_bytes(raw), source, entry.endpoint_id)


def _new_item(registry: Registry, entry: CatalogueEntry, fetch: Fetch) -> RefreshItem:
    endpoint_id = entry.endpoint_id
    try:
        document = _document(entry, fetch)
        registry_entry = new_entry(registry, endpoint_id, entry.category or document.category)
        normalise_entry(registry, registry_entry, document.raw)
    except (RegistryError, CatalogueError, UnbindableEndpoint) as exc:
        problem = str(exc) if not isinstance(exc, UnbindableEndpoint) else f"cannot be bound: {exc}"
        return RefreshItem("new", endpoint_id, entry.category, entry.status, problem=problem)
    return RefreshItem(
        "new", endpoint_id, registry_entry.category, entry.status, registry_entry, document
    )


def _changed_item(
    registry: Registry, known: EndpointEntry, entry: CatalogueEntry, fetch: Fetch
) -> RefreshItem | None:
    old = json.loads(registry.schema_bytes(known))
    try:
        document = _document(entry, fetch)
    except (RegistryError, CatalogueError) as exc:
        return RefreshItem("changed", known.id, known.category, entry.status, problem=str(exc))
    new = json.loads(document.raw)
    if new == old:
        return None
    diff: SchemaDiff | None = None
    note: str | None = None
    try:
        diff = diff_documents(old, new)
        if not diff.changes:
            note = "descriptions or examples only"
    except DiffError as exc:
        note = f"no schema diff: {exc}"
    problem: str | None = None
    try:
        normalise_entry(registry, known, document.raw)
    except UnbindableEndpoint as exc:
        problem = f"cannot be bound: {exc} (the registry keeps the current document)"
    except RegistryError as exc:
        problem = str(exc)
    return RefreshItem(
        "changed", known.id, known.category, entry.status, known, document, diff, problem, note
    )


def plan_refresh(
    registry: Registry,
    catalogue: dict[str, CatalogueEntry],
    fetch: Fetch,
    *,
    categories: Sequence[str] = (),
    only_new: bool = False,
) -> list[RefreshItem]:
    """The differences between ``registry`` and ``catalogue``, sorted by kind then id."""
    items: list[RefreshItem] = []
    for endpoint_id, entry in sorted(catalogue.items()):
        known = registry.get(endpoint_id)
        if entry.status not in (None, ACTIVE):
            if not only_new:
                bound = "in the registry" if known else "not in the registry"
                note = f"status {entry.status}; {bound}"
                items.append(
                    RefreshItem("deprecated", endpoint_id, entry.category, entry.status, note=note)
                )
            continue
        if known is None:
            items.append(_new_item(registry, entry, fetch))
        elif not only_new:
            changed = _changed_item(registry, known, entry, fetch)
            if changed is not None:
                items.append(changed)
    if not only_new:
        wanted = set(categories)
        for known in registry.entries:
            if known.id not in catalogue and (not wanted or known.category in wanted):
                note = "in the registry, not in the catalogue"
                items.append(
                    RefreshItem("removed", known.id, known.category, entry=known, note=note)
                )
    order = {"new": 0, "changed": 1, "deprecated": 2, "removed": 3}
    return sorted(items, key=lambda item: (order[item.kind], item.endpoint_id))


# --------------------------------------------------------------------------- guarding


def removal_limit(in_scope: int) -> int:
    """How many removals one refresh may apply without ``--allow-removals``."""
    share = int(in_scope * MAX_REMOVAL_SHARE)
    return min(MAX_REMOVALS, max(MIN_REMOVALS_ALLOWED, share))


def removal_guard(
    registry: Registry, items: Sequence[RefreshItem], listed: int, categories: Sequence[str] = ()
) -> str | None:
    """Why the planned removals look like an incomplete catalogue rather than fal's decision
    (``None`` when they do not): the catalogue lists nothing, or the removals exceed
    :func:`removal_limit` of the registry entries in scope."""
    removed = sum(1 for item in items if item.kind == "removed")
    if not removed:
        return None
    wanted = set(categories)
    in_scope = sum(1 for e in registry.entries if not wanted or e.category in wanted)
    scope = f" of categor{'ies' if len(wanted) > 1 else 'y'} {', '.join(sorted(wanted))}"
    scope = scope if wanted else ""
    if listed == 0:
        why = f"the catalogue lists no endpoint{scope}"
    elif removed > (limit := removal_limit(in_scope)):
        why = (
            f"the catalogue lists {listed} endpoint(s){scope} and would remove more than "
            f"{limit} (the limit: {MAX_REMOVALS}, or {MAX_REMOVAL_SHARE:.0%} of the registry, "
            f"at least {MIN_REMOVALS_ALLOWED})"
        )
    else:
        return None
    return (
        f"refusing to remove {removed} of {in_scope} registry endpoint(s): {why}, so it looks "
        "incomplete; nothing was applied (pass --allow-removals if fal really removed them)"
    )


# --------------------------------------------------------------------------- applying


def apply_items(
    registry: Registry,
    out_dir: Path,
    accepted: Iterable[RefreshItem],
    progress: Progress | None = None,
) -> UpdateResult:
    """Write the accepted items into the registry and regenerate (all or nothing)."""
    entries = {entry.id: entry for entry in registry.entries}
    documents: list[VendoredDocument] = []
    removed: list[str] = []
    for item in accepted:
        if not item.actionable:
            continue
        if item.kind == "removed":
            entries.pop(item.endpoint_id, None)
            removed.append(item.endpoint_id)
            continue
        if item.entry is None or item.document is None:  # pragma: no cover - built together
            raise RefreshError(f"{item.endpoint_id}: nothing to apply")
        entries[item.endpoint_id] = item.entry
        documents.append(item.document)
    try:
        check_unique(tuple(entries.values()), registry.root / MODELS_FILE)
    except RegistryError as exc:
        raise RefreshError(f"the accepted endpoints clash: {exc}") from None
    callback = progress.advance if progress is not None else None
    return apply_update(
        registry.root,
        out_dir,
        RegistryUpdate(tuple(entries.values()), tuple(documents), tuple(removed)),
        progress=callback,
    )


def _ask_on_terminal(item: RefreshItem) -> bool:
    """Ask on stderr, read the answer from stdin; anything but y/yes declines."""
    verb = {"new": "add", "changed": "update", "removed": "remove"}[item.kind]
    sys.stderr.write(f"{verb} {item.endpoint_id}? [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _choose(items: list[RefreshItem], mode: Mode) -> list[RefreshItem]:
    candidates = [item for item in items if item.actionable]
    if mode == "yes":
        return candidates
    if mode == "interactive":
        return [item for item in candidates if _ask_on_terminal(item)]
    return []


def _mode(dry_run: bool, yes: bool) -> Mode:
    if dry_run:
        return "dry-run"
    if yes:
        return "yes"
    return "interactive" if sys.stdin.isatty() else "report"


def refresh_command(
    registry_dir: Path,
    out_dir: Path,
    *,
    catalogue_url: str | None = None,
    openapi_url: str | None = None,
    categories: Sequence[str] = (),
    only_new: bool = False,
    yes: bool = False,
    dry_run: bool = False,
    allow_removals: bool = False,
    output_format: str = "text",
    echo: Echo,
) -> int:
    """Run ``falbind refresh``; see the module docstring for the steps and exit status."""
    registry = load_registry(registry_dir)
    reading = Progress("reading catalogue")
    try:
        with CatalogueClient(
            catalogue_url or DEFAULT_BASE_URL, openapi_url=openapi_url or DEFAULT_OPENAPI_URL
        ) as client:
            catalogue = read_catalogue(client, categories, reading)
            reading.close()
            items = plan_refresh(
                registry,
                catalogue,
                client.fetch_openapi,
                categories=categories,
                only_new=only_new,
            )
    except CatalogueError as exc:
        reading.close()
        raise RefreshError(f"cannot read the catalogue: {exc}") from None
    mode = _mode(dry_run, yes)
    text = output_format == "text"
    if text:
        _echo_report(items, len(catalogue), echo)
    refused = None if allow_removals else removal_guard(registry, items, len(catalogue), categories)
    if refused is not None:
        if not text:
            report = _json_report(items, len(catalogue), [], mode, None)
            echo(json.dumps({**report, "refused": refused}, indent=2))
        raise RefreshError(refused)
    accepted = _choose(items, mode)
    update: UpdateResult | None = None
    if accepted:
        rendering = Progress(
            "rendering", total=sum(1 for i in accepted if i.kind != "removed") or None
        )
        update = apply_items(registry, out_dir, accepted, rendering)
        rendering.close()
    if text:
        _echo_outcome(items, accepted, mode, update, echo)
    else:
        echo(json.dumps(_json_report(items, len(catalogue), accepted, mode, update), indent=2))
    return 1 if any(item.problem for item in items) else 0


def _echo_report(items: list[RefreshItem], listed: int, echo: Echo) -> None:
    counts = {kind: sum(1 for i in items if i.kind == kind) for kind in _SYMBOL}
    echo(
        f"catalogue: {listed} endpoint(s); {counts['new']} new, {counts['changed']} changed, "
        f"{counts['deprecated']} deprecated, {counts['removed']} removed"
    )
    for item in items:
        for line in item.lines():
            echo(line)


def _echo_outcome(
    items: list[RefreshItem],
    accepted: list[RefreshItem],
    mode: Mode,
    update: UpdateResult | None,
    echo: Echo,
) -> None:
    actionable = sum(1 for item in items if item.actionable)
    if update is not None:
        echo(f"applied {len(accepted)} of {actionable} change(s); {update.summary()}")
    elif mode == "report" and actionable:
        echo(f"report only (stdin is not a terminal): pass --yes to apply {actionable} change(s)")
    elif mode == "dry-run" and actionable:
        echo(f"dry run: {actionable} change(s) not applied")
    elif not items:
        echo("the registry is up to date with the catalogue")
    else:
        echo("nothing applied")


def _json_report(
    items: list[RefreshItem],
    listed: int,
    accepted: list[RefreshItem],
    mode: Mode,
    update: UpdateResult | None,
) -> dict[str, Any]:
    return {
        "catalogue_endpoints": listed,
        "mode": mode,
        "counts": {kind: sum(1 for i in items if i.kind == kind) for kind in _SYMBOL},
        "items": [item.to_dict() for item in items],
        "applied": [item.endpoint_id for item in accepted],
        "generated": None
        if update is None
        else {
            "bound": len(update.build.bound),
            "unbound": len(update.build.unbound),
            "rendered": update.build.rendered,
            "reused": update.reused,
            "changed_files": len(update.drift.changed),
            "added_files": len(update.drift.missing),
            "removed_files": len(update.drift.extra),
        },
    }
