"""The generator pipeline: registry -> the files of one generated package -> disk (or a drift report).

The output folder is the package itself, and its name is the import name: falbind's own bindings
go to ``generated/falbind_generated``; a private registry's go wherever its owner points ``--out``
(``src/acme_fal``). Generated code refers to itself only relatively and to the installed
``falbind`` runtime by its public modules, so the same files work under any package name.

``build_files`` computes every generated file in memory; ``write_tree`` replaces the generated
part of the output folder only after everything was built, so a failure leaves it intact;
``drift`` compares the computed set with what is on disk (changed, missing and extra files).

Rendering is the slow part, so ``build_files`` reuses an endpoint's committed module when the
manifest says it came from the same schema bytes, registry entry and generator, *and* the file's
bytes on disk still have the hash the manifest recorded (a hand edit is therefore still caught).
The package-level files are reused the same way, when the manifest's ``package_sha256`` (a hash
of everything they are rendered from) matches. So ``falbind check`` on an up-to-date tree renders
and formats nothing: it reads and hashes the registry's schemas and the generated files once.

A full build normalises and renders in worker processes, a batch of endpoints per
datamodel-code-generator call, the largest schemas first (so the last batches, which decide when
the build ends, are short). The parent formats each batch as it comes back (one ruff run per
batch), while the workers render the next ones; given a staging folder (``staging_folder``), it
formats the modules right there, so ``write_tree`` need not write them again.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .naming import schema_filename
from .normalise import UnbindableEndpoint, normalise_document
from .registry import EndpointEntry, Registry, RegistryError
from .render import (
    EndpointSource,
    format_sources,
    render_endpoint_batch,
    render_template,
    template_sources,
    warm_up,
)

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

__all__ = [
    "MANIFEST",
    "BuildResult",
    "Drift",
    "build_files",
    "drift",
    "generator_fingerprint",
    "owned_files_on_disk",
    "package_name",
    "staging_folder",
    "write_tree",
]

MANIFEST = "_manifest.json"
ENDPOINTS_DIR = "endpoints"
BATCH_SIZE = 40
# The generator's modules whose code decides the output bytes (the fingerprint covers them).
OUTPUT_SHAPING_MODULES = ("naming.py", "normalise.py", "registry.py", "render.py", "generate.py")


def _sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _series(version: str) -> str:
    """``0.17.5`` -> ``0.17``: the release series whose formatting style is fixed."""
    parts = version.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 and parts[0].isdigit() else version


def generator_fingerprint() -> dict[str, str]:
    """What, besides the registry, determines the output: tools and the generator's own code.

    datamodel-code-generator is pinned exactly (its output changes between patch releases), so
    its full version is recorded. ruff is recorded by release series (``0.17``): ruff changes the
    formatter's stable style only in minor releases (its versioning policy), and ``[codegen]``
    accepts any patch of that series, so a patch upgrade must not make ``falbind check`` re-render
    everything and report the manifest as drifted. A new series changes the fingerprint."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in OUTPUT_SHAPING_MODULES:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes())
    for name, content in template_sources().items():
        digest.update(name.encode() + b"\0" + content)
    return {
        "falbind-codegen": digest.hexdigest(),
        "datamodel-code-generator": _version("datamodel-code-generator"),
        "ruff": _series(_version("ruff")),
    }


@dataclass
class _Planned:
    entry: EndpointEntry
    schema_sha256: str
    source: str
    code: str | None = None
    unbound: str | None = None
    notes: tuple[str, ...] = ()
    reused: bool = False
    """``code`` is the committed module's, read from the previous output folder."""
    output_sha256: str | None = None
    """The hash of ``code``'s bytes, when already known (a reused module's, checked on disk)."""
    entry_sha256: str = field(init=False)

    def __post_init__(self) -> None:
        self.entry_sha256 = self.entry.fingerprint()  # once: the manifest needs it too

    @property
    def module_path(self) -> str:
        return f"{ENDPOINTS_DIR}/{self.entry.names.module}.py"


