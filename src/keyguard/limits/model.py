"""The arithmetic of limits: one request's lines, whether they fit, what to tell the client.

Pure functions over values, ``now`` passed in; the backends (memory, Redis Lua) apply exactly
this arithmetic atomically. A *line* is one counter a request is charged to:

* ``tokens``     estimated tokens, corrected to the real usage at settlement (TPM, quotas);
* ``requests``   one per request (RPM);
* ``cost``       estimated cost in micro-units of the currency, corrected at settlement;
* ``concurrent`` one slot while the request runs, freed at settlement.

A request fits when every line fits: ``level + amount <= limit``, where ``level`` counts the
settled usage and the reservations still in flight in the line's window. A request that does
not fit reserves nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

__all__ = [
    "Kind",
    "Line",
    "Refusal",
    "check",
    "remaining",
    "crossed_soft",
    "CONCURRENCY_RETRY_S",
    "retry_after_headers",
]

Kind = Literal["tokens", "requests", "cost", "concurrent"]

#: A refused concurrent request is told to retry after this long (slots free at any moment).
CONCURRENCY_RETRY_S = 1.0


class Line(NamedTuple):
    """One counter a request is charged to (a tuple: cheap to build on the hot path)."""

    key: str  # the counter's key, including its window: "app:billing-bot:tpm:1767225600"
    kind: Kind
    limit: int
    amount: int
    window_end: float  # epoch seconds; 0 for concurrency slots (no window)
    soft: int = 0  # a soft threshold (budgets): crossing it raises an alert; 0 = none
    label: str = ""  # for people: "tokens per minute of app 'billing-bot'"


@dataclass(frozen=True, slots=True)
class Refusal:
    line: Line
    level: int
    #: Seconds until the request could fit, or ``None`` if it never can (amount > limit).
    retry_after_s: float | None


def _retry_after(line: Line, now: float) -> float | None:
    if line.amount > line.limit:
        return None
    if line.kind == "concurrent":
        return CONCURRENCY_RETRY_S
    return max(0.001, line.window_end - now)


def check(lines: Sequence[Line], levels: Sequence[int], now: float) -> Refusal | None:
    """``None`` when every line fits, else the refusal that lasts longest."""
    worst: Refusal | None = None
    for line, level in zip(lines, levels, strict=True):
        if level + line.amount <= line.limit:
            continue
        refusal = Refusal(line, level, _retry_after(line, now))
        if refusal.retry_after_s is None:
            return refusal
        if worst is None or (worst.retry_after_s or 0.0) < refusal.retry_after_s:
            worst = refusal
    return worst


def remaining(lines: Sequence[Line], levels_before: Sequence[int]) -> tuple[int | None, int | None]:
    """Tokens and requests left under the tightest token and request limits (``None``: none),
    once the request's amounts are added to the levels it found (it was admitted)."""
    tokens: int | None = None
    requests: int | None = None
    for line, level in zip(lines, levels_before, strict=True):
        kind = line.kind
        if kind == "tokens":
            left = max(0, line.limit - level - line.amount)
            tokens = left if tokens is None or left < tokens else tokens
        elif kind == "requests":
            left = max(0, line.limit - level - line.amount)
            requests = left if requests is None or left < requests else requests
    return tokens, requests


def crossed_soft(line: Line, before: int, after: int) -> bool:
    """Whether this change took the line across its soft threshold (at most once per window)."""
    return line.soft > 0 and before < line.soft <= after


def retry_after_headers(seconds: float) -> dict[str, str]:
    """Azure's pair: whole seconds (rounded up) and milliseconds."""
    return {
        "retry-after": str(max(1, math.ceil(seconds))),
        "retry-after-ms": str(max(1, math.ceil(seconds * 1000))),
    }
