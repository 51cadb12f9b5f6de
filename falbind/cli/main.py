"""The ``falbind`` command line.

Jobs: regenerate bindings (``generate``, ``check``, ``vendor``: these need ``falbind[codegen]``),
and inspect or validate against the bindings (commands that only need ``falbind``).
Every failure prints one line starting with ``falbind:`` and exits non-zero.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]

DEFAULT_OUT = Path("generated", "falbind_generated")
"""Where falbind's own bindings are generated: the ``falbind_generated`` package."""


def _echo(line: str) -> None:
    print(line, flush=True)


def _generate(args: argparse.Namespace) -> int:
    from falbind_codegen.commands import generate_command

    return generate_command(args.registry, args.out, full=args.full, echo=_echo)


def _check(args: argparse.Namespace) -> int:
    from falbind_codegen.commands import check_command

    return check_command(args.registry, args.out, echo=_echo)


def _vendor(args: argparse.Namespace) -> int:
    from falbind_codegen.commands import vendor_command

    documents: list[Path] = []
    for path in args.documents:
        documents.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    return vendor_command(
        args.registry, documents, None if args.no_generate else args.out, echo=_echo
    )


def _fake_server(args: argparse.Namespace) -> int:
    from falbind.testing.server import serve_until_interrupted

    return serve_until_interrupted(args.port, args.key, _echo)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.output, _echo)


def _add_paths(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        type=Path,
        default=Path("registry"),
        help="registry folder (default: registry)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"the generated package's folder; its name is the import name (default: {DEFAULT_OUT})",
    )


# -- keeping bindings current (add, refresh, diff) and checking requests (validate, models, show)


def _add(args: argparse.Namespace) -> int:
    from falbind_codegen.add import add_command

    return add_command(
        args.registry,
        args.out,
        args.endpoint_id,
        schema=args.schema,
        fetch=args.fetch,
        category=args.category,
        openapi_url=args.openapi_url,
        echo=_echo,
    )


def _refresh(args: argparse.Namespace) -> int:
    from falbind_codegen.refresh import refresh_command

    return refresh_command(
        args.registry,
        args.out,
        catalogue_url=args.catalogue_url,
        openapi_url=args.openapi_url,
        categories=args.category or [],
        only_new=args.only_new,
        yes=args.yes,
        dry_run=args.dry_run,
        output_format=args.format,
        echo=_echo,
    )


def _diff(args: argparse.Namespace) -> int:
    from falbind_codegen.commands import diff_command

    return diff_command(args.old, args.new, output_format=args.format, echo=_echo)


def _validate(args: argparse.Namespace) -> int:
    from .validate import validate_command

    if args.manifest is not None and args.targets:
        print(
            "falbind: validate takes ENDPOINT_ID FILE... or --manifest FILE, not both",
            file=sys.stderr,
        )
        return 2
    if args.manifest is None and len(args.targets) < 2:
        print("falbind: validate needs ENDPOINT_ID FILE... or --manifest FILE", file=sys.stderr)
        return 2
    endpoint = args.targets[0] if args.targets else None
    files = [Path(t) for t in args.targets[1:]]
    return validate_command(
        endpoint=endpoint,
        files=files,
        manifest=args.manifest,
        output_format=args.format,
        echo=_echo,
    )


def _models(args: argparse.Namespace) -> int:
    from .describe import models_command

    return models_command(
        categories=args.category or [], search=args.search, output_format=args.format, echo=_echo
    )


def _show(args: argparse.Namespace) -> int:
    from .describe import show_command

    return show_command(args.endpoint_id, output_format=args.format, echo=_echo)


def _sizes(args: argparse.Namespace) -> int:
    from .sizes import sizes_command

    return sizes_command(
        args.endpoint_ids, args.category or [], output_format=args.format, echo=_echo
    )


def _reference(args: argparse.Namespace) -> int:
    from falbind_codegen.reference import reference_command

    return reference_command(args.registry, args.out, check=args.check, echo=_echo)


def _add_reference_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``reference``: the endpoint reference in docs/endpoints/ (one page per category)."""
    reference = commands.add_parser(
        "reference", help="write the endpoint reference (docs/endpoints/, one page per category)"
    )
    reference.add_argument(
        "--registry",
        type=Path,
        default=Path("registry"),
        help="registry folder (default: registry)",
    )
    reference.add_argument(
        "--out",
        type=Path,
        default=Path("docs", "endpoints"),
        help="the reference's folder, owned by this command (default: docs/endpoints)",
    )
    reference.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the folder is stale"
    )
    reference.set_defaults(handler=_reference)


def _add_sizes_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``sizes``: what each OpenAI-style size becomes on each model (docs/sizes.md)."""
    sizes = commands.add_parser(
        "sizes", help="what each OpenAI size (1024x1024, 1792x1024, ...) becomes on each model"
    )
    sizes.add_argument(
        "endpoint_ids", nargs="*", metavar="ENDPOINT_ID", help="endpoint ids, aliases or names"
    )
    sizes.add_argument(
        "--category",
        action="append",
        help="every endpoint of this category (repeatable; default without ids: text-to-image)",
    )
    _format_option(sizes, "markdown", "json")
    sizes.set_defaults(handler=_sizes)


def _format_option(parser: argparse.ArgumentParser, *choices: str) -> None:
    parser.add_argument(
        "--format",
        choices=choices,
        default=choices[0],
        help=f"output format (default: {choices[0]})",
    )