@dataclass
class BuildResult:
    files: dict[str, str]
    """Relative path (posix) -> content, every file the generator owns."""
    bound: list[str] = field(default_factory=list)
    unbound: dict[str, str] = field(default_factory=dict)
    rendered: int = 0
    """How many endpoint modules were rendered (the rest were reused)."""
    unchanged: set[str] = field(default_factory=set)
    """Files of ``files`` that are byte for byte the previous output folder's (read from it and
    matching the hash its manifest recorded): :func:`drift` need not read them again."""
    staged: set[str] = field(default_factory=set)
    """Files of ``files`` already written, byte for byte, into the staging folder the build was
    given: :func:`write_tree` need not write them again."""


def _load_previous(out_dir: Path | None) -> dict[str, Any]:
    if out_dir is None:
        return {}
    try:
        data = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _reusable(planned: _Planned, previous: dict[str, Any], out_dir: Path | None) -> str | None:
    """The committed module of ``planned`` when it provably is what we would render.

    The file's bytes (not its decoded text) must have the recorded hash, so the returned code is
    exactly what is on disk and :func:`drift` need not read it again."""
    record = previous.get("endpoints", {}).get(planned.entry.id)
    if out_dir is None or not isinstance(record, dict):
        return None
    if (
        record.get("schema_sha256") != planned.schema_sha256
        or record.get("entry_sha256") != planned.entry_sha256
        or record.get("module") != planned.module_path
    ):
        return None
    try:
        data = (out_dir / planned.module_path).read_bytes()
    except OSError:
        return None
    digest = _sha256(data)
    if digest != record.get("output_sha256"):
        return None
    try:
        code = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    planned.notes = tuple(record.get("notes", ()))
    planned.output_sha256 = digest  # the manifest's record, not hashed a second time
    return code


@dataclass
class _Job:
    """One endpoint to render, as sent to a worker process."""

    entry: EndpointEntry
    raw: bytes
    source: str


@dataclass
class _Outcome:
    """What rendering one :class:`_Job` gave: code, or why the endpoint cannot be bound."""

    code: str | None = None
    """Unformatted code (the parent formats it), or an ``!error: ``/``!unusable: `` marker."""
    unbound: str | None = None
    """Why the schema cannot be bound (set instead of ``code``)."""
    notes: tuple[str, ...] = ()


def _render_batch(registry: Registry, batch: list[_Job]) -> list[_Outcome]:
    """Normalise and render ``batch`` (one datamodel-code-generator call). Runs in a worker
    process, so normalising is spread over the workers too."""
    outcomes = [_Outcome() for _ in batch]
    sources: list[EndpointSource] = []
    for job, outcome in zip(batch, outcomes, strict=True):
        entry = job.entry
        try:
            document = registry.document(entry, job.raw)
            normalised = normalise_document(document, entry.id, entry.names.stem)
        except UnbindableEndpoint as exc:
            outcome.unbound = str(exc)
            continue
        outcome.notes = normalised.notes
        sources.append(EndpointSource(entry.id, entry.names.module, job.source, normalised))
    # Batches come back unformatted: the parent formats them, into its staging folder if it has
    # one, while the workers render the next batches.
    rendered = render_endpoint_batch(sources, formatted=False) if sources else {}
    for job, outcome in zip(batch, outcomes, strict=True):
        if outcome.unbound is None:
            outcome.code = rendered.get(job.entry.names.module)
    return outcomes


_worker_registry: Registry | None = None


def _start_worker(registry: Registry, warm: bool) -> None:
    """Worker set-up: keep the registry (sent once, not with every batch), and warm
    datamodel-code-generator up unless the worker was forked from a parent that did."""
    global _worker_registry
    _worker_registry = registry
    if warm:
        warm_up()


