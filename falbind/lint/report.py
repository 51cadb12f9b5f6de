"""Output formats of ``falbind lint``: text, json, github (workflow annotations), sarif."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from .findings import LintResult
from .rules import RULES, RULES_VERSION

__all__ = ["FORMATS", "render"]

Echo = Callable[[str], None]
FORMATS: Final = ("text", "json", "github", "sarif")
_SARIF_SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"


def _summary(result: LintResult) -> str:
    return (
        f"{len(result.findings)} finding(s) in {result.files_scanned} file(s) scanned "
        f"({result.files_parsed} parsed, {result.calls_checked} fal call(s) checked"
        + (f", {result.suppressed} ignored by comment" if result.suppressed else "")
        + ")"
    )


def _text(result: LintResult, explain: bool, echo: Echo) -> None:
    for f in result.findings:
        echo(f"{f.path}:{f.line}:{f.column}: {f.code} {f.message}")
    if explain:
        for s in result.skipped:
            echo(f"{s.path}:{s.line}:{s.column}: skipped ({s.host}): {s.reason}")
    echo(_summary(result))


def _json(result: LintResult, explain: bool, echo: Echo) -> None:
    document: dict[str, Any] = {
        "findings": [f.to_dict() for f in result.findings],
        "files_scanned": result.files_scanned,
        "files_parsed": result.files_parsed,
        "calls_checked": result.calls_checked,
        "suppressed": result.suppressed,
    }
    if explain:
        document["skipped"] = [s.to_dict() for s in result.skipped]
    echo(json.dumps(document, indent=2))


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _github(result: LintResult, explain: bool, echo: Echo) -> None:
    for f in result.findings:
        props = (
            f"file={_escape_property(f.path)},line={f.line},col={f.column},"
            f"title={_escape_property(f'falbind lint {f.code} ({f.rule})')}"
        )
        echo(f"::error {props}::{_escape_data(f.message)}")
    if explain:
        for s in result.skipped:
            props = f"file={_escape_property(s.path)},line={s.line},col={s.column}"
            echo(f"::notice {props}::{_escape_data(f'skipped ({s.host}): {s.reason}')}")
    echo(_summary(result))


def _sarif(result: LintResult, explain: bool, echo: Echo) -> None:
    rules = [
        {
            "id": rule.code,
            "name": rule.name,
            "shortDescription": {"text": rule.summary},
            "defaultConfiguration": {"level": "error"},
        }
        for rule in RULES.values()
    ]
    index = {code: i for i, code in enumerate(RULES)}
    results = [
        {
            "ruleId": f.code,
            "ruleIndex": index[f.code],
            "level": "error",
            "message": {"text": f.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {
                            "uri": f.path.replace("\\", "/"),
                            "uriBaseId": "%SRCROOT%",
                        },
                        "region": {"startLine": f.line, "startColumn": f.column},
                    }
                }
            ],
        }
        for f in result.findings
    ]
    invocation: dict[str, Any] = {"executionSuccessful": True}
    if explain:
        invocation["toolExecutionNotifications"] = [
            {
                "level": "note",
                "message": {"text": f"skipped ({s.host}): {s.reason}"},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {
                                "uri": s.path.replace("\\", "/"),
                                "uriBaseId": "%SRCROOT%",
                            },
                            "region": {"startLine": s.line, "startColumn": s.column},
                        }
                    }
                ],
            }
            for s in result.skipped
        ]
    document = {
        "$schema": _SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "falbind lint",
                        "version": RULES_VERSION,
                        "rules": rules,
                    }
                },
                "invocations": [invocation],
                "results": results,
            }
        ],
    }
    echo(json.dumps(document, indent=2))


def render(result: LintResult, output_format: str, explain: bool, echo: Echo) -> None:
    {"text": _text, "json": _json, "github": _github, "sarif": _sarif}[output_format](
        result, explain, echo
    )
