"""Settings read from the environment: fal-client's host variables and ``FALBIND_LOG``.

- ``FAL_RUN_HOST`` (e.g. ``fal.run``) sets the default ``run_url``; ``FAL_QUEUE_RUN_HOST``
  the default ``queue_url``, which otherwise follows ``FAL_RUN_HOST`` as in fal-client
  (``queue.<FAL_RUN_HOST>``). A bare host (``fal.run``, ``gw.example:8443``) means
  ``https://<host>``, as fal-client builds its URLs; a value with a scheme
  (``http://127.0.0.1:8080``) is used as it is, so a local server can be named too.
  Arguments passed to the client win over the environment.
- ``FALBIND_LOG=debug|info`` (as openai-python's ``OPENAI_LOG``) sends the ``falbind``
  logger's records to stderr at that level, with one line per HTTP request and answer
  (``info``), plus the request headers with the key masked (``debug``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import httpx

__all__ = ["configure_logging", "default_urls", "host_url", "log_hooks"]

RUN_HOST_VARIABLE: Final = "FAL_RUN_HOST"
QUEUE_HOST_VARIABLE: Final = "FAL_QUEUE_RUN_HOST"
LOG_VARIABLE: Final = "FALBIND_LOG"
_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO}
_MASKED: Final = frozenset({"authorization", "proxy-authorization", "x-fal-key"})

log = logging.getLogger("falbind")


def host_url(value: str) -> str:
    """The base URL a host variable names: ``https://<host>`` for a bare host, else the value
    itself (without a trailing slash)."""
    value = value.strip().rstrip("/")
    return value if "://" in value else f"https://{value}"


def default_urls(
    run_default: str, queue_default: str, environ: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """The default ``run_url`` and ``queue_url``: from ``FAL_RUN_HOST`` /
    ``FAL_QUEUE_RUN_HOST`` when set (and not blank), else the given defaults."""
    env = os.environ if environ is None else environ
    run_host = env.get(RUN_HOST_VARIABLE, "").strip()
    queue_host = env.get(QUEUE_HOST_VARIABLE, "").strip()
    run_url = host_url(run_host) if run_host else run_default
    if queue_host:
        queue_url = host_url(queue_host)
    elif run_host and "://" not in run_host:
        queue_url = host_url(f"queue.{run_host}")  # fal-client's rule
    elif run_host:
        queue_url = run_url  # a full URL (a local server) serves both
    else:
        queue_url = queue_default
    return run_url, queue_url


_handler: logging.Handler | None = None


def configure_logging(environ: Mapping[str, str] | None = None) -> bool:
    """Apply ``FALBIND_LOG`` (once: later calls change the level only); whether request
    logging is on. An unknown value is ignored with a warning."""
    global _handler
    env = os.environ if environ is None else environ
    value = env.get(LOG_VARIABLE, "").strip().lower()
    if not value:
        return False
    level = _LEVELS.get(value)
    if level is None:
        log.warning("%s=%r is not one of: debug, info; ignored", LOG_VARIABLE, value)
        return False
    if _handler is None:
        _handler = logging.StreamHandler()
        _handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s %(levelname)s] %(message)s"))
        log.addHandler(_handler)
    log.setLevel(level)
    return True


def masked_headers(headers: httpx.Headers) -> dict[str, str]:
    """``headers`` to log: credentials replaced by ``<masked>``."""
    return {
        name: "<masked>" if name.lower() in _MASKED else value for name, value in headers.items()
    }


def _url(url: httpx.URL) -> str:
    return str(url.copy_with(query=None))


def _on_request(request: httpx.Request) -> None:
    log.info("HTTP request: %s %s", request.method, _url(request.url))
    if log.isEnabledFor(logging.DEBUG):
        log.debug("request headers: %s", masked_headers(request.headers))


def _on_response(response: httpx.Response) -> None:
    request = response.request
    log.info(
        'HTTP response: %s %s "%d %s"',
        request.method,
        _url(request.url),
        response.status_code,
        response.reason_phrase,
    )
    if log.isEnabledFor(logging.DEBUG):
        log.debug("response headers: %s", dict(response.headers))


async def _on_request_async(request: httpx.Request) -> None:
    _on_request(request)


async def _on_response_async(response: httpx.Response) -> None:
    _on_response(response)


def log_hooks() -> dict[str, list[Callable[[Any], Any]]]:
    """httpx event hooks logging each request and answer (no body; the key masked), when
    ``FALBIND_LOG`` asks for it; else none (no cost per request)."""
    if not configure_logging():
        return {}
    return {"request": [_on_request], "response": [_on_response]}


def async_log_hooks() -> dict[str, list[Callable[[Any], Awaitable[None]]]]:
    """:func:`log_hooks` for an ``httpx.AsyncClient`` (its hooks are awaited)."""
    if not configure_logging():
        return {}
    return {"request": [_on_request_async], "response": [_on_response_async]}
