"""What each request costs, known before anything is sent.

A model's price comes from its config entry's ``model_info.output_cost_per_image`` first (the
operator's own figure, LiteLLM's field), else from fal's pricing API::

    GET {api_url}/v1/models/pricing?endpoint_id=a,b   (Authorization: Key <fal key>)
    → {"prices": [{"endpoint_id", "unit_price", "unit", "currency"}], "next_cursor", "has_more"}

fetched for every configured endpoint when the gateway starts (up to 50 ids a request, as fal
allows), kept in the database (so a restart while fal's API is away still knows them), and for
a wildcard's endpoint the first time it is asked for. A price is usable for images when fal
bills per image (``unit`` ``image``/``images``); other units (megapixels, compute seconds) do
not say what a request will cost before it runs, so a key with a budget is refused on such a
model until the operator sets ``output_cost_per_image`` (a key without a budget is served, its
cost logged as unknown). Money is integer micro-units (:mod:`.money`).

The GET itself is :func:`.platform.get_pages`, shared with the crash recovery's history look-up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

import httpx

from .config import FalTarget, ModelEntry
from .money import to_micros
from .platform import get_pages
from .store import PriceRow, Store

__all__ = ["IMAGE_UNITS", "Price", "PriceBook", "fetch_prices"]

IMAGE_UNITS: Final = frozenset({"image", "images", "per image"})
"""fal's ``unit`` values that mean one price per image delivered (fal's docs say ``image``;
third parties saw ``images``)."""
PRICING_PATH: Final = "/v1/models/pricing"
BATCH: Final = 50
"""fal's limit of endpoint ids per pricing request."""
FETCH_TIMEOUT: Final = 10.0
_log = logging.getLogger("falbind.serve")


@dataclass(frozen=True, slots=True)
class Price:
    """One model's price."""

    unit_micros: int
    """The price of one ``unit``, in micro-units of ``currency``."""
    unit: str
    currency: str
    source: Literal["model_info", "fal"]

    @property
    def per_image_micros(self) -> int | None:
        """The price of one image, or ``None`` when the unit is not an image."""
        if self.source == "model_info" or self.unit.strip().lower() in IMAGE_UNITS:
            return self.unit_micros
        return None

    def describe(self) -> str:
        return f"{self.unit_micros / 1_000_000:g} {self.currency} per {self.unit}"


def _price_of(row: PriceRow) -> Price | None:
    try:
        micros = to_micros(Decimal(row.unit_price), round_up=True)
    except (ValueError, InvalidOperation):
        return None
    return Price(micros, row.unit, row.currency, "fal")


async def fetch_prices(
    http: httpx.AsyncClient, target: FalTarget, endpoint_ids: Sequence[str]
) -> list[PriceRow]:
    """fal's prices for ``endpoint_ids`` (several requests of :data:`BATCH` ids, following
    ``next_cursor``); raises ``httpx.HTTPError`` or ``ValueError`` (an answer not in fal's
    shape). The key is sent only to ``target.api_url``."""
    rows: list[PriceRow] = []
    now = time.time()
    for start in range(0, len(endpoint_ids), BATCH):
        batch = ",".join(endpoint_ids[start : start + BATCH])
        prices = await get_pages(
            http,
            target,
            PRICING_PATH,
            {"endpoint_id": batch},
            list_key="prices",
            what="pricing",
            max_pages=100,  # bounded: fal pages at most 50 ids at a time
        )
        rows.extend(_rows(prices, now))
    return rows


def _rows(items: Iterable[Any], now: float) -> list[PriceRow]:
    rows = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        endpoint_id, price = item.get("endpoint_id"), item.get("unit_price")
        if not isinstance(endpoint_id, str) or not isinstance(price, int | float | str):
            continue
        if isinstance(price, bool):
            continue
        rows.append(
            PriceRow(
                endpoint_id=endpoint_id[:300],
                unit_price=str(price)[:40],
                unit=str(item.get("unit") or "unit")[:64],
                currency=str(item.get("currency") or "USD")[:16],
                fetched_at=now,
            )
        )
    return rows


class PriceBook:
    """The prices one gateway knows: the config's, fal's (kept in the database)."""

    def __init__(self, store: Store, *, timeout: float = FETCH_TIMEOUT) -> None:
        self._store = store
        self._timeout = timeout
        self._known: dict[str, Price] = {}
        self._missing: dict[str, float] = {}
        """Endpoints fal gave no price for, and when it said so (asked again after a while)."""
        self._lock = asyncio.Lock()

    async def load(self, entries: Sequence[ModelEntry]) -> list[str]:
        """Fetch fal's prices for every configured endpoint without a ``model_info`` price;
        what could not be priced, as notes for the operator."""
        by_target: dict[FalTarget, list[str]] = {}
        for entry in entries:
            if entry.cost_per_image is None and entry.endpoint_id is not None:
                by_target.setdefault(entry.fal, []).append(entry.endpoint_id)
        notes = []
        for target, ids in by_target.items():
            await self._fetch(target, sorted(set(ids)))
            for endpoint_id in sorted(set(ids)):
                if endpoint_id not in self._known:
                    notes.append(
                        f"no price known for {endpoint_id}: keys with a budget are refused on "
                        "it until fal's pricing API answers or model_info.output_cost_per_image "
                        "is set"
                    )
        return notes

    async def price_for(self, entry: ModelEntry, endpoint_id: str) -> Price | None:
        """The price of ``endpoint_id`` served by ``entry``; ``None`` when unknown."""
        if entry.cost_per_image is not None:
            return Price(to_micros(entry.cost_per_image), "image", "USD", "model_info")
        known = self._known.get(endpoint_id)
        if known is not None:
            return known
        asked = self._missing.get(endpoint_id)
        if asked is not None and time.monotonic() - asked < 60:
            return None
        async with self._lock:
            if endpoint_id not in self._known:
                await self._fetch(entry.fal, [endpoint_id])
        return self._known.get(endpoint_id)

    async def _fetch(self, target: FalTarget, endpoint_ids: list[str]) -> None:
        rows: list[PriceRow] = []
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as http:
                rows = await fetch_prices(http, target, endpoint_ids)
        except (httpx.HTTPError, ValueError) as exc:
            _log.warning(
                "fal's pricing API did not answer for %d endpoint(s) (%s); using the prices "
                "kept in the database",
                len(endpoint_ids),
                type(exc).__name__,
            )
        else:
            await self._store.save_prices(rows)
        stored = await self._store.prices(endpoint_ids)
        for endpoint_id in endpoint_ids:
            row = stored.get(endpoint_id)
            price = _price_of(row) if row is not None else None
            if price is not None:
                self._known[endpoint_id] = price
                self._missing.pop(endpoint_id, None)
            else:
                self._missing[endpoint_id] = time.monotonic()
