"""When to retry, and how long to wait: pure decisions shared by the sync and async clients.

The rule that keeps a retry from billing twice: an idempotent GET (status, result, download)
is retried on transport errors, 429 and 5xx; a POST that submits work (``run``, ``submit``) is
retried only when it provably never reached the server (the connection was never established)
or the server said it did not process it (429). A 504 caused by the caller's own
``start_timeout`` is never retried.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import httpx

from .errors import RETRYABLE_HEADER, is_user_timeout

__all__ = [
    "PollSchedule",
    "RetryPolicy",
    "as_transport_error",
    "cannot_succeed",
    "describe_transport_error",
    "is_timeout",
    "never_reached_server",
    "retry_after",
    "retry_delay",
    "scrub_tracebacks",
]

# aiohttp exceptions (chained by the aiohttp transport as ``__cause__``) that mean the
# connection was never established. That transport maps any aiohttp connection error, a reset
# in the middle of a response included, to httpx.ConnectTimeout, so the cause decides.
_AIOHTTP_NOT_CONNECTED = frozenset({"ClientConnectorError", "ConnectionTimeoutError"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the client retries what is safe to retry.

    Waits grow as ``initial_backoff * 2**attempt`` up to ``max_backoff``, with full jitter
    (a uniform draw below that bound) unless ``jitter`` is false. A ``Retry-After`` header is
    honoured up to ``max_retry_after`` seconds. ``total_timeout`` bounds the whole call,
    retries and waits included. ``RetryPolicy(max_retries=0)`` never retries.
    """

    max_retries: int = 3
    initial_backoff: float = 0.25
    max_backoff: float = 8.0
    jitter: bool = True
    total_timeout: float | None = None
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ValueError("backoff times must be >= 0")
        if self.total_timeout is not None and self.total_timeout <= 0:
            raise ValueError("total_timeout must be > 0")

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The wait before retry number ``attempt + 1`` when the server gave no Retry-After."""
        bound = min(self.max_backoff, self.initial_backoff * 2.0**attempt)
        return bound * rand() if self.jitter else bound


def never_reached_server(error: httpx.TransportError) -> bool:
    """True when the request provably never reached the server: no connection was made."""
    if not isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        return False
    cause = error.__cause__
    if cause is not None and type(cause).__module__.startswith("aiohttp"):
        return any(kind.__name__ in _AIOHTTP_NOT_CONNECTED for kind in type(cause).__mro__)
    return True


def cannot_succeed(error: httpx.TransportError) -> bool:
    """True for a failure that no retry can mend: the request could not be encoded (an illegal
    header value) or names a scheme httpx cannot speak."""
    return isinstance(error, httpx.LocalProtocolError | httpx.UnsupportedProtocol)


def as_transport_error(error: BaseException) -> httpx.TransportError | None:
    """``error`` as an httpx transport error (``__cause__`` = the original), or ``None`` when it
    is not a transport failure.

    The aiohttp transport maps only some aiohttp errors: a server disconnect, a payload error
    or an answer that is not HTTP can arrive as raw ``aiohttp`` exceptions, which are mapped
    here by class name (aiohttp is imported only by the async client's transport)."""
    if isinstance(error, httpx.TransportError):
        return error
    mapped: httpx.TransportError
    if not type(error).__module__.startswith("aiohttp"):
        # The socket's own errors, should a transport let them through unwrapped.
        if isinstance(error, ConnectionRefusedError):
            mapped = httpx.ConnectError(str(error))
        elif isinstance(error, ConnectionError):
            mapped = httpx.ReadError(str(error))
        elif isinstance(error, TimeoutError):
            mapped = httpx.ReadTimeout(str(error))
        else:
            return None
        mapped.__cause__ = error
        return mapped
    names = {kind.__name__ for kind in type(error).__mro__}
    if "ClientConnectorError" in names or "ConnectionTimeoutError" in names:
        mapped = httpx.ConnectError(str(error))
    elif isinstance(error, TimeoutError):
        mapped = httpx.ReadTimeout(str(error))
    elif "ClientPayloadError" in names or "ClientOSError" in names:
        mapped = httpx.ReadError(str(error))
    elif "ClientError" in names or "HttpProcessingError" in names:
        mapped = httpx.RemoteProtocolError(str(error))
    else:
        return None
    mapped.__cause__ = error
    return mapped


_HEADER_HOLDERS: Final = ("aiohttp.", "httpcore.", "h11.", "httpx_aiohttp.")
"""Libraries below httpx whose frames hold the request's headers as plain mappings."""


def scrub_tracebacks(error: BaseException) -> BaseException:
    """``error`` with the frames of the HTTP libraries below httpx dropped from its traceback
    and its causes': error trackers render frame locals, and those frames hold the request's
    headers (the key) in plain dicts. httpx's own frames stay (its ``Headers`` hide the key)."""
    for link in _chain(error):
        kept = []
        tb = link.__traceback__
        while tb is not None:
            module = str(tb.tb_frame.f_globals.get("__name__", ""))
            if not module.startswith(_HEADER_HOLDERS):
                kept.append(tb)
            tb = tb.tb_next
        for index, current in enumerate(kept):
            current.tb_next = kept[index + 1] if index + 1 < len(kept) else None
        link.__traceback__ = kept[0] if kept else None
    return error


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def describe_transport_error(error: httpx.TransportError) -> str:
    """What happened, in words ("connection reset by peer"), from the error and its causes;
    never the request's headers."""
    chain = _chain(error)
    names = {kind.__name__ for e in chain for kind in type(e).__mro__}
    text = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, ConnectionResetError) for e in chain) or "reset by peer" in text:
        return "connection reset by peer"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "connection refused" in text:
        return "connection refused"
    if isinstance(error, httpx.LocalProtocolError):
        return "the request could not be sent as HTTP (an invalid header name or value?)"
    if isinstance(error, httpx.UnsupportedProtocol):
        return f"unsupported URL scheme ({error})"
    if is_timeout(error):
        phase = {
            "ConnectTimeout": "connect",
            "ReadTimeout": "read",
            "WriteTimeout": "write",
            "PoolTimeout": "connection pool",
        }.get(type(error).__name__, "")
        if phase == "connect" and any(type(e).__module__.startswith("aiohttp") for e in chain):
            phase = "connect" if "ConnectionTimeoutError" in names else "read"
        return f"{phase + ' ' if phase else ''}timeout (no answer in time)"
    if "ServerDisconnectedError" in names or "server disconnected" in text:
        return "the server closed the connection without a complete answer"
    if "ClientPayloadError" in names or "payload" in text:
        return f"the answer's body was cut short ({chain[-1]})"
    if "illegal status line" in text or "BadStatusLine" in names or "invalid constant" in text:
        return "the answer is not HTTP"
    if isinstance(error, httpx.RemoteProtocolError):
        return f"the answer broke the HTTP protocol ({error})"
    if isinstance(error, httpx.ConnectError):
        return f"could not connect ({error})"
    return f"{type(error).__name__}: {error}"


