"""What a request costs, from the price table: integer micro-units of the currency (pure).

Prices are per 1,000,000 tokens, so one token at price ``p`` costs exactly ``p`` micro-units;
a request's cost is rounded *up* to a whole micro-unit, so the sum of charges never falls
below the true cost (by less than one millionth of the currency per request above it).

::

    cost = (prompt - cached) * input + cached * cached_input + completion * output

``completion`` includes reasoning tokens, as Azure reports them. The estimate charged before
the request knows no cached tokens: it prices the whole prompt as uncached input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from .settings import Price

__all__ = ["MICRO", "UnitPrice", "price_for", "cost_micro", "to_micro", "from_micro"]

MICRO = 1_000_000


@dataclass(frozen=True, slots=True)
class UnitPrice:
    """Micro-units of the currency per token."""

    input: Decimal
    cached_input: Decimal
    output: Decimal

    @classmethod
    def of(cls, price: Price) -> UnitPrice:
        cached = price.cached_input if price.cached_input is not None else price.input
        return cls(price.input, cached, price.output)


def price_for(model: str, prices: Mapping[str, Price]) -> UnitPrice | None:
    """The price of ``model``: an exact entry, else the longest entry it starts with."""
    if model in prices:
        return UnitPrice.of(prices[model])
    best = max((name for name in prices if model.startswith(name)), key=len, default=None)
    return UnitPrice.of(prices[best]) if best is not None else None


def cost_micro(price: UnitPrice, prompt: int, cached: int, completion: int) -> int:
    cached = min(max(cached, 0), prompt)
    exact = (prompt - cached) * price.input + cached * price.cached_input
    return math.ceil(exact + completion * price.output)


def to_micro(amount: Decimal) -> int:
    return math.ceil(amount * MICRO)


def from_micro(micro: int) -> Decimal:
    return Decimal(micro) / MICRO