def _render_in_worker(batch: list[_Job]) -> list[_Outcome]:
    assert _worker_registry is not None
    return _render_batch(_worker_registry, batch)


class _Renderer:
    """Renders batches: in a pool of worker processes when ``jobs`` > 1 (started on the first
    batch), else in this process."""

    def __init__(self, registry: Registry, jobs: int) -> None:
        self._registry = registry
        self._jobs = jobs
        self._pool: ProcessPoolExecutor | None = None
        self._local: list[list[_Job]] = []
        self._futures: dict[Future[list[_Outcome]], list[_Job]] = {}

    def __enter__(self) -> _Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def submit(self, batch: list[_Job], *, last: bool = False) -> None:
        """Queue ``batch``; ``last`` says no more batches follow (so when this is the only one,
        as in ``check`` or a small update, it is rendered here: a pool would cost more)."""
        if self._jobs <= 1 or (last and self._pool is None):
            self._local.append(batch)
            return
        if self._pool is not None:
            self._futures[self._pool.submit(_render_in_worker, batch)] = batch
            return
        # Imported here: `check` and small updates render in this process, if at all.
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context()
        forks = context.get_start_method() == "fork"
        if forks:
            # dcg's first call in a process costs ~0.5 s of CPU; made here once, every forked
            # worker inherits it instead of repeating it.
            warm_up()
        self._pool = ProcessPoolExecutor(
            max_workers=self._jobs,
            mp_context=context,
            initializer=_start_worker,
            initargs=(self._registry, not forks),
        )
        self._futures[self._pool.submit(_render_in_worker, batch)] = batch

    def results(self) -> Iterator[tuple[list[_Job], list[_Outcome]]]:
        """Each batch with its outcomes, in the order the batches finish."""
        from concurrent.futures import as_completed

        for batch in self._local:
            yield batch, _render_batch(self._registry, batch)
        for future in as_completed(self._futures):
            yield self._futures[future], future.result()


def build_files(
    registry: Registry,
    *,
    previous_dir: Path | None = None,
    jobs: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    staging: Path | None = None,
) -> BuildResult:
    """Compute every generated file for ``registry``.

    ``previous_dir`` is the current output folder: unchanged endpoints are reused from it (see the
    module docstring). Pass ``None`` for a full regeneration. ``on_plan`` is called once with the
    number of endpoints to render, ``progress`` with each rendered batch's size. ``staging``
    (from :func:`staging_folder`): the rendered files are formatted there and left for
    :func:`write_tree` (:attr:`BuildResult.staged`).
    """
    fingerprint = generator_fingerprint()
    previous = _load_previous(previous_dir)
    if previous.get("generator") != fingerprint:
        previous = {}
    registry_name = registry.root.resolve().name
    planned: dict[str, _Planned] = {}
    to_render: list[_Job] = []
    for entry in sorted(registry.entries, key=lambda e: e.id):
        raw = registry.schema_bytes(entry)
        source = f"{registry_name}/schemas/{schema_filename(entry.id)}"
        item = _Planned(entry, _sha256(raw), source)
        planned[entry.id] = item
        item.code = _reusable(item, previous, previous_dir)
        item.reused = item.code is not None
        if item.code is None:
            to_render.append(_Job(entry, raw, source))
    if on_plan is not None:
        on_plan(len(to_render))
    # Largest documents first (their size is a fair measure of their rendering time): the
    # batches still running when the others are done are then the short ones.
    to_render.sort(key=lambda job: len(job.raw), reverse=True)
    staged: set[str] = set()
    formatted: dict[str, str] = {}
    outcomes: list[tuple[_Job, _Outcome]] = []
    with _Renderer(registry, jobs or os.cpu_count() or 1) as renderer:
        for start in range(0, len(to_render), BATCH_SIZE):
            last = start + BATCH_SIZE >= len(to_render)
            renderer.submit(to_render[start : start + BATCH_SIZE], last=last)
        for batch, batch_outcomes in renderer.results():
            code = {
                job.entry.names.module: o.code
                for job, o in zip(batch, batch_outcomes, strict=True)
                if o.code is not None and not o.code.startswith("!")  # "!...": an error marker
            }
            if code:  # formatted while the workers render the next batches
                folder = staging / ENDPOINTS_DIR if staging is not None else None
                formatted.update(format_sources(code, folder))
                if staging is not None:
                    staged.update(f"{ENDPOINTS_DIR}/{module}.py" for module in code)
            outcomes += zip(batch, batch_outcomes, strict=True)
            if progress:
                progress(len(batch))
    rendered = 0
    for job, outcome in outcomes:
        item = planned[job.entry.id]
        item.notes = outcome.notes
        if outcome.unbound is not None:
            item.unbound = outcome.unbound
            continue
        rendered += 1
        if outcome.code is None:
            continue
        if outcome.code.startswith("!error: "):
            item.unbound = "datamodel-code-generator: " + outcome.code.removeprefix("!error: ")
        elif outcome.code.startswith("!unusable: "):
            reason = outcome.code.removeprefix("!unusable: ")
            item.unbound = "the generated module would be unusable: " + reason
        else:
            item.code = formatted[job.entry.names.module]

    result = BuildResult(files={}, rendered=rendered, staged=staged)
    for item in planned.values():
        if item.code is not None:
            result.files[item.module_path] = item.code
            result.bound.append(item.entry.id)
            if item.reused:
                result.unchanged.add(item.module_path)
        else:
            result.unbound[item.entry.id] = item.unbound or "not rendered"
    items = list(planned.values())
    package, package_sha256 = _package_files(
        registry, items, result, previous, previous_dir, staging
    )
    result.files.update(package)
    result.files[MANIFEST] = _manifest(fingerprint, items, result, package_sha256)
    return result