def is_timeout(error: httpx.TransportError) -> bool:
    """True for a timeout (the aiohttp transport also reports resets as ``ConnectTimeout``)."""
    cause = error.__cause__
    if cause is not None and type(cause).__module__.startswith("aiohttp"):
        return isinstance(cause, TimeoutError)
    return isinstance(error, httpx.TimeoutException)


def retry_after(response: httpx.Response, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def _response_is_retryable(response: httpx.Response, idempotent: bool) -> bool:
    status = response.status_code
    if status == 429:
        return True
    if not idempotent or status < 500 or is_user_timeout(response):
        return False
    retryable: str = response.headers.get(RETRYABLE_HEADER, "")
    return retryable.strip().lower() != "false"


def retry_delay(
    policy: RetryPolicy,
    *,
    idempotent: bool,
    attempt: int,
    elapsed: float,
    error: httpx.TransportError | None = None,
    response: httpx.Response | None = None,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before retrying after ``error`` or ``response``; ``None``: do not retry.

    ``attempt`` counts the retries made so far, ``elapsed`` the seconds since the first try.
    """
    if attempt >= policy.max_retries:
        return None
    if error is not None:
        if cannot_succeed(error) or not (idempotent or never_reached_server(error)):
            return None
        delay = policy.backoff(attempt, rand)
    elif response is not None:
        if not _response_is_retryable(response, idempotent):
            return None
        after = retry_after(response)
        delay = (
            min(after, policy.max_retry_after)
            if after is not None
            else policy.backoff(attempt, rand)
        )
    else:
        raise ValueError("retry_delay needs an error or a response")
    if policy.total_timeout is not None and elapsed + delay >= policy.total_timeout:
        return None
    return delay


class PollSchedule:
    """Waits between status polls: fast at first (20 ms), growing by ``factor`` to ``cap`` (1 s).

    ``reset()`` starts over, e.g. when the status changes from queued to in progress.
    """

    __slots__ = ("_next", "cap", "factor", "initial")

    def __init__(self, initial: float = 0.02, factor: float = 1.5, cap: float = 1.0) -> None:
        self.initial = initial
        self.factor = factor
        self.cap = cap
        self._next = initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * self.factor)
        return delay

    def reset(self) -> None:
        self._next = self.initial
