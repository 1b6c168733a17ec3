"""Where the counters live: the contract, and the in-process backend (the default).

A backend applies :mod:`.model`'s arithmetic atomically over all the lines of a request's
:class:`~.model.Plan`, with the request's amounts beside them:

* :meth:`reserve` checks every line (``level + amount <= limit``); if all fit it adds every
  amount (and takes the concurrency slots) and answers the levels *before*; if one does not
  fit it changes nothing. Either way the levels let the caller explain the outcome.
* :meth:`settle` adds each correction to the plan's settled lines (real minus reserved; a
  counter whose window has already expired is left alone) and frees the request's
  concurrency slots; it answers the levels *after* (``-1`` where nothing was changed). A
  reservation is settled at most once.
* :meth:`levels` reads the lines' levels and changes nothing (the usage read-out): a counter
  whose window has passed reads 0, a concurrency line the slots held now.

:class:`MemoryBackend` does this with dict arithmetic over the plan's compiled tuples and no
awaits: one event loop means no other request can run in between (its ``reserve_now`` /
``settle_now`` are the same operations as plain calls, for the admission hook's in-process
path). An optional journal keeps every reservation and settlement in order, so an audit (or a
test) can replay the counters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from ..errors import RequestError
from .model import Line, Plan

__all__ = [
    "Outcome",
    "Backend",
    "ImmediateBackend",
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
    async def reserve(
        self, rid: str, plan: Plan, amounts: Sequence[int], now: float
    ) -> Outcome: ...

    async def settle(
        self, rid: str, plan: Plan, deltas: Sequence[int], now: float
    ) -> tuple[int, ...]:
        """Correct ``plan.settled`` by ``deltas``; the levels after, in that order."""
        ...

    async def first_alert(self, key: str, expires_at: float) -> bool:
        """``True`` once per ``key`` (a crossed soft threshold) until ``expires_at``."""
        ...

    async def levels(self, lines: Sequence[Line], now: float) -> tuple[int, ...]:
        """The level of each line, read without changing anything."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class ImmediateBackend(Backend, Protocol):
    """A backend that answers without waiting (in process): admission calls these on the
    request's own turn of the event loop, without an await."""

    def reserve_now(self, rid: str, plan: Plan, amounts: Sequence[int], now: float) -> Outcome: ...

    def settle_now(
        self, rid: str, plan: Plan, deltas: Sequence[int], now: float
    ) -> tuple[int, ...]: ...


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

    async def reserve(self, rid: str, plan: Plan, amounts: Sequence[int], now: float) -> Outcome:
        return self.reserve_now(rid, plan, amounts, now)

    async def levels(self, lines: Sequence[Line], now: float) -> tuple[int, ...]:
        counters, expiry = self.counters, self.expiry
        return tuple(
            0 if expiry.get(line.key, now + 1) <= now else counters.get(line.key, 0)
            for line in lines
        )

    async def settle(
        self, rid: str, plan: Plan, deltas: Sequence[int], now: float
    ) -> tuple[int, ...]:
        return self.settle_now(rid, plan, deltas, now)

    def reserve_now(self, rid: str, plan: Plan, amounts: Sequence[int], now: float) -> Outcome:
        # Plain loops over the plan's tuples: the fastest form for a handful of lines.
        if now >= self._next_sweep:
            self._sweep(now)
        counters = self.counters
        get = counters.get
        levels: list[int] = []
        for key, amount, limit in zip(plan.keys, amounts, plan.limits, strict=True):
            level = get(key, 0)
            if level + amount > limit:
                found = tuple([get(k, 0) for k in plan.keys])
                if self.journal is not None:
                    self._record("refuse", rid, now, plan.lines, amounts, found)
                return Outcome(False, found)
            levels.append(level)
        for key, level, amount in zip(plan.keys, levels, amounts, strict=True):
            counters[key] = level + amount
        expiry = self.expiry
        for key, window_end in plan.windowed:
            if key not in expiry:  # a window's first request
                expiry[key] = window_end + EXPIRY_GRACE_S
        self._open.add(rid)
        if self.journal is not None:
            self._record("reserve", rid, now, plan.lines, amounts, levels)
        return Outcome(True, tuple(levels))

    def settle_now(
        self, rid: str, plan: Plan, deltas: Sequence[int], now: float
    ) -> tuple[int, ...]:
        if rid not in self._open:  # settled already, or never reserved
            return (-1,) * len(plan.settled)
        self._open.discard(rid)
        counters = self.counters
        get = counters.get
        after: list[int] = []
        for key, delta in zip(plan.settled_keys, deltas, strict=True):
            level = get(key)
            if level is None:  # its window expired while the request ran: left alone
                after.append(-1)
                continue
            level += delta
            if level < 0:
                level = 0
            counters[key] = level
            after.append(level)
        for key in plan.slots:
            if counters.get(key) == 0:
                del counters[key]  # a concurrency counter back to zero
        if self.journal is not None:
            self._record("settle", rid, now, plan.settled, deltas, after)
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
        amounts: Sequence[int],
        levels: Sequence[int],
    ) -> None:
        assert self.journal is not None
        self.journal.append(
            {
                "op": op,
                "rid": rid,
                "t": now,
                "keys": [line.key for line in lines],
                "limits": [line.limit for line in lines],
                "amounts": list(amounts),
                "levels": list(levels),
            }
        )
