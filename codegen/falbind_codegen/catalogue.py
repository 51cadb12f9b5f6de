"""A small client for fal's platform catalogue, ``GET {base}/v1/models``.

The catalogue is cursor-paged (``limit``, ``cursor`` → ``has_more``, ``next_cursor``),
can be filtered by ``category`` or by up to 50 repeated ``endpoint_id`` values, and
inlines each endpoint's OpenAPI document under ``openapi`` with ``expand=openapi-3.0``
(fal serves smaller pages then). One endpoint's document is also served on its own by
``https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=<id>``.

Every call is an idempotent GET, so 429s (honouring ``Retry-After``, in seconds or as an
HTTP date), 5xx responses and transport errors are retried with bounded exponential backoff,
decided by the runtime's own rules (:mod:`falbind.client.retry`, with
:data:`CATALOGUE_RETRY` unless a policy is given). Permanent errors are not: a URL that is
not ``http(s)://host...`` is refused before any request, and a 4xx other than 429 fails at
once. An answer is read up to ``max_response_bytes`` (default
:data:`MAX_RESPONSE_BYTES`) and refused beyond it, so a broken or hostile server cannot
exhaust memory. Anything that goes wrong raises ``CatalogueError`` with a one-line message.
The API key never appears in a message or a repr, nor does a password given in a URL
(``https://user:password@host``): it is taken out of the URL and sent as HTTP basic auth.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx

from falbind.client.auth import resolve_key
from falbind.client.retry import RetryPolicy, cannot_succeed, retry_delay

__all__ = [
    "CATALOGUE_RETRY",
    "DEFAULT_BASE_URL",
    "DEFAULT_OPENAPI_URL",
    "MAX_IDS_PER_REQUEST",
    "MAX_RESPONSE_BYTES",
    "CatalogueClient",
    "CatalogueEntry",
    "CatalogueError",
    "safe_url",
]

DEFAULT_BASE_URL = "https://api.fal.ai"
DEFAULT_OPENAPI_URL = "https://fal.ai/api/openapi/queue/openapi.json"
MAX_IDS_PER_REQUEST = 50
MAX_PAGES = 10_000
EXPAND_OPENAPI = "openapi-3.0"
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""The largest catalogue answer read: fal's expanded pages are a few MB (documents are at
most ~100 KB each), so this only stops a server that never ends its answer."""
_ERROR_BODY_BYTES = 64 * 1024
CATALOGUE_RETRY = RetryPolicy(
    max_retries=4, initial_backoff=0.5, max_backoff=8.0, jitter=False, max_retry_after=8.0
)
"""The catalogue's retries: 0.5, 1, 2, 4 s between five attempts, a ``Retry-After`` honoured
up to 8 s. No jitter: one process reads the catalogue, so there is no herd to spread."""

Progress = Callable[[int], None]


class CatalogueError(Exception):
    """The catalogue could not be read; the message is one line and never holds the key."""


def safe_url(url: str) -> str:
    """``url`` without a ``user:password@`` part, query or fragment: what messages show."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _checked_url(url: str, what: str) -> tuple[str, httpx.BasicAuth | None]:
    """``url`` without its credentials, and those credentials as basic auth; raises
    ``CatalogueError`` (never retried) for anything but an ``http(s)://host`` URL."""
    shown = safe_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises for a port that is not a number in range
    except ValueError:
        raise CatalogueError(f"{what} {shown} is malformed") from None
    if parts.scheme not in ("http", "https"):
        scheme = f"a {parts.scheme}: URL" if parts.scheme else "not a URL"
        raise CatalogueError(f"{what} must be an http(s) URL; {shown} is {scheme}")
    if not parts.hostname:
        raise CatalogueError(f"{what} {shown} has no host")
    auth = None
    if parts.username is not None or parts.password is not None:
        auth = httpx.BasicAuth(
            urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password or "")
        )
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), auth


