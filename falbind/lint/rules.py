"""The rule codes of ``falbind lint``: stable, documented in docs/lint.md.

``FB1xx`` are what an endpoint's request model refuses (the same checks as ``falbind validate``),
``FB2xx`` the OpenAI-style image parameters (``size``, ``n``, ``response_format``) as falbind's
``images.generate`` maps them, ``FB3xx`` Pipecat's ``FalImageGenService``, ``FB9xx`` files that
cannot be read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["RULES", "Rule", "rule_for_error_type"]


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    name: str
    summary: str
    """One line: what the rule finds."""


RULES_VERSION: Final = "1"
"""Version of the rule set and output shapes (reported in SARIF)."""

RULES: Final[dict[str, Rule]] = {
    rule.code: rule
    for rule in (
        Rule("FB100", "unknown-endpoint", "the endpoint id is not bound by falbind"),
        Rule("FB101", "unknown-parameter", "a parameter the endpoint does not take"),
        Rule("FB102", "value-not-allowed", "a value outside the parameter's allowed values"),
        Rule("FB103", "out-of-range", "a number or length outside the parameter's bounds"),
        Rule("FB104", "missing-required", "a required parameter is missing from a literal dict"),
        Rule("FB105", "invalid-value", "a value of the wrong type or shape"),
        Rule("FB201", "size-not-deliverable", "the model cannot deliver the requested size"),
        Rule("FB202", "invalid-size", "size is not WIDTHxHEIGHT or 'auto'"),
        Rule("FB203", "image-count", "n is not a count the model (or the host library) honours"),
        Rule("FB204", "response-format", "response_format is not 'url' or 'b64_json'"),
        Rule("FB205", "not-an-image-model", "the model returns no images"),
        Rule("FB301", "pipecat-default-rejected", "a value Pipecat sends by default is refused"),
        Rule("FB302", "unknown-pipecat-setting", "not a FalImageGenService setting"),
        Rule("FB303", "pipecat-extra-not-sent", "Settings.extra is never sent to fal"),
        Rule("FB900", "unreadable-file", "the file cannot be read or parsed as Python"),
    )
}

# pydantic error types (and falbind's own ``unknown_parameter``) -> rule code
_BY_ERROR_TYPE: Final = {
    "unknown_parameter": "FB101",
    "extra_forbidden": "FB101",
    "literal_error": "FB102",
    "enum": "FB102",
    "missing": "FB104",
    **dict.fromkeys(
        (
            "greater_than",
            "greater_than_equal",
            "less_than",
            "less_than_equal",
            "multiple_of",
            "too_short",
            "too_long",
            "string_too_short",
            "string_too_long",
        ),
        "FB103",
    ),
}


def rule_for_error_type(error_type: str) -> str:
    """The rule code for one validation error type (``FB105`` for every other kind)."""
    return _BY_ERROR_TYPE.get(error_type, "FB105")
