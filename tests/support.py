"""Shared test helpers: paths, running the installed CLI, building inputs from a schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from falbind.client.retry import RetryPolicy

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "registry"
GENERATED = ROOT / "generated" / "falbind_generated"
FIXTURE_REGISTRY = ROOT / "tests" / "fixtures" / "registry"
SHARED = ROOT.parent / "shared" / "fal-openapi"
FALBIND = str(Path(sys.executable).parent / "falbind")


def run_cli(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``falbind`` entry point."""
    return subprocess.run(
        [FALBIND, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _resolve(defs[ref.rsplit("/", 1)[-1]], defs)
    return schema


def sample_value(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> Any:
    """A value that satisfies ``schema`` (a pydantic JSON schema): examples and defaults first."""
    schema = _resolve(schema, defs)
    if schema.get("examples"):
        return schema["examples"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            members = [m for m in schema[key] if m.get("type") != "null"]
            return sample_value(members[0], defs, depth + 1)
    if "allOf" in schema:
        return sample_value(schema["allOf"][0], defs, depth + 1)
    kind = schema.get("type")
    if kind == "string":
        return (
            "https://example.com/input.png"
            if "url" in str(schema.get("title", "")).lower()
            else "x" * max(1, schema.get("minLength", 1))
        )
    if kind == "integer":
        low = schema.get(
            "minimum", schema.get("exclusiveMinimum", 0) + 1 if "exclusiveMinimum" in schema else 1
        )
        return int(low)
    if kind == "number":
        if "minimum" in schema:
            return schema["minimum"]
        if "exclusiveMinimum" in schema:
            return schema["exclusiveMinimum"] + min(
                1,
                (schema.get("maximum", schema["exclusiveMinimum"] + 2) - schema["exclusiveMinimum"])
                / 2,
            )
        return 1.0
    if kind == "boolean":
        return True
    if kind == "array":
        if "prefixItems" in schema:
            return [sample_value(item, defs, depth + 1) for item in schema["prefixItems"]]
        count = max(1, schema.get("minItems", 1))
        return [sample_value(schema.get("items", {}), defs, depth + 1) for _ in range(count)]
    if kind == "object" or "properties" in schema:
        return {
            name: sample_value(prop, defs, depth + 1)
            for name, prop in schema.get("properties", {}).items()
            if name in schema.get("required", ())
        }
    return "x"


def example_input(model: type[BaseModel]) -> dict[str, Any]:
    """Arguments for the required fields of ``model``, from the schema's own examples/defaults."""
    schema = model.model_json_schema(by_alias=True)
    defs = schema.get("$defs", {})
    return {
        name: sample_value(prop, defs)
        for name, prop in schema.get("properties", {}).items()
        if name in schema.get("required", ())
    }


# Retries as the default policy makes them, with waits short enough for tests.
FAST_RETRY = RetryPolicy(max_retries=3, initial_backoff=0.001, max_backoff=0.01)