PACKAGE_FILES = (
    "__init__.py",
    "_index.py",
    f"{ENDPOINTS_DIR}/__init__.py",
    "_typed_client.pyi",
    "_sizes.py",
    "py.typed",
)


def _package_files(
    registry: Registry,
    planned: list[_Planned],
    result: BuildResult,
    previous: dict[str, Any],
    previous_dir: Path | None,
    staging: Path | None,
) -> tuple[dict[str, str], str]:
    """The package-level files, and the fingerprint of what they are rendered from.

    When the previous manifest has the same fingerprint (the generator's too, checked by the
    caller) and every file on disk still has its recorded hash, the files on disk are what we
    would render, and are reused (a ruff run and five templates saved, the bulk of `check`)."""
    bound = [p for p in planned if p.code is not None]
    rows = [
        {
            "id": p.entry.id,
            "name": p.entry.names.method,
            "category": p.entry.category,
            "module": p.entry.names.module,
            "stem": p.entry.names.stem,
        }
        for p in bound
    ]
    aliases = sorted((alias, p.entry.id) for p in bound for alias in p.entry.aliases)
    unbound = sorted(result.unbound.items())
    limited = [p.entry for p in bound if p.entry.size_limits is not None]
    inputs = {
        "rows": rows,
        "aliases": aliases,
        "unbound": unbound,
        "sizes": registry.sizes.model_dump(mode="json"),
        "limited": [entry.model_dump(mode="json", by_alias=True) for entry in limited],
    }
    fingerprint = _sha256(json.dumps(inputs, sort_keys=True))
    reused = _reused_package_files(fingerprint, previous, previous_dir)
    if reused is not None:
        result.unchanged.update(reused)
        return reused, fingerprint
    common = {"source": "the registry"}
    sources = {
        "__init__.py": render_template(
            "package_init.py.j2",
            rows=rows,
            **common,
        ),
        "_index.py": render_template(
            "index.py.j2",
            rows=rows,
            aliases=aliases,
            unbound=unbound,
            **common,
        ),
        f"{ENDPOINTS_DIR}/__init__.py": render_template("endpoints_init.py.j2", **common),
        "_typed_client.pyi": render_template("typed_client.pyi.j2", rows=rows, **common),
        "_sizes.py": render_template(
            "sizes.py.j2",
            sizes=registry.sizes,
            limited=limited,
            **common,
        ),
    }
    # One ruff pass for the package-level modules too.
    modules = {
        path.removesuffix(".py"): code for path, code in sources.items() if path.endswith(".py")
    }
    formatted = format_sources(modules, staging)
    if staging is not None:
        result.staged.update(f"{name}.py" for name in formatted)
    files = {path: formatted.get(path.removesuffix(".py"), code) for path, code in sources.items()}
    return {**files, "py.typed": ""}, fingerprint


