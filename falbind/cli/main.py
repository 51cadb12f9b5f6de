"""The ``falbind`` command line.

Jobs: regenerate bindings (``generate``, ``check``, ``vendor``: these need ``falbind[codegen]``),
and inspect or validate against the bindings (commands that only need ``falbind``).
Every failure prints one line starting with ``falbind:`` and exits non-zero.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]

DEFAULT_OUT = Path("generated", "falbind_generated")
"""Where falbind's own bindings are generated: the ``falbind_generated`` package."""


def _seconds(text: str) -> float:
    """An argparse type: a duration in seconds, finite and not negative."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be 0 or more, not {text}")
    return value


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

    return serve_until_interrupted(
        args.port,
        args.key,
        _echo,
        queue_time=args.queue_time,
        processing_time=args.processing_time,
    )


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.output, _echo)


def _serve(args: argparse.Namespace) -> int:
    from falbind.serve.cli import serve_command

    return serve_command(
        args.config,
        host=args.host,
        port=args.port,
        workers=args.workers,
        fake_fal=args.fake_fal,
        echo=_echo,
    )


def _keys(args: argparse.Namespace) -> int:
    from falbind.serve.cli import keys_command

    return keys_command(
        args.action,
        args.config,
        models=[m for item in getattr(args, "models", None) or [] for m in item.split(",") if m],
        max_budget=getattr(args, "max_budget", None),
        rpm_limit=getattr(args, "rpm_limit", None),
        duration=getattr(args, "duration", None),
        alias=getattr(args, "alias", None),
        metadata=getattr(args, "metadata", None),
        user_id=getattr(args, "user_id", None),
        team_id=getattr(args, "team_id", None),
        budget_duration=getattr(args, "budget_duration", None),
        max_parallel_requests=getattr(args, "max_parallel_requests", None),
        tpm_limit=getattr(args, "tpm_limit", None),
        spend=getattr(args, "spend", None),
        clear=getattr(args, "clear", None) or [],
        references=getattr(args, "references", []),
        include_revoked=getattr(args, "include_revoked", False),
        output_format=args.format,
        echo=_echo,
    )


def _spend(args: argparse.Namespace) -> int:
    from falbind.serve.cli import spend_command

    return spend_command(
        args.config,
        key=args.key,
        since=args.since,
        user_id=args.user,
        team_id=args.team,
        output_format=args.format,
        echo=_echo,
    )


_CLEARABLE = (
    "max_budget", "rpm_limit", "duration", "key_alias", "metadata", "user_id", "team_id",
    "budget_duration", "max_parallel_requests", "tpm_limit", "models", "spend",
)  # fmt: skip
"""What ``falbind keys update --clear`` can reset (LiteLLM's /key/update with null)."""


def _key_field_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``keys create`` and ``keys update``: LiteLLM's /key/generate fields."""
    parser.add_argument("--models", action="append", help="allowed models (comma-separated)")
    # Text, not float: the budget is read as a decimal (0.1 stays 0.1).
    parser.add_argument("--max-budget", help="budget in the cost unit of model_info")
    parser.add_argument(
        "--budget-duration", help="the budget's period: spend returns to 0 every 30d, 1mo, 1h..."
    )
    parser.add_argument("--rpm-limit", type=int, help="requests per minute")
    parser.add_argument(
        "--max-parallel-requests", type=int, help="requests in flight at once (all replicas)"
    )
    parser.add_argument(
        "--tpm-limit", type=int, help="tokens per minute (stored; images have no tokens)"
    )
    parser.add_argument("--duration", help="lifetime such as 30d or 12h (default: none)")
    parser.add_argument("--alias", help="a name for the key (unique among live keys)")
    parser.add_argument("--user-id", help="the user the key's spend is counted for")
    parser.add_argument("--team-id", help="the team the key's spend is counted for")
    parser.add_argument("--metadata", help="a JSON object stored with the key")


def _add_serve_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``serve``, ``keys`` and ``spend``: the OpenAI-compatible gateway (docs/serve.md)."""
    serve = commands.add_parser(
        "serve", help="an OpenAI-compatible images gateway over fal (needs falbind[serve])"
    )
    serve.add_argument("--config", required=True, help="LiteLLM Proxy-style config.yaml")
    serve.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=4000, help="port (default: 4000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    serve.add_argument(
        "--fake-fal",
        action="store_true",
        help="send every model to a built-in fake fal server (no fal key, nothing billed)",
    )
    serve.set_defaults(handler=_serve)

    keys = commands.add_parser(
        "keys", help="create, update, list or revoke the gateway's virtual keys"
    )
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="a new key (printed once)")
    _key_field_options(create)
    update = actions.add_parser(
        "update", help="change a key's limits, budget, owners... (only the options given)"
    )
    update.add_argument("references", nargs=1, metavar="KEY", help="the key, its token or alias")
    _key_field_options(update)
    update.add_argument("--spend", help="set the key's spend (e.g. 0 to start it over)")
    update.add_argument(
        "--clear",
        action="append",
        choices=_CLEARABLE,
        metavar="FIELD",
        help=f"reset a field (no limit, no budget, no expiry...): {', '.join(_CLEARABLE)}",
    )
    listing = actions.add_parser("list", help="the keys (never the keys themselves)")
    listing.add_argument("--include-revoked", action="store_true", help="revoked keys too")
    revoke = actions.add_parser("revoke", help="revoke keys on every replica at once")
    revoke.add_argument("references", nargs="+", metavar="KEY", help="keys, tokens or aliases")
    for action in (create, update, listing, revoke):
        action.add_argument("--config", required=True, help="the gateway's config.yaml")
        _format_option(action, "text", "json")
        action.set_defaults(handler=_keys)

    spend = commands.add_parser("spend", help="the gateway's spend per key and model")
    spend.add_argument("--config", required=True, help="the gateway's config.yaml")
    spend.add_argument("--key", help="only this key (the key, its token or its alias)")
    spend.add_argument("--since", help="only requests since this ISO date or epoch second")
    spend.add_argument("--user", help="only the keys of this user_id")
    spend.add_argument("--team", help="only the keys of this team_id")
    _format_option(spend, "text", "json")
    spend.set_defaults(handler=_spend)


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
        allow_removals=args.allow_removals,
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


def _lint(args: argparse.Namespace) -> int:
    from falbind.lint import lint_command

    return lint_command(
        paths=args.paths or [Path(".")],
        output_format=args.format,
        explain=args.explain,
        select=args.select or [],
        ignore=args.ignore or [],
        exclude=args.exclude or [],
        echo=_echo,
    )


def _add_lint_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``lint``: check the fal calls in Python source (docs/lint.md)."""
    lint = commands.add_parser(
        "lint", help="check fal calls (fal-client, LiteLLM, Pipecat, falbind) in Python source"
    )
    lint.add_argument(
        "paths", nargs="*", type=Path, metavar="PATH", help="files or folders (default: .)"
    )
    _format_option(lint, "text", "json", "github", "sarif")
    lint.add_argument("--explain", action="store_true", help="also say what was skipped and why")
    lint.add_argument(
        "--select",
        action="append",
        metavar="CODE",
        help="only these rule codes or prefixes (repeatable)",
    )
    lint.add_argument(
        "--ignore",
        action="append",
        metavar="CODE",
        help="leave out these rule codes or prefixes (repeatable)",
    )
    lint.add_argument(
        "--exclude",
        action="append",
        metavar="GLOB",
        help="skip paths matching GLOB under folders (repeatable)",
    )
    lint.set_defaults(handler=_lint)


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
    refresh.add_argument(
        "--allow-removals",
        action="store_true",
        help="apply even when the catalogue lists nothing or would remove more than 20 "
        "endpoints or 10%% of the registry (refused by default: the catalogue looks incomplete)",
    )
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
    fake_server.add_argument(
        "--queue-time",
        type=_seconds,
        default=0.0,
        help="seconds a queued request stays IN_QUEUE (default: 0)",
    )
    fake_server.add_argument(
        "--processing-time",
        type=_seconds,
        default=0.02,
        help="seconds a queued request stays IN_PROGRESS, like inference (default: 0.02)",
    )
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
    _add_lint_command(commands)
    _add_serve_commands(commands)
    _add_reference_command(commands)
    return parser


class _NoRegistryError(Exception):
    """Stands in for the generator's RegistryError when its module was never imported."""


def _registry_error() -> type[Exception]:
    """The generator's RegistryError, looked up only when an error reaches ``main``: importing
    the registry module up front cost every command ~0.3 s (a third of ``falbind lint``).
    Without the generator installed, ``ValueError`` as before."""
    module = sys.modules.get("falbind_codegen.registry")
    if module is not None:
        error: type[Exception] = module.RegistryError
        return error
    if importlib.util.find_spec("falbind_codegen") is None:  # pragma: no cover
        return ValueError
    return _NoRegistryError  # the registry was never imported, so none was raised


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
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
    except _registry_error() as exc:
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
