"""The usage bars where the gateway has no usage read-out (``AdminService.usage``): the limits
and budgets the configuration sets for a key and its app (and the global ones), each with its
use in the current window summed from the audit log's request records.

This is an approximation, said so on the page: the audit log is written in batches (a request
shows up a moment after it was answered), a reservation still in flight is not in it, team and
deployment limits and concurrency are left out, and a window's records are read up to the
audit view's bound. The usage read-out reads the counters the limits enforce instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from ..admin.activity import AuditView, Totals
from ..admin.service import Actor
from ..limits.settings import LimitSettings
from ..limits.windows import Period, window
from .usage import Bar, Usage

__all__ = ["Line", "fallback_usage", "lines_of"]

Kind = Literal["tokens", "requests"]
_FIELDS: tuple[tuple[str, Kind, Period], ...] = (
    ("tpm", "tokens", "minute"),
    ("rpm", "requests", "minute"),
    ("tokens_per_hour", "tokens", "hour"),
    ("tokens_per_day", "tokens", "day"),
    ("tokens_per_month", "tokens", "month"),
)


@dataclass(frozen=True, slots=True)
class Line:
    scope: Literal["key", "app", "global"]
    kind: Literal["tokens", "requests", "cost"]
    period: Period
    limit: float


def lines_of(limits: LimitSettings, key_id: str | None, app: str) -> list[Line]:
    """The limits and budgets of ``limits`` that apply to key ``key_id`` (``None``: the app
    alone) of ``app``, in configuration order (pure)."""
    lines: list[Line] = []
    for rule in limits.rules:
        if rule.scope == "key" and key_id is not None and rule.name in (None, key_id):
            scope: Literal["key", "app", "global"] = "key"
        elif rule.scope == "app" and rule.name in (None, app):
            scope = "app"
        elif rule.scope == "global":
            scope = "global"
        else:
            continue
        for name, kind, period in _FIELDS:
            value = getattr(rule, name)
            if value is not None:
                lines.append(Line(scope, kind, period, float(value)))
    for budget in limits.budgets:
        if budget.scope == "app" and budget.name in (None, app):
            periods: tuple[tuple[Period, Decimal | None], ...] = (
                ("day", budget.per_day),
                ("month", budget.per_month),
            )
            for period, amount in periods:
                if amount is not None:
                    lines.append(Line("app", "cost", period, float(amount)))
    return lines


def _used(line: Line, totals: Totals) -> float:
    if line.kind == "tokens":
        return float(totals.tokens)
    if line.kind == "requests":
        return float(totals.requests)
    return totals.cost


async def fallback_usage(
    audit: AuditView,
    actor: Actor,
    limits: LimitSettings,
    *,
    key_id: str | None,
    app: str,
    now: datetime,
) -> Usage:
    """The bars of :func:`lines_of`, each filled from the audit log's current window."""
    lines = lines_of(limits, key_id, app)
    cache: dict[tuple[str, int], Totals] = {}  # one read per scope and window
    bars: list[Bar] = []
    for line in lines:
        start, end = window(line.period, now.timestamp())
        if (line.scope, start) not in cache:
            cache[(line.scope, start)] = await audit.totals(
                actor,
                since=datetime.fromtimestamp(start, UTC),
                key_id=key_id if line.scope == "key" else None,
                app=app if line.scope == "app" else None,
            )
        totals = cache[(line.scope, start)]
        unit = limits.currency if line.kind == "cost" else line.kind
        label = (
            f"{line.scope} budget per {line.period}"
            if line.kind == "cost"
            else f"{line.scope} {line.kind} per {line.period}"
        )
        resets = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        bars.append(Bar(label, _used(line, totals), line.limit, unit, resets))
    day = await audit.totals(
        actor,
        since=datetime.fromtimestamp(window("day", now.timestamp())[0], UTC),
        key_id=key_id,
        app=None if key_id else app,
    )
    return Usage(bars, day.requests, day.tokens, day.cost, approximate=True)