def _reused_package_files(
    fingerprint: str, previous: dict[str, Any], previous_dir: Path | None
) -> dict[str, str] | None:
    recorded = previous.get("files")
    if (
        previous_dir is None
        or previous.get("package_sha256") != fingerprint
        or not isinstance(recorded, dict)
    ):
        return None
    files: dict[str, str] = {}
    for path in PACKAGE_FILES:
        try:
            data = (previous_dir / path).read_bytes()
            if _sha256(data) != recorded.get(path):
                return None
            files[path] = data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return None
    return files


def _manifest(
    fingerprint: dict[str, str], planned: list[_Planned], result: BuildResult, package_sha256: str
) -> str:
    endpoints: dict[str, Any] = {}
    for item in planned:
        if item.code is None:
            continue
        endpoints[item.entry.id] = {
            "schema": item.source,
            "schema_sha256": item.schema_sha256,
            "entry_sha256": item.entry_sha256,
            "module": item.module_path,
            "output_sha256": item.output_sha256 or _sha256(item.code),
            "notes": list(item.notes),
        }
    manifest = {
        "generator": fingerprint,
        "counts": {"bound": len(result.bound), "unbound": len(result.unbound)},
        "unbound": dict(sorted(result.unbound.items())),
        "endpoints": endpoints,
        "package_sha256": package_sha256,
        "files": {
            path: _sha256(content)
            for path, content in sorted(result.files.items())
            if not path.startswith(f"{ENDPOINTS_DIR}/") or path.endswith("__init__.py")
        },
    }
    return json.dumps(manifest, indent=1, sort_keys=False) + "\n"


def owned_files_on_disk(out_dir: Path) -> set[str]:
    """Files under ``out_dir`` that the generator owns: all of them (caches and dot-files aside)."""
    owned: set[str] = set()
    if not out_dir.is_dir():
        return owned
    # os.walk rather than Path.rglob: half the time (~15 ms of `check` on ~940 modules), and
    # caches and dot-folders are pruned instead of walked. As with rglob and is_file, symlinked
    # folders are not entered and only (links to) regular files count.
    for root, folders, files in os.walk(out_dir):
        relative = Path(root).relative_to(out_dir).as_posix()
        top = relative == "."
        folders[:] = [f for f in folders if f != "__pycache__" and not (top and f[:1] == ".")]
        for name in files:
            if top and name[:1] == ".":
                continue
            if os.path.isfile(os.path.join(root, name)):
                owned.add(name if top else f"{relative}/{name}")
    return owned


@dataclass(frozen=True)
class Drift:
    changed: tuple[str, ...]
    missing: tuple[str, ...]
    """Files the registry produces that are not on disk."""
    extra: tuple[str, ...]
    """Generated-looking files on disk that the registry does not produce."""

    @property
    def clean(self) -> bool:
        return not (self.changed or self.missing or self.extra)

    def lines(self) -> Iterable[str]:
        yield from (f"changed: {p}" for p in self.changed)
        yield from (f"missing: {p}" for p in self.missing)
        yield from (f"extra:   {p}" for p in self.extra)


