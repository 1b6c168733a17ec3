"""Where the counters live: the contract, and the in-process backend (the default).

A backend applies :mod:`.model`'s arithmetic atomically over all the lines of a request:

* :meth:`reserve` checks every line (``level + amount <= limit``); if all fit it adds every
  amount (and takes the concurrency slots) and answers the levels *before*; if one does not
  fit it changes nothing. Either way the levels let the caller explain the outcome.
* :meth:`settle` adds each line's correction (real minus reserved; a counter whose window has
  already expired is left alone) and frees the request's concurrency slots; it answers the
  levels *after* (``-1`` where nothing was changed). A reservation is settled at most once.

:class:`MemoryBackend` does this with plain dict arithmetic and no awaits: one event loop means
no other request can run in between. An optional journal keeps every reservation and
settlement in order, so an audit (or a test) can replay the counters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from ..errors import RequestError
from .model import Line

__all__ = [
    "Outcome",
    "Backend",
    "MemoryBackend",
    "BackendUnavailable",
    "LimitsUnavailable",
    "EXPIRY_GRACE_S",
]

#: Counters outlive their window by this long, so a long stream still corrects its window.
EXPIRY_GRACE_S = 900


class BackendUnavailable(Exception):
    """The shared counters cannot be reached (raised by a backend, handled by admission)."""


class LimitsUnavailable(RequestError):
    """503: limits cannot be checked (their backend is down and no fallback is configured)."""

    status = 503
    code = "ServiceUnavailable"


class Outcome(NamedTuple):  # a tuple: built for every request
    allowed: bool
    levels: tuple[int, ...]  # every line's level before this request


class Backend(Protocol):
    async def reserve(self, rid: str, lines: Sequence[Line], now: float) -> Outcome: ...

    async def settle(
        self, rid: str, lines: Sequence[Line], deltas: Sequence[int], now: float
    ) -> tuple[int, ...]: ...

    async def first_alert(self, key: str, expires_at: float) -> bool:
        """``True`` once per ``key`` (a crossed soft threshold) until ``expires_at``."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class MemoryBackend:
    """Counters in a dict, for one process (the embedded default, and the Redis fallback)."""

    def __init__(self, *, journal_max_len: int = 0) -> None:
        self.counters: dict[str, int] = {}
        self.expiry: dict[str, float] = {}
        self.journal: deque[dict[str, Any]] | None = (
            deque(maxlen=journal_max_len) if journal_max_len else None
        )
        self._open: set[str] = set()  # reservations not settled yet
        self._next_sweep = 0.0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def first_alert(self, key: str, expires_at: float) -> bool:
        marker = key + ":alerted"
        if marker in self.expiry:
            return False
        self.expiry[marker] = expires_at
        return True

    async def reserve(self, rid: str, lines: Sequence[Line], now: float) -> Outcome:
        if now >= self._next_sweep:
            self._sweep(now)
        counters = self.counters
        levels = tuple([counters.get(line.key, 0) for line in lines])
        for line, level in zip(lines, levels, strict=True):
            if level + line.amount > line.limit:
                self._record("refuse", rid, now, lines, levels)
                return Outcome(False, levels)
        expiry = self.expiry
        for line, level in zip(lines, levels, strict=True):
            counters[line.key] = level + line.amount
            if line.window_end and line.key not in expiry:
                expiry[line.key] = line.window_end + EXPIRY_GRACE_S
        self._open.add(rid)
        self._record("reserve", rid, now, lines, levels)
        return Outcome(True, levels)

    async def settle(
        self, rid: str, lines: Sequence[Line], deltas: Sequence[int], now: float
    ) -> tuple[int, ...]:
        if rid not in self._open:  # settled already, or never reserved
            return tuple(-1 for _ in lines)
        self._open.discard(rid)
        counters = self.counters
        after: list[int] = []
        for line, delta in zip(lines, deltas, strict=True):
            level = counters.get(line.key)
            if level is None:
                after.append(-1)
                continue
            level = max(0, level + delta)
            if level == 0 and not line.window_end:
                del counters[line.key]  # a concurrency counter back to zero
            else:
                counters[line.key] = level
            after.append(level)
        self._record("settle", rid, now, lines, tuple(after), deltas)
        return tuple(after)

    def _sweep(self, now: float) -> None:
        dead = [key for key, until in self.expiry.items() if until <= now]
        for key in dead:
            del self.expiry[key]
            self.counters.pop(key, None)
        self._next_sweep = now + 60

    def _record(
        self,
        op: str,
        rid: str,
        now: float,
        lines: Sequence[Line],
        levels: Sequence[int],
        deltas: Sequence[int] | None = None,
    ) -> None:
        if self.journal is None:
            return
        self.journal.append(
            {
                "op": op,
                "rid": rid,
                "t": now,
                "keys": [line.key for line in lines],
                "limits": [line.limit for line in lines],
                "amounts": list(deltas) if deltas is not None else [ln.amount for ln in lines],
                "levels": list(levels),
            }
        )
