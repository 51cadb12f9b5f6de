"""After a crash: what a dead gateway's request had running on fal, collected or cancelled.

Each fal request id is written down before the gateway waits on the job (``record_job``), so
almost every job of a dead gateway is known. One window is left: fal accepted the job and the
process died before the id was committed. For that, each request in flight also carries the
fingerprints of the bodies it will send (a SHA-256 of the body's canonical JSON, without the
fields that hold uploaded files, whose URLs are known only later). Recovery asks fal's request
history for the endpoint over the request's lifetime::

    GET {api_url}/v1/models/requests/by-endpoint?endpoint_id=…&start=…&end=…
    → {"items": [{"request_id", "endpoint_id", "sent_at", "status_code", "json_input"}],
       "next_cursor", "has_more"}

and takes, for each body not accounted for, the earliest job with that fingerprint that no
request in flight has written down: that job is collected if it completed, cancelled if not.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from .config import FalTarget
from .platform import get_pages

__all__ = ["HISTORY_PATH", "fetch_history", "find_unrecorded", "fingerprint", "inputs_of"]

HISTORY_PATH: Final = "/v1/models/requests/by-endpoint"
PLACEHOLDER_URL: Final = "https://placeholder.invalid/upload.png"
"""Stands in for an uploaded file while an edit is validated (the gateway's edit route)."""
_log = logging.getLogger("falbind.serve")


def fingerprint(body: Mapping[str, Any], blank: Iterable[str] = ()) -> str:
    """The SHA-256 of ``body``'s canonical JSON (sorted keys, no spaces), ``blank`` left out."""
    left_out = set(blank)
    kept = {k: v for k, v in body.items() if k not in left_out}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def inputs_of(bodies: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a request in flight keeps of its bodies: their fingerprints and the fields left
    out of them (those holding a placeholder for an upload)."""
    blank = sorted(
        {
            key
            for body in bodies
            for key, value in body.items()
            if value == PLACEHOLDER_URL or (isinstance(value, list) and PLACEHOLDER_URL in value)
        }
    )
    return {"fingerprints": [fingerprint(body, blank) for body in bodies], "blank": blank}


async def fetch_history(
    http: httpx.AsyncClient, target: FalTarget, endpoint_id: str, start: float, end: float
) -> list[Mapping[str, Any]]:
    """fal's request history of ``endpoint_id`` between ``start`` and ``end`` (epoch
    seconds); raises ``httpx.HTTPError`` or ``ValueError``. The key goes to ``api_url`` only."""
    params = {
        "endpoint_id": endpoint_id,
        "start": datetime.fromtimestamp(start, UTC).isoformat(),
        "end": datetime.fromtimestamp(end, UTC).isoformat(),
        "limit": "100",
    }
    items = await get_pages(
        http,
        target,
        HISTORY_PATH,
        params,
        list_key="items",
        what="request history",
        max_pages=50,  # bounded: 5,000 requests in one request's lifetime is plenty
    )
    return [item for item in items if isinstance(item, Mapping)]


def find_unrecorded(
    inputs: Mapping[str, Any],
    recorded: int,
    history: Sequence[Mapping[str, Any]],
    known: set[str],
) -> list[str]:
    """The request ids of the jobs a request sent but never wrote down: for the bodies not
    accounted for by its ``recorded`` jobs, the earliest history items with one of its
    fingerprints whose ids no request in flight knows (``known``)."""
    prints = inputs.get("fingerprints") or []
    blank = inputs.get("blank") or []
    missing = len(prints) - recorded
    if missing <= 0:
        return []
    wanted = set(prints)
    found = []
    for item in sorted(history, key=lambda i: str(i.get("sent_at") or "")):
        request_id, body = item.get("request_id"), item.get("json_input")
        if not isinstance(request_id, str) or request_id in known or not isinstance(body, Mapping):
            continue
        if fingerprint(body, blank) in wanted:
            found.append(request_id)
            if len(found) == missing:
                break
    return found


def history_window(started_at: float) -> tuple[float, float]:
    """The times to search: from a little before the request started until now."""
    return started_at - 5.0, time.time() + 5.0
