"""The usage read-out: every counter that applies to a key, app, team or deployment, read
without charging it.

:func:`usage_lines` turns the rules of some entities into the counters of the windows that
contain ``now`` (the very keys a request admitted at ``now`` is charged to), and
:func:`readings` pairs them with the levels the backend reports (pure, ``now`` passed in).
:class:`UsageReader` does both around one read-only call of the backend
(:meth:`~.backend.Backend.levels`): with Redis, the levels every replica enforces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .backend import Backend, BackendUnavailable, LimitsUnavailable
from .model import Kind, Line
from .rules import Rules, Template
from .settings import BudgetRule, Scope
from .windows import Period, window

__all__ = ["Reading", "UsageReader", "usage_lines", "readings", "MAX_LINES"]

#: At most this many counters are read in one read-out (the rest are left out, and said so).
MAX_LINES = 1000


@dataclass(frozen=True, slots=True)
class Reading:
    """One counter as it stands: its limit, its level (reservations in flight included)."""

    scope: Scope
    name: str | None  # None for the global scope
    kind: Kind
    period: Period | None  # None for concurrency (no window)
    words: str  # "tokens per minute", "budget per day"
    limit: int  # micro-units of the currency for a budget
    used: int
    resets_at: float | None  # epoch seconds: the window's end; None for concurrency
    budget: BudgetRule | None = None  # the budget a cost line belongs to

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(frozen=True, slots=True)
class _Entry:
    scope: Scope
    name: str
    template: Template
    line: Line


def usage_lines(
    rules: Rules, entities: Iterable[tuple[Scope, str]], now: float, max_lines: int = MAX_LINES
) -> tuple[list[_Entry], bool]:
    """The counters of ``entities`` in the windows containing ``now``, each once (a counter
    shared by two entities, like a team's, is read once); and whether some were left out."""
    out: list[_Entry] = []
    seen: set[str] = set()
    for scope, name in entities:
        for t in rules.entity_templates(scope, name):
            if t.period is None:
                line = Line(t.base, t.kind, t.limit, 0.0, t.soft, t.label)
            else:
                start, end = window(t.period, now)
                line = Line(f"{t.base}:{start}", t.kind, t.limit, float(end), t.soft, t.label)
            if line.key in seen:
                continue
            if len(out) >= max_lines:
                return out, True
            seen.add(line.key)
            out.append(_Entry(scope, name, t, line))
    return out, False


def readings(rules: Rules, entries: Sequence[_Entry], levels: Sequence[int]) -> list[Reading]:
    """The entries with their levels (a negative level, which no backend should report, is
    read as 0)."""
    out: list[Reading] = []
    for entry, level in zip(entries, levels, strict=True):
        t, line = entry.template, entry.line
        budget = None
        if t.kind == "cost" and entry.scope in ("key", "app", "team"):
            budget = rules.budget(entry.scope, entry.name)
        out.append(
            Reading(
                scope=entry.scope,
                name=None if entry.scope == "global" else entry.name,
                kind=t.kind,
                period=t.period,
                words=t.words,
                limit=line.limit,
                used=max(0, int(level)),
                resets_at=line.window_end or None,
                budget=budget,
            )
        )
    return out


class UsageReader:
    """Read the counters of some entities from the backend the limits are enforced on."""

    def __init__(self, rules: Rules, backend: Backend, clock: Callable[[], float]) -> None:
        self.rules = rules
        self._backend = backend
        self._clock = clock

    def now(self) -> float:
        """The limits' clock: the read-out picks the windows a request now would be charged to."""
        return self._clock()

    async def read(
        self, entities: Iterable[tuple[Scope, str]], now: float
    ) -> tuple[list[Reading], bool]:
        """The readings of ``entities`` at ``now``, and whether some were left out
        (:data:`MAX_LINES`). Raises :class:`LimitsUnavailable` (503) when the shared counters
        cannot be read: the read-out never guesses."""
        entries, truncated = usage_lines(self.rules, entities, now)
        try:
            levels = await self._backend.levels([e.line for e in entries], now)
        except BackendUnavailable:
            raise LimitsUnavailable(
                "The limits store is unreachable, so current usage cannot be read; retry in a "
                "moment.",
                reason="limits_backend_unavailable",
            ) from None
        return readings(self.rules, entries, levels), truncated
