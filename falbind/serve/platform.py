"""fal's platform API (``api.fal.ai``): one paged, authenticated GET, for prices and history.

fal's platform API is not part of the SDK's clients yet (they speak to fal's run, queue and
storage hosts), so its GETs are made here with httpx and the SDK's own key resolution.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from .config import FalTarget

__all__ = ["get_pages"]


async def get_pages(
    http: httpx.AsyncClient,
    target: FalTarget,
    path: str,
    params: Mapping[str, str],
    *,
    list_key: str,
    what: str,
    max_pages: int,
) -> list[Any]:
    """Every item of ``list_key`` in the answers to ``GET {target.api_url}{path}``, following
    fal's ``next_cursor``/``has_more`` for at most ``max_pages`` pages. Raises
    ``httpx.HTTPError``, or ``ValueError`` for an answer not in fal's shape (naming ``what``).
    The key is sent only to ``target.api_url``."""
    from falbind.client.auth import resolve_key

    key = resolve_key(target.key)
    headers = {"Accept": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Key {key.reveal()}"
    url = target.api_url.rstrip("/") + path
    query = dict(params)
    items: list[Any] = []
    for _ in range(max_pages):
        response = await http.get(url, params=query, headers=headers)
        response.raise_for_status()
        data = response.json()
        if not isinstance(data, Mapping) or not isinstance(data.get(list_key), list):
            raise ValueError(f"fal's {what} answer has no {list_key!r} list")
        items.extend(data[list_key])
        cursor = data.get("next_cursor")
        if not data.get("has_more") or not isinstance(cursor, str) or not cursor:
            break
        query["cursor"] = cursor
    return items