@dataclass(frozen=True)
class CatalogueEntry:
    """One endpoint as listed by the catalogue."""

    endpoint_id: str
    category: str | None
    status: str | None
    display_name: str | None
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    openapi: dict[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def from_json(cls, raw: Any) -> CatalogueEntry:
        """Build an entry from one element of a page's ``models`` list."""
        if not isinstance(raw, dict):
            raise CatalogueError(f"model entry is a {type(raw).__name__}, not an object")
        endpoint_id = raw.get("endpoint_id")
        if not isinstance(endpoint_id, str) or not endpoint_id:
            raise CatalogueError("model entry has no string 'endpoint_id'")
        metadata = raw.get("metadata", {})
        openapi = raw.get("openapi")
        if not isinstance(metadata, dict):
            raise CatalogueError(f"{endpoint_id}: 'metadata' is not an object")
        if openapi is not None and not isinstance(openapi, dict):
            raise CatalogueError(f"{endpoint_id}: 'openapi' is not an object")
        return cls(
            endpoint_id=endpoint_id,
            category=_optional_str(metadata, "category"),
            status=_optional_str(metadata, "status"),
            display_name=_optional_str(metadata, "display_name"),
            metadata=metadata,
            openapi=openapi,
        )


def _optional_str(mapping: Mapping[str, Any], key: str) -> str | None:
    value = mapping.get(key)
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class _Page:
    entries: list[CatalogueEntry]
    next_cursor: str | None


class CatalogueClient:
    """Reads fal's catalogue with retries; use as a context manager to close its client."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        key: str | None = None,
        http: httpx.Client | None = None,
        openapi_url: str = DEFAULT_OPENAPI_URL,
        retry: RetryPolicy | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        base_url, self._base_auth = _checked_url(base_url, "the catalogue URL")
        openapi_url, self._openapi_auth = _checked_url(openapi_url, "the OpenAPI URL")
        self.base_url = base_url.rstrip("/")
        self.openapi_url = openapi_url
        self.max_response_bytes = max_response_bytes
        self.retry = retry if retry is not None else CATALOGUE_RETRY
        self._sleep = sleep
        # The runtime's rules: FAL_KEY, FAL_KEY_ID+FAL_KEY_SECRET, FAL_AI_API_KEY; never shown.
        self._key = resolve_key(key)
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=30.0, follow_redirects=True)

    def __repr__(self) -> str:
        key = "set" if self._key is not None else "none"
        return f"CatalogueClient(base_url={safe_url(self.base_url)!r}, key={key})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            self._http.close()

    # -- public API ----------------------------------------------------------------

    def iter_models(
        self,
        category: str | None = None,
        expand_openapi: bool = False,
        page_size: int = 100,
        *,
        progress: Progress | None = None,
    ) -> Iterator[CatalogueEntry]:
        """Yield every catalogue entry (optionally of one category), following cursors.

        ``progress`` is called with the running number of entries after each page.
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        params: list[tuple[str, str]] = [("limit", str(page_size))]
        if category is not None:
            params.append(("category", category))
        if expand_openapi:
            params.append(("expand", EXPAND_OPENAPI))
        yield from self._paginate(params, progress)

    def fetch_models(
        self,
        endpoint_ids: Sequence[str],
        expand_openapi: bool = True,
        *,
        progress: Progress | None = None,
    ) -> list[CatalogueEntry]:
        """Fetch the named endpoints, 50 ids per request, in the order asked for.

        Ids the catalogue does not list are left out of the result; compare the ids to
        find them. Duplicate ids are fetched once.
        """
        wanted = list(dict.fromkeys(endpoint_ids))
        found: dict[str, CatalogueEntry] = {}
        for start in range(0, len(wanted), MAX_IDS_PER_REQUEST):
            batch = wanted[start : start + MAX_IDS_PER_REQUEST]
            params = [("endpoint_id", endpoint_id) for endpoint_id in batch]
            if expand_openapi:
                params.append(("expand", EXPAND_OPENAPI))
            for entry in self._paginate(params, None):
                found.setdefault(entry.endpoint_id, entry)
            if progress is not None:
                progress(len(found))
        return [found[endpoint_id] for endpoint_id in wanted if endpoint_id in found]

    def fetch_openapi(self, endpoint_id: str) -> dict[str, Any]:
        """Fetch one endpoint's OpenAPI document from the per-endpoint URL."""
        answer = self._get(self.openapi_url, [("endpoint_id", endpoint_id)], self._openapi_auth)
        document = _json_body(answer, f"OpenAPI document of {endpoint_id}")
        if not isinstance(document, dict) or "openapi" not in document:
            raise CatalogueError(f"{endpoint_id}: the response is not an OpenAPI document")
        return document

    # -- paging ----------------------------------------------------------------------

    def _paginate(
        self, params: list[tuple[str, str]], progress: Progress | None
    ) -> Iterator[CatalogueEntry]:
        url = f"{self.base_url}/v1/models"
        seen_cursors: set[str] = set()
        cursor: str | None = None
        count = 0
        for page_number in range(1, MAX_PAGES + 1):
            query = params if cursor is None else [*params, ("cursor", cursor)]
            answer = self._get(url, query, self._base_auth)
            page = _parse_page(_json_body(answer, f"catalogue page {page_number}"))
            count += len(page.entries)
            yield from page.entries
            if progress is not None:
                progress(count)
            if page.next_cursor is None:
                return
            if page.next_cursor in seen_cursors:
                raise CatalogueError(
                    f"catalogue page {page_number} repeats an earlier cursor; refusing to loop"
                )
            seen_cursors.add(page.next_cursor)
            cursor = page.next_cursor
        raise CatalogueError(f"catalogue still has more after {MAX_PAGES} pages; giving up")

    # -- HTTP ------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Key {self._key.reveal()}"
        return headers

    def _get(
        self, url: str, params: list[tuple[str, str]], auth: httpx.BasicAuth | None
    ) -> _Answer:
        """GET, retried as :func:`~falbind.client.retry.retry_delay` allows for an idempotent
        request (429, 5xx, transport errors; at most ``self.retry.max_retries`` times, which
        bounds the loop); raise on anything else."""
        shown = safe_url(url)
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                with self._http.stream(
                    "GET",
                    url,
                    params=tuple(params),
                    headers=self._headers(),
                    auth=httpx.USE_CLIENT_DEFAULT if auth is None else auth,
                ) as response:
                    if response.status_code < 400:
                        return _read(response, self.max_response_bytes, shown)
                    answer = _read(response, _ERROR_BODY_BYTES, shown)
                    problem = f"HTTP {answer.status_code}{_detail(answer)}"
                    delay = retry_delay(
                        self.retry,
                        idempotent=True,
                        attempt=attempt,
                        elapsed=time.monotonic() - started,
                        response=response,
                    )
            except httpx.TransportError as exc:
                if cannot_succeed(exc):  # the URL or the request itself is wrong
                    raise CatalogueError(f"GET {shown} failed: {type(exc).__name__}") from None
                problem = f"{type(exc).__name__} talking to the server"
                delay = retry_delay(
                    self.retry,
                    idempotent=True,
                    attempt=attempt,
                    elapsed=time.monotonic() - started,
                    error=exc,
                )
            except (httpx.HTTPError, httpx.InvalidURL) as exc:  # e.g. TooManyRedirects
                raise CatalogueError(f"GET {shown} failed: {type(exc).__name__}") from None
            if delay is None:
                raise self._gave_up(shown, attempt, problem)
            self._sleep(delay)
            attempt += 1

    def _gave_up(self, shown: str, attempt: int, problem: str) -> CatalogueError:
        """The error for the last try: it counts the attempts when they ran out, and says only
        what went wrong when the answer was not worth retrying (a 4xx other than 429)."""
        if attempt < self.retry.max_retries:
            return CatalogueError(f"GET {shown} failed: {problem}")
        return CatalogueError(f"GET {shown} failed after {attempt + 1} attempt(s): {problem}")


@dataclass(frozen=True)
class _Answer:
    """A response read in full (within the size limit)."""

    status_code: int
    headers: httpx.Headers
    content: bytes


def _read(response: httpx.Response, limit: int, shown: str) -> _Answer:
    """The body, read up to ``limit`` bytes: a longer answer is refused (not retried), a longer
    error body is cut (only an excerpt of it is shown)."""
    ok = response.status_code < 400
    declared = response.headers.get("Content-Length", "")
    too_large = f"GET {shown}: the answer is larger than {limit} bytes; refused"
    if ok and declared.isdigit() and int(declared) > limit:
        raise CatalogueError(too_large)
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            if ok:
                raise CatalogueError(too_large)
            del body[limit:]
            break
    return _Answer(response.status_code, response.headers, bytes(body))


def _detail(response: _Answer) -> str:
    """A short single-line ``detail`` from an error body, if it has one."""
    try:
        detail = json.loads(response.content).get("detail")
    except (ValueError, AttributeError, RecursionError):
        return ""
    if not isinstance(detail, str):
        return ""
    return ": " + " ".join(detail.split())[:200]


def _json_body(response: _Answer, what: str) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):
        content_type = response.headers.get("Content-Type", "no content type")
        raise CatalogueError(f"{what} is not valid JSON ({content_type})") from None


def _parse_page(body: Any) -> _Page:
    """Validate one catalogue page and turn it into entries and the next cursor."""
    if not isinstance(body, dict):
        raise CatalogueError(f"catalogue page is a {type(body).__name__}, not an object")
    models = body.get("models")
    if not isinstance(models, list):
        raise CatalogueError("catalogue page has no 'models' list")
    has_more = body.get("has_more", False)
    next_cursor = body.get("next_cursor")
    if not isinstance(has_more, bool):
        raise CatalogueError("catalogue page has a non-boolean 'has_more'")
    if next_cursor is not None and not isinstance(next_cursor, str):
        raise CatalogueError("catalogue page has a non-string 'next_cursor'")
    if has_more and not next_cursor:
        raise CatalogueError("catalogue page says has_more but gives no next_cursor")
    entries = [CatalogueEntry.from_json(raw) for raw in models]
    return _Page(entries, next_cursor if has_more else None)