def _add_maintenance_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """``add``, ``refresh``, ``diff``, ``validate``, ``models`` and ``show`` (docs/cli.md)."""
    add = commands.add_parser("add", help="add one fal endpoint to the registry and bind it")
    _add_paths(add)
    add.add_argument("endpoint_id", help="fal endpoint id, e.g. fal-ai/flux/dev")
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument("--schema", type=Path, help="the endpoint's OpenAPI document (JSON)")
    source.add_argument(
        "--fetch", action="store_true", help="download the document from fal's per-endpoint URL"
    )
    add.add_argument("--category", help="fal category (default: the document's)")
    add.add_argument("--openapi-url", help="per-endpoint OpenAPI URL (default: fal's)")
    add.set_defaults(handler=_add)

    refresh = commands.add_parser(
        "refresh", help="compare the registry with fal's catalogue and apply accepted changes"
    )
    _add_paths(refresh)
    refresh.add_argument("--catalogue-url", help="catalogue base URL (default: https://api.fal.ai)")
    refresh.add_argument("--openapi-url", help="per-endpoint OpenAPI URL (default: fal's)")
    refresh.add_argument("--category", action="append", help="only this category (repeatable)")
    refresh.add_argument("--only-new", action="store_true", help="report only new endpoints")
    refresh.add_argument("--yes", action="store_true", help="apply every change without asking")
    refresh.add_argument("--dry-run", action="store_true", help="report only, never write")
    _format_option(refresh, "text", "json")
    refresh.set_defaults(handler=_refresh)

    diff = commands.add_parser(
        "diff", help="breaking-change report between two versions of an endpoint's document"
    )
    diff.add_argument("old", type=Path, help="older OpenAPI document (JSON)")
    diff.add_argument("new", type=Path, help="newer OpenAPI document (JSON)")
    _format_option(diff, "text", "json")
    diff.set_defaults(handler=_diff)

    validate = commands.add_parser(
        "validate", help="validate request arguments against the bindings (exit 1 if invalid)"
    )
    validate.add_argument(
        "targets", nargs="*", metavar="ENDPOINT_ID FILE", help="an endpoint and argument files"
    )
    validate.add_argument(
        "--manifest", type=Path, help="a JSON/YAML list of {endpoint, arguments} items"
    )
    _format_option(validate, "text", "json", "github")
    validate.set_defaults(handler=_validate)

    models = commands.add_parser("models", help="list bound endpoints (and unbound ones)")
    models.add_argument("--category", action="append", help="only this category (repeatable)")
    models.add_argument("--search", help="only ids, names or categories containing TEXT")
    _format_option(models, "text", "json")
    models.set_defaults(handler=_models)

    show = commands.add_parser("show", help="an endpoint's parameters as a table")
    show.add_argument("endpoint_id", help="endpoint id, alias or Python name")
    _format_option(show, "text", "json")
    show.set_defaults(handler=_show)


def _version() -> str:
    """The installed distribution's version (what pip reports), else the package's own."""
    from importlib import metadata

    try:
        return metadata.version("falbind")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        from falbind import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="falbind", description="Typed, validated bindings for fal.ai endpoints."
    )
    parser.add_argument("--version", action="version", version=f"falbind {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser("generate", help="regenerate bindings from the registry")
    _add_paths(generate)
    generate.add_argument(
        "--full", action="store_true", help="render every endpoint (ignore the manifest cache)"
    )
    generate.set_defaults(handler=_generate)

    check = commands.add_parser(
        "check", help="exit 1 if the generated files differ from what the registry produces"
    )
    _add_paths(check)
    check.set_defaults(handler=_check)

    vendor = commands.add_parser(
        "vendor", help="copy fal OpenAPI documents (files or folders) into the registry"
    )
    _add_paths(vendor)
    vendor.add_argument("documents", nargs="+", type=Path, help="documents or folders of them")
    vendor.add_argument("--no-generate", action="store_true", help="only update the registry")
    vendor.set_defaults(handler=_vendor)

    fake_server = commands.add_parser(
        "fake-server", help="serve fal's sync and queue protocols on 127.0.0.1 for tests"
    )
    fake_server.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    fake_server.add_argument("--key", help="require this fal key (default: accept any call)")
    fake_server.set_defaults(handler=_fake_server)

    demo = commands.add_parser(
        "demo", help="a typed call end to end against the fake fal server (no key needed)"
    )
    demo.add_argument(
        "--output",
        type=Path,
        default=Path("falbind-demo.png"),
        help="where to save the image (default: falbind-demo.png)",
    )
    demo.set_defaults(handler=_demo)
    _add_maintenance_commands(commands)
    _add_sizes_command(commands)
    _add_reference_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        from falbind_codegen.registry import RegistryError
    except ImportError:  # pragma: no cover
        RegistryError = ValueError  # type: ignore[misc,assignment]
    try:
        return handler(args)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in (
            "datamodel_code_generator",
            "jinja2",
            "jsonpatch",
        ):
            print(
                f"falbind: this command needs the generator: pip install 'falbind[codegen]' ({exc})",
                file=sys.stderr,
            )
            return 2
        raise
    except RegistryError as exc:
        print(f"falbind: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`falbind models | head`): stop quietly, and point stdout at
        # devnull so the interpreter's final flush does not raise again (Python docs' recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
