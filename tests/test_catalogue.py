"""CatalogueClient against FakeCatalogue over a real loopback socket (plus MockTransport
for protocol violations the fake does not model)."""

from __future__ import annotations

import email.utils
import json
import math
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from falbind.client.retry import RetryPolicy
from falbind.testing import FakeCatalogue
from falbind_codegen.catalogue import (
    CATALOGUE_RETRY,
    CatalogueClient,
    CatalogueEntry,
    CatalogueError,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "fal-openapi"
CATALOGUE = DATA / "catalogue.json"
ENDPOINTS = DATA / "endpoints"
KEY = "test-key-id:test-key-secret-0123456789"

pytestmark = pytest.mark.skipif(
    not CATALOGUE.is_file() or not ENDPOINTS.is_dir(),
    reason=f"shared fal OpenAPI data not found at {DATA}",
)


def catalogue_ids() -> list[str]:
    models = json.loads(CATALOGUE.read_text(encoding="utf-8"))["models"]
    return [model["endpoint_id"] for model in models]


def endpoint_document(endpoint_id: str) -> Any:
    return json.loads((ENDPOINTS / f"{endpoint_id.replace('/', '__')}.json").read_text())


class Sleeps(list[float]):
    """Records requested sleeps instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def fake() -> Iterator[FakeCatalogue]:
    with FakeCatalogue(CATALOGUE, ENDPOINTS, page_size=100, expanded_page_size=40) as server:
        yield server


def client_for(server: FakeCatalogue, sleeps: Sleeps, **kwargs: Any) -> CatalogueClient:
    return CatalogueClient(
        server.url, key=KEY, openapi_url=server.openapi_url, sleep=sleeps, **kwargs
    )


# --------------------------------------------------------------------------- paging


def test_full_paging_collects_every_entry_exactly_once(fake: FakeCatalogue, sleeps: Sleeps) -> None:
    progress: list[int] = []
    with client_for(fake, sleeps) as client:
        entries = list(client.iter_models(progress=progress.append))
    ids = [entry.endpoint_id for entry in entries]
    total = len(catalogue_ids())  # 1,207 in the 2026-06 snapshot
    assert ids == catalogue_ids()
    assert len(fake.requests) == math.ceil(total / 100)  # 100 per page
    assert progress == [min(100 * n, total) for n in range(1, math.ceil(total / 100) + 1)]
    assert all(entry.openapi is None for entry in entries)


def test_entries_expose_metadata_fields(fake: FakeCatalogue, sleeps: Sleeps) -> None:
    with client_for(fake, sleeps) as client:
        first = next(client.iter_models())
    assert first == CatalogueEntry(
        endpoint_id="alibaba/happy-horse/image-to-video",
        category="image-to-video",
        status="active",
        display_name="Happy Horse",
        metadata=first.metadata,
    )
    assert first.metadata["model_url"] == "https://fal.run/alibaba/happy-horse/image-to-video"


def test_page_size_and_category_are_sent(fake: FakeCatalogue, sleeps: Sleeps) -> None:
    with client_for(fake, sleeps) as client:
        entries = list(client.iter_models(category="text-to-image", page_size=50))
    assert len(entries) == 180
    assert {entry.category for entry in entries} == {"text-to-image"}
    assert len(fake.requests) == 4
    assert all("limit=50" in r and "category=text-to-image" in r for r in fake.requests)


def test_expand_inlines_documents_equal_to_the_files(sleeps: Sleeps) -> None:
    with (
        FakeCatalogue(CATALOGUE, ENDPOINTS, page_size=500, expanded_page_size=100) as server,
        client_for(server, sleeps) as client,
    ):
        entries = list(client.iter_models(expand_openapi=True, page_size=500))
    assert len(entries) == len(catalogue_ids())
    # the server caps expanded pages at 100
    assert len(server.requests) == math.ceil(len(entries) / 100)
    for entry in entries:
        assert entry.openapi == endpoint_document(entry.endpoint_id), entry.endpoint_id


def test_fetch_models_batches_fifty_ids(fake: FakeCatalogue, sleeps: Sleeps) -> None:
    wanted = catalogue_ids()[::7]  # every 7th id, in catalogue order
    with client_for(fake, sleeps) as client:
        entries = client.fetch_models(list(reversed(wanted)))
    assert [entry.endpoint_id for entry in entries] == list(reversed(wanted))
    # batches of 50 ids; expanded pages hold 40, so a batch of more than 40 takes two pages
    batches = [min(50, len(wanted) - start) for start in range(0, len(wanted), 50)]
    expected = [size for size in batches for _ in range(math.ceil(size / 40))]
    assert [r.count("endpoint_id=") for r in fake.requests] == expected
    assert all("expand=openapi-3.0" in r for r in fake.requests)
    assert entries[0].openapi == endpoint_document(entries[0].endpoint_id)


def test_fetch_models_leaves_out_unknown_ids(sleeps: Sleeps) -> None:
    gone = "fal-ai/flux/dev"
    with (
        FakeCatalogue(CATALOGUE, ENDPOINTS, removed={gone}) as server,
        client_for(server, sleeps) as client,
    ):
        entries = client.fetch_models([gone, "fal-ai/flux/schnell", "fal-ai/flux/schnell"])
    assert [entry.endpoint_id for entry in entries] == ["fal-ai/flux/schnell"]


def test_overrides_serve_another_document_version(sleeps: Sleeps) -> None:
    slug = "fal-ai__flux__dev"
    older = json.loads((DATA / "history" / slug / "older-1.json").read_text())
    with (
        FakeCatalogue(CATALOGUE, ENDPOINTS, overrides={"fal-ai/flux/dev": older}) as server,
        client_for(server, sleeps) as client,
    ):
        (entry,) = client.fetch_models(["fal-ai/flux/dev"])
        assert entry.openapi == older != endpoint_document("fal-ai/flux/dev")
        assert client.fetch_openapi("fal-ai/flux/dev") == older


def test_fake_rejects_more_than_fifty_ids(fake: FakeCatalogue) -> None:
    params = tuple(("endpoint_id", endpoint_id) for endpoint_id in catalogue_ids()[:51])
    response = httpx.get(f"{fake.url}/v1/models", params=params)
    assert response.status_code == 400
    assert "50" in response.json()["detail"]


# --------------------------------------------------------------------------- per-endpoint document


def test_fetch_openapi_returns_the_document(fake: FakeCatalogue, sleeps: Sleeps) -> None:
    with client_for(fake, sleeps) as client:
        document = client.fetch_openapi("fal-ai/flux/dev")
    assert document == endpoint_document("fal-ai/flux/dev")
    assert fake.requests == ["/api/openapi/queue/openapi.json?endpoint_id=fal-ai%2Fflux%2Fdev"]


def test_fetch_openapi_unknown_id_is_a_clear_error(fake: FakeCatalogue, sleeps: Sleeps) -> None:
    with client_for(fake, sleeps) as client, pytest.raises(CatalogueError) as caught:
        client.fetch_openapi("nobody/nothing")
    message = str(caught.value)
    assert "HTTP 404" in message and "'nobody/nothing' not found" in message
    assert "\n" not in message
    assert len(fake.requests) == 1  # a 404 is not retried
    assert sleeps == []


# --------------------------------------------------------------------------- retries and errors


def test_429_once_is_retried_and_succeeds(sleeps: Sleeps) -> None:
    with (
        FakeCatalogue(CATALOGUE, ENDPOINTS, fail_first_with_429=True) as server,
        client_for(server, sleeps) as client,
    ):
        entries = list(client.iter_models())
    assert len(entries) == len(catalogue_ids())
    assert sleeps == [0.0]  # Retry-After: 0 honoured
    assert server.requests[0] == server.requests[1]  # the same page asked twice


def test_malformed_page_raises_a_clear_error(sleeps: Sleeps) -> None:
    with (
        FakeCatalogue(CATALOGUE, ENDPOINTS, malformed_page=3) as server,
        client_for(server, sleeps) as client,
    ):
        collected: list[CatalogueEntry] = []
        with pytest.raises(CatalogueError) as caught:
            collected.extend(client.iter_models())
    assert len(collected) == 200
    assert str(caught.value) == "catalogue page 3 is not valid JSON (text/html)"


def mock_client(
    handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any
) -> CatalogueClient:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return CatalogueClient("https://catalogue.test", key=KEY, http=http, **kwargs)


def page(models: list[Any], next_cursor: str | None) -> dict[str, Any]:
    return {"models": models, "has_more": next_cursor is not None, "next_cursor": next_cursor}


def test_repeated_cursor_is_refused() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json=page([{"endpoint_id": "a/b"}], "same"))

    with (
        mock_client(handler) as client,
        pytest.raises(CatalogueError, match="repeats an earlier cursor"),
    ):
        list(client.iter_models())
    assert len(requests) == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "not an object"),
        ({"has_more": False}, "no 'models' list"),
        ({"models": {}, "has_more": False}, "no 'models' list"),
        ({"models": [], "has_more": "yes"}, "non-boolean 'has_more'"),
        ({"models": [], "has_more": True, "next_cursor": None}, "no next_cursor"),
        ({"models": [], "has_more": True, "next_cursor": 7}, "non-string 'next_cursor'"),
        ({"models": [{"metadata": {}}], "has_more": False}, "no string 'endpoint_id'"),
        ({"models": [{"endpoint_id": "a/b", "metadata": []}]}, "'metadata' is not an object"),
        ({"models": [{"endpoint_id": "a/b", "openapi": "x"}]}, "'openapi' is not an object"),
    ],
    ids=[
        "list",
        "no-models",
        "models-not-list",
        "has-more-type",
        "has-more-no-cursor",
        "cursor-type",
        "no-id",
        "metadata-type",
        "openapi-type",
    ],
)
def test_malformed_pages_are_rejected(body: Any, reason: str) -> None:
    with (
        mock_client(lambda request: httpx.Response(200, json=body)) as client,
        pytest.raises(CatalogueError, match=reason),
    ):
        list(client.iter_models())


def test_server_errors_and_transport_errors_are_retried_with_backoff(sleeps: Sleeps) -> None:
    outcomes: list[Any] = [
        httpx.ConnectError("refused"),
        httpx.Response(503),
        httpx.Response(429, headers={"Retry-After": "60"}),
        httpx.Response(200, json=page([{"endpoint_id": "a/b"}], None)),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome  # type: ignore[no-any-return]

    retry = RetryPolicy(initial_backoff=0.5, max_backoff=4.0, jitter=False, max_retry_after=4.0)
    with mock_client(handler, sleep=sleeps, retry=retry) as client:
        assert [entry.endpoint_id for entry in client.iter_models()] == ["a/b"]
    assert sleeps == [0.5, 1.0, 4.0]  # exponential, then Retry-After capped at max_retry_after


@pytest.mark.parametrize("ahead", [6.0, -3600.0], ids=["future", "past"])
def test_an_http_date_retry_after_is_honoured(sleeps: Sleeps, ahead: float) -> None:
    when = email.utils.formatdate(time.time() + ahead, usegmt=True)
    outcomes = [
        httpx.Response(429, headers={"Retry-After": when}),
        httpx.Response(200, json=page([{"endpoint_id": "a/b"}], None)),
    ]
    with mock_client(lambda request: outcomes.pop(0), sleep=sleeps) as client:
        assert [entry.endpoint_id for entry in client.iter_models()] == ["a/b"]
    assert len(sleeps) == 1
    if ahead > 0:  # the date has whole seconds; the test itself takes a little time
        assert ahead - 3 < sleeps[0] <= ahead
    else:  # a date already past: retry at once, not after the backoff
        assert sleeps == [0.0]


def test_retries_are_bounded(sleeps: Sleeps) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(502, json={"detail": "bad\ngateway"})

    with (
        mock_client(handler, sleep=sleeps, retry=replace(CATALOGUE_RETRY, max_retries=2)) as client,
        pytest.raises(CatalogueError) as caught,
    ):
        list(client.iter_models())
    assert len(calls) == 3 and len(sleeps) == 2
    assert str(caught.value).endswith("failed after 3 attempt(s): HTTP 502: bad gateway")


def test_client_errors_are_not_retried(sleeps: Sleeps) -> None:
    with (
        mock_client(lambda r: httpx.Response(401, json={"detail": "nope"}), sleep=sleeps) as client,
        pytest.raises(CatalogueError, match="HTTP 401: nope"),
    ):
        list(client.iter_models())
    assert sleeps == []


# --------------------------------------------------------------------------- the key


def test_key_is_sent_but_never_shown(sleeps: Sleeps) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        raise httpx.ConnectError(f"cannot reach {request.url}")

    with (
        mock_client(handler, sleep=sleeps, retry=replace(CATALOGUE_RETRY, max_retries=1)) as client,
        pytest.raises(CatalogueError) as caught,
    ):
        list(client.iter_models())
    assert seen == [f"Key {KEY}"] * 2
    rendered = "".join(traceback.format_exception(caught.value))
    for text in (str(caught.value), repr(caught.value), rendered, repr(client)):
        assert KEY not in text


def test_key_comes_from_the_environment_without_writing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAL_KEY", KEY)
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, json=page([], None))

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with CatalogueClient("https://catalogue.test", http=http) as client:
        list(client.iter_models())
    assert seen == [f"Key {KEY}"]
    assert KEY not in repr(client)


def test_no_key_sends_no_authorization(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAL_KEY", raising=False)
    monkeypatch.delenv("FAL_AI_API_KEY", raising=False)
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, json=page([], None))

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with CatalogueClient("https://catalogue.test", http=http) as client:
        list(client.iter_models())
    assert seen == [None]
