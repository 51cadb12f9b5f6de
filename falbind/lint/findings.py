"""What a lint run reports: findings (with rule codes) and, for ``--explain``, skipped calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .rules import RULES

__all__ = ["Finding", "LintResult", "Skip"]


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    line: int
    """1-based."""
    column: int
    """1-based, in characters."""
    code: str
    message: str
    host: str
    """``fal-client``, ``litellm``, ``pipecat``, ``falbind`` or ``file``."""
    endpoint: str | None = None
    suggestions: tuple[str, ...] = ()

    @property
    def rule(self) -> str:
        return RULES[self.code].name

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "code": self.code,
            "rule": self.rule,
            "message": self.message,
            "host": self.host,
            "endpoint": self.endpoint,
            "suggestions": list(self.suggestions),
        }


@dataclass(frozen=True, slots=True)
class Skip:
    """A fal call (or part of one) the lint could not check statically, and why."""

    path: str
    line: int
    column: int
    host: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "host": self.host,
            "reason": self.reason,
        }


@dataclass
class LintResult:
    findings: list[Finding] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    files_scanned: int = 0
    files_parsed: int = 0
    """Files that named a fal-related module and so were parsed (the rest cost one text check)."""
    calls_checked: int = 0
    suppressed: int = 0
