"""The ``falbind`` command line.

Jobs: regenerate bindings (``generate``, ``check``, ``vendor``: these need ``falbind[codegen]``),
and inspect or validate against the bindings (commands that only need ``falbind``).
Every failure prints one line starting with ``falbind:`` and exits non-zero.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


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


def _add_paths(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        type=Path,
        default=Path("registry"),
        help="registry folder (default: registry)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("generated"), help="output folder (default: generated)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="falbind", description="Typed, validated bindings for fal.ai endpoints."
    )
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
