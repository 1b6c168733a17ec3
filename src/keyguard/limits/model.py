"""The arithmetic of limits: one request's lines, whether they fit, what to tell the client.

Pure functions over values, ``now`` passed in; the backends (memory, Redis Lua) apply exactly
this arithmetic atomically. A *line* is one counter a request is charged to:

* ``tokens``     estimated tokens, corrected to the real usage at settlement (TPM, quotas);
* ``requests``   one per request (RPM);
* ``cost``       estimated cost in micro-units of the currency, corrected at settlement;
* ``concurrent`` one slot while the request runs, freed at settlement.

A line is the counter alone; what one request adds to each line, its *amounts*, travel beside
it. A request fits when every line fits: ``level + amount <= limit``, where ``level`` counts
the settled usage and the reservations still in flight in the line's window. A request that
does not fit reserves nothing.

A caller's lines are the same for every request until a window turns, so they are compiled
once into a :class:`Plan` (:func:`plan_of`): the lines, and the tuples a backend and
:func:`remaining` loop over for each request (plain loops over tuples: for a handful of lines
the cheapest form CPython has).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Literal, NamedTuple

__all__ = [
    "Kind",
    "Line",
    "Plan",
    "plan_of",
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
    """One counter a request is charged to, in one window (a tuple: read on the hot path)."""

    key: str  # the counter's key, including its window: "app:billing-bot:tpm:1767225600"
    kind: Kind
    limit: int
    window_end: float  # epoch seconds; 0 for concurrency slots (no window)
    soft: int = 0  # a soft threshold (budgets): crossing it raises an alert; 0 = none
    label: str = ""  # for people: "tokens per minute of app 'billing-bot'"


Pick = Callable[[Sequence[int]], tuple[int, ...]]

#: Where each kind's amount comes from: ``(tokens, cost, 1)`` at admission, ``(tokens delta,
#: cost delta, -1)`` at settlement.
_SOURCE: dict[Kind, int] = {"tokens": 0, "cost": 1, "requests": 2, "concurrent": 2}


def _picker(indices: Sequence[int]) -> Pick:
    """A function taking the listed items of a sequence, as a tuple (``itemgetter``, in C)."""
    if len(indices) > 1:
        pick: Pick = itemgetter(*indices)
        return pick
    if indices:
        (only,) = indices
        return lambda values: (values[only],)
    return lambda values: ()


class Plan(NamedTuple):
    """The lines of a request, compiled: shared by every request of a caller in one window."""

    lines: tuple[Line, ...]
    keys: tuple[str, ...]
    limits: tuple[int, ...]
    windowed: tuple[tuple[str, float], ...]  # (key, window end) of lines with a window
    settled: tuple[Line, ...]  # the lines corrected at settlement: all but request counts
    settled_keys: tuple[str, ...]
    slots: tuple[str, ...]  # concurrency keys: a counter back at zero is dropped
    pick: Pick  # (tokens, cost, 1) -> the amounts of ``lines``
    pick_settled: Pick  # (tokens delta, cost delta, -1) -> the corrections of ``settled``
    token_at: tuple[int, ...]  # the positions of the token lines in ``lines``
    request_at: tuple[int, ...]  # and of the request lines

    def amounts(self, tokens: int, cost: int) -> tuple[int, ...]:
        """What a request of ``tokens`` tokens and ``cost`` micro-units adds to each line."""
        return self.pick((tokens, cost, 1))

    def deltas(self, tokens: int, cost: int) -> tuple[int, ...]:
        """The corrections of :attr:`settled` for a request that used ``tokens`` / ``cost``
        more than its reservation (negative: fewer); its concurrency slots are freed."""
        return self.pick_settled((tokens, cost, -1))

    def scaled(self, fraction: float) -> Plan:
        """The same counters with every limit times ``fraction`` (at least 1)."""
        plan = plan_of([ln._replace(limit=max(1, int(ln.limit * fraction))) for ln in self.lines])
        assert plan is not None
        return plan


def plan_of(lines: Sequence[Line]) -> Plan | None:
    """Compile a request's lines (``None`` for none: nothing to check)."""
    if not lines:
        return None
    settled = [ln for ln in lines if ln.kind != "requests"]
    return Plan(
        lines=tuple(lines),
        keys=tuple(ln.key for ln in lines),
        limits=tuple(ln.limit for ln in lines),
        windowed=tuple((ln.key, ln.window_end) for ln in lines if ln.window_end),
        settled=tuple(settled),
        settled_keys=tuple(ln.key for ln in settled),
        slots=tuple(ln.key for ln in settled if ln.kind == "concurrent"),
        pick=_picker([_SOURCE[ln.kind] for ln in lines]),
        pick_settled=_picker([_SOURCE[ln.kind] for ln in settled]),
        token_at=tuple(i for i, ln in enumerate(lines) if ln.kind == "tokens"),
        request_at=tuple(i for i, ln in enumerate(lines) if ln.kind == "requests"),
    )


@dataclass(frozen=True, slots=True)
class Refusal:
    line: Line
    amount: int  # what the request needed of the line
    level: int
    #: Seconds until the request could fit, or ``None`` if it never can (amount > limit).
    retry_after_s: float | None


def _retry_after(line: Line, amount: int, now: float) -> float | None:
    if amount > line.limit:
        return None
    if line.kind == "concurrent":
        return CONCURRENCY_RETRY_S
    return max(0.001, line.window_end - now)


def check(
    lines: Sequence[Line], amounts: Sequence[int], levels: Sequence[int], now: float
) -> Refusal | None:
    """``None`` when every line fits, else the refusal that lasts longest."""
    worst: Refusal | None = None
    for line, amount, level in zip(lines, amounts, levels, strict=True):
        if level + amount <= line.limit:
            continue
        refusal = Refusal(line, amount, level, _retry_after(line, amount, now))
        if refusal.retry_after_s is None:
            return refusal
        if worst is None or (worst.retry_after_s or 0.0) < refusal.retry_after_s:
            worst = refusal
    return worst


def remaining(
    plan: Plan, levels_before: Sequence[int], tokens: int
) -> tuple[int | None, int | None]:
    """Tokens and requests left under the tightest token and request limits (``None``: none),
    once an admitted request of ``tokens`` tokens is added to the levels it found."""
    limits = plan.limits
    tokens_left = requests_left = None
    for i in plan.token_at:
        left = limits[i] - levels_before[i]
        if tokens_left is None or left < tokens_left:
            tokens_left = left
    for i in plan.request_at:
        left = limits[i] - levels_before[i]
        if requests_left is None or left < requests_left:
            requests_left = left
    return (
        None if tokens_left is None else max(0, tokens_left - tokens),
        None if requests_left is None else max(0, requests_left - 1),
    )


def crossed_soft(line: Line, before: int, after: int) -> bool:
    """Whether this change took the line across its soft threshold (at most once per window)."""
    return line.soft > 0 and before < line.soft <= after


def retry_after_headers(seconds: float) -> dict[str, str]:
    """Azure's pair: whole seconds (rounded up) and milliseconds."""
    return {
        "retry-after": str(max(1, math.ceil(seconds))),
        "retry-after-ms": str(max(1, math.ceil(seconds * 1000))),
    }
