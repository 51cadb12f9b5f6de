"""The gateway's logging: secrets redacted in every process, and JSON lines when asked.

Clients put keys where they should not: ``/key/info?key=sk-...``, ``?api_key=``, even
``?%6Bey=`` (percent-encoded, which the server decodes to ``key``). Access logs print the raw
query string, so :func:`redact_url` rewrites credential-like parameters and anything shaped
like an ``sk-`` key, and :class:`RedactSecrets` applies it to every record.

:func:`log_config` is a complete ``logging.config.dictConfig`` for uvicorn
(``uvicorn.run(log_config=...)``). uvicorn's worker processes (``--workers N``) apply that dict
themselves when they start, so the filter holds in each of them; a filter added to a logger in
the parent process does not reach them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote_plus

__all__ = ["JsonFormatter", "RedactSecrets", "log_config", "redact_url"]

REDACTED: Final = "<redacted>"
CREDENTIAL_NAMES: Final = frozenset(
    {
        "key",
        "api_key",
        "api-key",
        "apikey",
        "access_token",
        "token",
        "master_key",
        "password",
        "passwd",
        "secret",
        "authorization",
    }
)
"""Query parameter names (after percent-decoding and case-folding) whose value is a secret;
besides these, any name ending in ``_key``/``-key``, ``token`` or ``_secret``."""
_CREDENTIAL_SUFFIXES: Final = ("_key", "-key", "token", "_secret")

_QUERY_PARAMETER: Final = re.compile(
    r"(?P<lead>(?:^|[?&\s])(?P<name>[^=&\s#\"?]+)=)(?P<value>[^&\s#\"]*)"
)
"""``name=value`` after ``?``, ``&``, whitespace or at the start of the text (a query string,
or ``api_key=...`` in a message); the value runs to the next ``&``, whitespace, ``#`` or ``"``
(uvicorn's access line quotes the request line)."""


def _encoded(char: str) -> str:
    """``char`` or its percent-encoding (hex digits in either case)."""
    return f"(?:{re.escape(char)}|%{ord(char):02x}|%{ord(char):02X})"


_KEY_CHAR: Final = r"(?:[A-Za-z0-9_\-]|%[0-9A-Fa-f]{2})"
_SK_KEY: Final = re.compile(
    r"(?:(?<![A-Za-z0-9])|(?<=%[0-9A-Fa-f]{2}))"
    + _encoded("s")
    + _encoded("k")
    + _encoded("-")
    + _KEY_CHAR
    + "{4,}"
)
"""An ``sk-`` key (LiteLLM's and falbind's shape, master keys included), plain or
percent-encoded, not in the middle of a word."""


def _is_credential(raw_name: str) -> bool:
    name = unquote_plus(raw_name).casefold().strip()
    return name in CREDENTIAL_NAMES or name.endswith(_CREDENTIAL_SUFFIXES)


def _redact_parameter(match: re.Match[str]) -> str:
    if not match.group("value") or not _is_credential(match.group("name")):
        return match.group(0)
    return match.group("lead") + REDACTED


def redact_url(text: str) -> str:
    """``text`` (a URL, a query string, a log line) with every credential-like query
    parameter's value, and every ``sk-...`` key anywhere, replaced by ``<redacted>``."""
    if "=" in text:
        text = _QUERY_PARAMETER.sub(_redact_parameter, text)
    return _SK_KEY.sub(REDACTED, text)


class RedactSecrets(logging.Filter):
    """Redacts a record's message, its string arguments and its traceback text in place.

    Arguments stay in place (uvicorn's access formatter unpacks them by position); only when
    a non-string argument still renders a secret is the record flattened to its redacted text.
    """

    _traceback = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_url(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(redact_url(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, Mapping):
            record.args = {k: redact_url(v) if isinstance(v, str) else v for k, v in args.items()}
        if record.args or not isinstance(record.msg, str):
            try:
                message = record.getMessage()
            except (TypeError, ValueError):  # a bad format string: logging reports it itself
                message = None
            if message is not None and (redacted := redact_url(message)) != message:
                record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._traceback.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_url(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_url(record.stack_info)
        return True


_ACCESS_FIELDS: Final = ("client", "method", "path", "http_version", "status")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``; uvicorn's access lines also carry their parts (client, method, path,
    http_version, status), and a traceback goes in ``exc_info``.

    A dozen lines by hand rather than a dependency (python-json-logger): the fields are fixed
    and ``json.dumps`` already guarantees one line (newlines in values are escaped).
    """

    def __init__(self, *, use_colors: bool | None = None) -> None:
        # uvicorn sets ``use_colors`` on the formatters named "default" and "access" when it
        # is given one; colour means nothing here.
        super().__init__()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            entry.update(zip(_ACCESS_FIELDS, args, strict=True))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        return json.dumps(entry, default=str)


def log_config(*, json_logs: bool, level: str = "info") -> dict[str, Any]:
    """A complete ``dictConfig`` for uvicorn and falbind: :class:`RedactSecrets` on the
    ``uvicorn.access``, ``uvicorn.error`` and ``falbind`` loggers and on every handler (a
    logger's filter misses records from its child loggers, a handler's does not), uvicorn's
    usual text format or :class:`JsonFormatter` lines. uvicorn and falbind log at ``level``,
    everything else at WARNING."""
    upper = level.upper()
    redact = ["redact"]
    if json_logs:
        formatters: dict[str, Any] = {
            "default": {"()": f"{__name__}.JsonFormatter"},
            "access": {"()": f"{__name__}.JsonFormatter"},
        }
    else:
        formatters = {
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
                "use_colors": None,
            },
            "access": {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            },
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": f"{__name__}.RedactSecrets"}},
        "formatters": formatters,
        "handlers": {
            "default": {
                "formatter": "default",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": redact,
            },
            "access": {
                "formatter": "access",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "filters": redact,
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": upper, "propagate": False},
            "uvicorn.error": {"level": upper, "filters": redact},
            "uvicorn.access": {
                "handlers": ["access"],
                "level": upper,
                "propagate": False,
                "filters": redact,
            },
            # falbind's records reach the root logger's handler (one output, redacted there
            # too); FALBIND_LOG may still add its own handler and lower the level.
            "falbind": {"level": upper, "filters": redact},
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
    }
