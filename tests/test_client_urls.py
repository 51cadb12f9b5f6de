"""URL work skipped or cached on the request path (issue 11), checked against httpx's own
parse of the whole URL, refusals included: the trusted-origin check parses only a URL's
``scheme://authority`` head; the direct aiohttp path writes a plain URL without parsing it."""

from __future__ import annotations

import itertools

import httpx
import pytest
from yarl import URL

from falbind.client._aiohttp import target
from falbind.client._core import origin
from falbind.client._urls import plain_url as _plain
from falbind.client.clients import _parsed_url

URLS = [
    "https://queue.fal.run/fal-ai/flux/requests/abc/status",
    "https://queue.fal.run/fal-ai/flux/requests/abc/status?logs=1#x",
    "HTTPS://Queue.FAL.run:443/x",
    "https://h:0443/x",
    "https://host:/x",
    "https://host:99999/x",
    "http://[::1]:8080/a?b#c",
    "http://[::1/x",
    "http://user:pw@host/x",
    "https://queue.fal.run@evil.com/x",
    "https://evil.com\\@queue.fal.run/x",
    "https://h\\@evil.com/x",
    "https://host?x=/y",
    "https://host#frag/x",
    "https://exämple.com/x",
    "https://xn--exmple-cua.com/x",
    "https://h/é",
    "https://h/a b",
    "https://host:abc/x",
    "ftp://h/x",
    "//host/x",
    "host/x",
    "mailto:x@y",
    "",
    "https://",
    "https://:80/x",
    " https://h/x",
    "https://h/\x01",
    "https://h\x7f/x",
    "https://h/" + "a" * 70_000,
]


def _whole(url: str) -> str:
    """The check as it was: the whole URL parsed by httpx."""
    parsed = httpx.URL(url)
    port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
    host = parsed.host.lower()
    return f"{parsed.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


@pytest.mark.parametrize("url", URLS, ids=range(len(URLS)))
def test_origin_is_that_of_the_whole_url(url: str) -> None:
    try:
        expected = _whole(url)
    except httpx.InvalidURL as refused:
        with pytest.raises(httpx.InvalidURL) as caught:
            origin(url)
        assert str(caught.value) == str(refused)
    else:
        assert origin(url) == expected
        assert origin(url) == expected  # cached: the same again


HEADS = [
    "http://127.0.0.1:5",
    "https://queue.fal.run",
    "https://queue.fal.run:443",
    "http://h:80",
    "https://Queue.fal.run",
    "HTTP://h",
    "http://999.1.1.1:5",
    "http://[::1]:8080",
    "https://h:0443",
    "https://h:",
    "https://h:8a",
    "https://h:99999",
    "http://user@h",
    "https://xn--exmple-cua.com",
    "https://exa_mple.com",
    "https://h%41",
]
PATHS = [
    "",
    "/",
    "/queue/fal-ai/flux/requests/abc-123/status",
    "/a/./b",
    "/a/../b",
    "/a/..",
    "/a/.",
    "/..",
    "/.",
    "/a/.b/c",
    "/a/.../b",
    "//x",
    "/a%20b",
    "/a b",
    "/a:b@c!$&'()*+,;=~",
    "/é",
    "/a`b",
    "/a{b}",
    "/a\\b",
    "/a|b",
    "/a^b",
    "/a[b]",
    "?x=1",
    "/a?x=1",
    "/a#f",
]
PARAMS: list[tuple[tuple[str, str], ...]] = [
    (),
    (("logs", "0"),),
    (("a.b-c_d~", "E.F"),),
    (("k", ""),),
    (("logs", "1"), ("x", "a b")),
    (("fal_webhook", "https://e.com/h?a=1"),),
]


def _by_httpx(method: str, url: str, params: tuple[tuple[str, str], ...]) -> tuple[object, ...]:
    """Where the request went before: httpx parsed every URL, aiohttp got httpx's string."""
    parsed = httpx.URL(url)
    if params:
        parsed = parsed.copy_merge_params(dict(params))
    sent = URL(str(parsed), encoded=True)
    return str(sent), sent.raw_path_qs, sent.host, sent.port, str(httpx.Request(method, parsed).url)


def test_the_direct_path_sends_every_url_where_httpx_sent_it() -> None:
    plain = 0
    for head, path, params in itertools.product(HEADS, PATHS, PARAMS):
        url = head + path
        try:
            expected: tuple[object, ...] = _by_httpx("GET", url, params)
        except (httpx.InvalidURL, ValueError) as refused:
            expected = (type(refused), str(refused))
        try:
            where = target.__wrapped__("GET", url, params)
            sent = where.url
            got: tuple[object, ...] = (
                str(sent),
                sent.raw_path_qs,
                sent.host,
                sent.port,
                str(where.request().url),
            )
        except (httpx.InvalidURL, ValueError) as refused:
            got = (type(refused), str(refused))
        assert got == expected, (url, params)
        plain += _plain(url, params) is not None
    assert plain >= 100  # the fast path is taken where it may be


def test_fal_queue_urls_take_the_plain_path() -> None:
    status = "https://queue.fal.run/fal-ai/flux/requests/0b6c-4d2e/status"
    assert _plain(f"{status}/stream", (("logs", "0"),)) == f"{status}/stream?logs=0"
    assert _plain("http://127.0.0.1:8080/queue/fal-ai/flux/schnell", ()) is not None


def test_the_httpx_paths_parse_every_url_as_httpx_parsed_it() -> None:
    """The sync client (and the async one over httpx) hand httpx a URL parsed once: for a
    plain URL, the string with its parameters; else httpx's parse and merge, as before."""
    plain = 0
    for head, path, params in itertools.product(HEADS, PATHS, PARAMS):
        url = head + path
        outcome: list[tuple[object, ...]] = []
        for parse in (_parse_then_merge, _parsed_url.__wrapped__):
            try:
                parsed = parse(url, params)
                request = httpx.Request("GET", parsed)
                seen = (str(parsed), parsed.raw_path, parsed.host, parsed.port, parsed.scheme)
                outcome.append((*seen, request.url.raw_path, request.headers.get("host")))
            except (httpx.InvalidURL, ValueError) as refused:
                outcome.append((type(refused), str(refused)))
        assert outcome[0] == outcome[1], (url, params)
        plain += _plain(url, params) is not None
    assert plain >= 100


def _parse_then_merge(url: str, params: tuple[tuple[str, str], ...]) -> httpx.URL:
    parsed = httpx.URL(url)
    return parsed.copy_merge_params(dict(params)) if params else parsed
