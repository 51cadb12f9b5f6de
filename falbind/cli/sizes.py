"""``falbind sizes``: what each OpenAI-style size becomes on each model.

The mapping is :func:`~.sizing.plan_for`'s (schema plus registry data); this module only picks
the endpoints and prints the plans, as the Markdown table of :func:`~.sizing.size_table`
(``docs/sizes.md`` is that table for every text-to-image endpoint) or as JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

import falbind
from falbind.images.sizing import capability_for, plan_for, size_table
from falbind.models.bindings import sizes as _sizes
from falbind.tooling.endpoints import EndpointLookupError, resolve_endpoint

__all__ = ["DEFAULT_CATEGORY", "select_endpoints", "size_report", "sizes_command"]

Echo = Callable[[str], None]
DEFAULT_CATEGORY: Final = "text-to-image"


def select_endpoints(names: Sequence[str], categories: Sequence[str]) -> list[str]:
    """The endpoint ids named (ids, aliases or Python names, in the order given), then every
    bound endpoint of ``categories`` (sorted); neither given: every text-to-image endpoint.

    Raises :class:`~falbind.tooling.endpoints.EndpointLookupError` for a name that is not bound.
    """
    chosen = [resolve_endpoint(name).id for name in names]
    wanted = set(categories) or ({DEFAULT_CATEGORY} if not names else set())
    chosen += sorted(i for i, spec in falbind.ENDPOINTS.items() if spec.category in wanted)
    return list(dict.fromkeys(chosen))


def size_report(endpoint_ids: Sequence[str], sizes: Sequence[str]) -> dict[str, Any]:
    """The plans as JSON-ready data: per endpoint, its size parameter and each size's plan."""
    endpoints = []
    for endpoint_id in endpoint_ids:
        capability = capability_for(endpoint_id)
        plans = {}
        for size in sizes:
            plan = plan_for(endpoint_id, size)
            plans[size] = {
                "params": plan.params,
                "delivered": plan.delivered,
                "adjusted": plan.adjusted,
                "note": plan.note,
            }
        endpoints.append(
            {
                "endpoint": endpoint_id,
                "kind": capability.kind,
                "parameter": capability.parameter,
                "sizes": plans,
            }
        )
    return {"sizes": list(sizes), "endpoints": endpoints}


def sizes_command(
    names: Sequence[str], categories: Sequence[str], *, output_format: str, echo: Echo
) -> int:
    """Print the size table (``markdown``) or report (``json``) for the selected endpoints."""
    try:
        endpoint_ids = select_endpoints(names, categories)
    except EndpointLookupError as exc:
        print(f"falbind: {exc}", file=sys.stderr)
        return 2
    if not endpoint_ids:
        print(f"falbind: no bound endpoint in category {', '.join(categories)}", file=sys.stderr)
        return 2
    if output_format == "json":
        echo(json.dumps(size_report(endpoint_ids, _sizes.OPENAI_SIZES), indent=2))
    else:
        echo(size_table(endpoint_ids).rstrip("\n"))
    return 0
