"""Money as integers: every amount the gateway stores, reserves or settles is a whole number of
micro-units of the currency (``1_000_000`` = one dollar).

Floats cannot hold 0.1 exactly, and a budget compared with ``spend + estimate <= max_budget`` in
floating point lets a key through (or refuses it) by a rounding error; sums of many small float
costs drift. Integers add exactly in Python and in both databases (``BIGINT``). Amounts coming
in (a config's ``output_cost_per_image``, a ``/key/generate`` budget, fal's ``unit_price``) are
read through :class:`~decimal.Decimal` from their text, so ``0.1`` is 100,000 micro-units, not
99,999.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Final

__all__ = ["MAX_MICROS", "MICROS", "from_micros", "to_micros"]

MICROS: Final = 1_000_000
"""Micro-units in one unit of the currency."""
MAX_MICROS: Final = 10**15
"""The largest amount accepted anywhere (a billion dollars): far below BIGINT's limit, so no
sum of a key's requests can overflow the column."""


def to_micros(amount: float | int | str | Decimal, *, round_up: bool = False) -> int:
    """``amount`` (units of the currency) in micro-units.

    Raises ``ValueError`` for a value that is not a finite number from 0 to :data:`MAX_MICROS`
    micro-units (NaN, infinity, negative, too large, a bool). ``round_up`` rounds a fraction of
    a micro-unit up (a cost: never under-charge); otherwise to the nearest.
    """
    if isinstance(amount, bool):
        raise ValueError(f"{amount!r} is not an amount of money")
    try:
        # str() first: Decimal(0.1) is the float's binary value, Decimal("0.1") is 0.1.
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except InvalidOperation:
        raise ValueError(f"{amount!r} is not an amount of money") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{amount!r} is not a finite amount >= 0")
    scaled = (value * MICROS).to_integral_value(ROUND_CEILING if round_up else ROUND_HALF_EVEN)
    if scaled > MAX_MICROS:
        raise ValueError(f"{amount!r} is larger than the largest amount accepted ({MAX_MICROS})")
    return int(scaled)


def from_micros(micros: int | None) -> float | None:
    """Micro-units as a float of units, for JSON answers and display only (never summed)."""
    return None if micros is None else micros / MICROS