def drift(out_dir: Path, files: dict[str, str], unchanged: Iterable[str] = ()) -> Drift:
    """What differs between ``files`` and ``out_dir``. ``unchanged`` names files known to be
    byte for byte on disk already (:attr:`BuildResult.unchanged` of a build from ``out_dir``)."""
    on_disk = owned_files_on_disk(out_dir)
    known = set(unchanged)
    changed = []
    for path in sorted(set(files) & on_disk - known):
        if (out_dir / path).read_bytes() != files[path].encode("utf-8"):
            changed.append(path)
    return Drift(
        changed=tuple(changed),
        missing=tuple(sorted(set(files) - on_disk)),
        extra=tuple(sorted(on_disk - set(files))),
    )


def package_name(out_dir: Path) -> str:
    """The import name of the package generated into ``out_dir``: the folder's own name."""
    name = out_dir.resolve().name
    if not name.isidentifier() or keyword.iskeyword(name):
        raise RegistryError(
            f"{out_dir}: the output folder is the generated package, so its name must be a Python "
            f"identifier (its import name), e.g. --out src/acme_fal"
        )
    return name


@contextmanager
def staging_folder(out_dir: Path) -> Iterator[Path]:
    """A fresh folder inside ``out_dir`` (created if need be) to build the new tree in: pass it
    to :func:`build_files` and then :func:`write_tree`. It is removed on the way out, and so is
    ``out_dir`` if it was created here and nothing was written to it."""
    package_name(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".falbind-staging-", dir=out_dir))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()


def write_tree(
    out_dir: Path,
    files: dict[str, str],
    unchanged: Iterable[str] = (),
    *,
    staging: Path | None = None,
    staged: Iterable[str] = (),
) -> Drift:
    """Make the generated part of ``out_dir`` exactly ``files``; return what changed.

    Everything is written to a staging folder beside ``out_dir`` first; then the endpoints folder
    is swapped in by rename and the top-level files are replaced one by one (``os.replace``), so
    an error while building or staging leaves the old tree untouched. ``staging`` (from
    :func:`staging_folder`) is that folder when the build already wrote the files ``staged``
    into it; it is used up either way.
    """
    package_name(out_dir)
    try:
        report = drift(out_dir, files, unchanged)
        if report.clean:
            return report
        out_dir.mkdir(parents=True, exist_ok=True)
        if staging is None:
            staging = Path(tempfile.mkdtemp(prefix=".falbind-staging-", dir=out_dir))
        _write_staged(out_dir, staging, files, report, set(staged))
        return report
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _write_staged(
    out_dir: Path, staging: Path, files: dict[str, str], report: Drift, staged: set[str]
) -> None:
    for relative, content in files.items():
        if relative in staged:
            continue
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    old_endpoints = out_dir / f".{ENDPOINTS_DIR}-old"
    if old_endpoints.exists():
        shutil.rmtree(old_endpoints)
    if (out_dir / ENDPOINTS_DIR).exists():
        (out_dir / ENDPOINTS_DIR).rename(old_endpoints)
    (staging / ENDPOINTS_DIR).rename(out_dir / ENDPOINTS_DIR)
    shutil.rmtree(old_endpoints, ignore_errors=True)
    for relative in sorted(files):
        if not relative.startswith(f"{ENDPOINTS_DIR}/"):
            os.replace(staging / relative, out_dir / relative)
    for relative in report.extra:
        if not relative.startswith(f"{ENDPOINTS_DIR}/"):
            (out_dir / relative).unlink(missing_ok=True)


def check_registry_files(registry: Registry) -> None:
    """Raise :class:`RegistryError` for schema files nobody registered (stale vendored copies)."""
    expected = {schema_filename(e.id) for e in registry.entries}
    folder = registry.root / "schemas"
    stray = sorted(p.name for p in folder.glob("*.json") if p.name not in expected)
    if stray:
        raise RegistryError(
            f"{folder}: schema files with no registry entry: {', '.join(stray[:5])}"
        )
