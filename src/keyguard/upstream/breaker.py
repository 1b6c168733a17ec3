"""Circuit breakers for upstream backends: out for as long as the upstream asked (pure).

When a backend answers 429, Azure says how long to stay away (``retry-after-ms``, else
``retry-after``); Keyguard takes that backend out of rotation for exactly that long (at most
:data:`MAX_HOLD_S`) and sends the requests to the next backend. A backend that cannot be
reached is taken out for :data:`CONNECT_HOLD_S`, doubling on each consecutive failure (at most
``MAX_HOLD_S``). The first request after the hold tries it again; a success closes it.

Decisions are functions of a :class:`BreakerState` and ``now`` (monotonic seconds);
:class:`Breakers` keeps one state per backend, for one process.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from ..core.transport import HeaderLookup

__all__ = [
    "BreakerState",
    "Breakers",
    "trip",
    "is_open",
    "parse_retry_after",
    "CONNECT_HOLD_S",
    "DEFAULT_429_HOLD_S",
    "MAX_HOLD_S",
]

CONNECT_HOLD_S = 2.0
DEFAULT_429_HOLD_S = 5.0
MAX_HOLD_S = 300.0


@dataclass(frozen=True, slots=True)
class BreakerState:
    open_until: float = 0.0
    failures: int = 0  # consecutive failures without a retry-after


def is_open(state: BreakerState, now: float) -> bool:
    return now < state.open_until


def trip(state: BreakerState, now: float, retry_after_s: float | None) -> BreakerState:
    """The state after a 429 (``retry_after_s`` from the upstream) or a connection failure
    (``None``)."""
    if retry_after_s is not None:
        hold = min(max(retry_after_s, 0.0), MAX_HOLD_S)
        return BreakerState(now + hold, 0)
    hold = min(CONNECT_HOLD_S * 2 ** min(state.failures, 16), MAX_HOLD_S)
    return BreakerState(now + hold, state.failures + 1)


def parse_retry_after(headers: HeaderLookup, wall_now: float) -> float | None:
    """Seconds to stay away: ``retry-after-ms``, else ``retry-after`` (seconds or HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - wall_now)
    except (TypeError, ValueError):
        return None


class Breakers:
    def __init__(self) -> None:
        self._states: dict[Hashable, BreakerState] = {}

    def is_open(self, key: Hashable, now: float) -> bool:
        state = self._states.get(key)
        return state is not None and is_open(state, now)

    def open_until(self, key: Hashable) -> float:
        state = self._states.get(key)
        return state.open_until if state is not None else 0.0

    def failed(self, key: Hashable, now: float, retry_after_s: float | None) -> float:
        """Record a failure; returns how long the backend is out."""
        state = trip(self._states.get(key, BreakerState()), now, retry_after_s)
        self._states[key] = state
        return state.open_until - now

    def succeeded(self, key: Hashable) -> None:
        if key in self._states:
            del self._states[key]
