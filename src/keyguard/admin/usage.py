"""The usage read-out (``GET /admin/usage``): for a key, an app, a team, a deployment or
everything, each limit and budget that applies with its current use (read from the limits
backend, without charging it), what remains and when it resets; and the spend over a period
from the audit log.

:func:`parse_query` validates what a caller asks (pure); :class:`UsageReport` gathers the
answer; :func:`usage_json` shapes it (pure). Every list in the answer is bounded, and says so
when it was cut.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from ..audit.spend import Match, Spend, Totals, read_spend
from ..core.times import utc_seconds
from ..errors import BadRequest, NotFound, shown
from ..keys.service import APP_PATTERN, KeyService
from ..limits.prices import from_micro
from ..limits.settings import Scope
from ..limits.usage import Reading, UsageReader
from ..limits.windows import Period, window

__all__ = [
    "USAGE_QUERY",
    "USAGE_SCHEMA",
    "UsageQuery",
    "UsageReport",
    "parse_query",
    "usage_json",
    "since_of",
    "PERIODS",
]

Filter = Literal["app", "key", "team", "deployment"]
FILTERS: tuple[Filter, ...] = ("app", "key", "team", "deployment")
PERIODS = ("hour", "day", "week", "month")
#: Spend lists (by key, app, deployment) keep the biggest spenders, at most this many each.
MAX_SPEND_ROWS = 50
#: Everything (no filter): at most this many apps are read.
MAX_APPS = 200
#: A spend read is kept this long (seconds) and shared by the askers of the same sums, and
#: at most this many run at once: a caller polling the read-out does not rescan the audit log.
SPEND_TTL_S = 2.0
_SPEND_READS = 2
_SPEND_CACHED = 64
_QUERY = (*FILTERS, "period")
#: The query parameters, for the OpenAPI description.
USAGE_QUERY = {
    "app": "One app: its limits and budgets, its teams', the global ones; its spend",
    "key": "One key id: its limits and budget, its app's and teams', the global ones",
    "team": "One team of limits.teams: its limits and budgets, its apps'",
    "deployment": "One deployment: its limits, the global ones; its spend",
    "period": "The spend's period, from its start (UTC): hour, day (default), week, month",
}

_PERIOD: dict[str, Period] = {"hour": "hour", "day": "day", "month": "month"}

UsageQuery = tuple[Literal["app", "key", "team", "deployment", "all"], str | None, str]


def parse_query(query: Mapping[str, str]) -> UsageQuery:
    """``(scope, name, period)`` from the query string: at most one of ``app``, ``key``,
    ``team``, ``deployment``; ``period`` one of :data:`PERIODS` (default ``day``)."""
    unknown = sorted(set(query) - set(_QUERY))
    if unknown:
        raise BadRequest(
            f"unknown query parameter {shown(unknown[0])}; use one of app, key, team, "
            "deployment, and period",
            reason="invalid_query",
        )
    given = [f for f in FILTERS if f in query]
    if len(given) > 1:
        raise BadRequest(
            f"give at most one of app, key, team or deployment (got {' and '.join(given)}); "
            "ask once for each",
            reason="invalid_query",
        )
    period = query.get("period", "day")
    if period not in PERIODS:
        raise BadRequest(
            f"'period' must be one of {', '.join(PERIODS)}, not {shown(period)}",
            reason="invalid_query",
        )
    if not given:
        return "all", None, period
    scope = given[0]
    name = query[scope]
    if not name or len(name) > 128:
        raise BadRequest(f"'{scope}' needs a name of 1 to 128 characters", reason="invalid_query")
    return scope, name, period


def since_of(period: str, now: datetime) -> datetime:
    """The start of the calendar ``period`` containing ``now`` (UTC; weeks start on Monday),
    the windows the budgets and quotas count in."""
    if period == "week":
        day = datetime(now.year, now.month, now.day, tzinfo=UTC)
        return day - timedelta(days=day.weekday())
    start, _ = window(_PERIOD[period], now.timestamp())
    return datetime.fromtimestamp(start, UTC)


class UsageReport:
    def __init__(
        self,
        *,
        keys: KeyService,
        reader: UsageReader | None,
        audit: AsyncEngine | None,
        teams: Mapping[str, Sequence[str]],
        deployments: Collection[str],
        currency: str = "USD",
    ) -> None:
        self._keys = keys
        self._reader = reader
        self._audit = audit
        self._teams = teams
        self._deployments = frozenset(deployments)
        self._currency = currency
        self._reads = asyncio.Semaphore(_SPEND_READS)
        self._spent: dict[tuple[datetime, Match], tuple[float, Spend]] = {}

    async def report(self, query: UsageQuery, now: datetime) -> dict[str, Any]:
        scope, name, period = query
        entities: list[tuple[Scope, str]] = []
        match = Match()
        if scope == "key":
            assert name is not None
            record = await self._keys.get(name)  # NotFound names it
            entities += [("key", record.key_id), *self._app(record.app)]
            match = Match(key_id=record.key_id)
        elif scope == "app":
            assert name is not None
            await self._known_app(name, now)
            entities += self._app(name)
            match = Match(apps=(name,))
        elif scope == "team":
            members = self._teams.get(name or "")
            if members is None:
                raise NotFound(
                    f"no team {shown(name or '')} in limits.teams", reason="unknown_team"
                )
            entities += [("team", name or ""), *(("app", a) for a in members)]
            match = Match(apps=frozenset(members))
        elif scope == "deployment":
            if name not in self._deployments:
                raise NotFound(
                    f"no deployment {shown(name or '')} is configured", reason="unknown_deployment"
                )
            entities.append(("deployment", name))
            match = Match(deployment=name)
        since = since_of(period, now)
        spend = await self._spend(since, match)
        truncated_apps = False
        if scope == "all":
            apps = await self._apps(spend, now)
            truncated_apps = len(apps) > MAX_APPS
            entities += [("app", a) for a in apps[:MAX_APPS]]
            entities += [("team", t) for t in sorted(self._teams)]
            entities += [("deployment", d) for d in sorted(self._deployments)]
        entities.append(("global", "*"))
        readings: list[Reading] = []
        truncated = truncated_apps
        at = now.timestamp()
        if self._reader is not None:
            at = self._reader.now()
            readings, cut = await self._reader.read(entities, at)
            truncated = truncated or cut
        return usage_json(
            scope,
            name,
            datetime.fromtimestamp(at, UTC),
            readings,
            spend,
            period=period,
            since=since,
            currency=self._currency,
            truncated=truncated,
        )

    def _app(self, app: str) -> list[tuple[Scope, str]]:
        teams = [t for t, members in self._teams.items() if app in members]
        return [("app", app), *(("team", t) for t in sorted(teams))]

    async def _known_app(self, app: str, now: datetime) -> None:
        if not APP_PATTERN.fullmatch(app):  # said without repeating it: it may be a secret
            raise BadRequest(
                f"{shown(app)} is not an app name: 1-64 letters, digits, '.', '_' or '-'",
                reason="invalid_app",
            )
        named = self._reader is not None and ("app", app) in self._reader.rules.named()
        in_team = any(app in members for members in self._teams.values())
        if named or in_team:
            return
        if not await self._keys.list(app=app, include_revoked=True, now=now):
            raise NotFound(
                f"no app {shown(app)}: it has no key and no limit names it (list them with "
                "'keyguard keys list')",
                reason="unknown_app",
            )

    async def _apps(self, spend: Spend | None, now: datetime) -> list[str]:
        """Every app that has usage (spend in the period, a key) or rules, sorted."""
        apps: set[str] = set()
        if self._reader is not None:
            apps |= {name for scope, name in self._reader.rules.named() if scope == "app"}
        for members in self._teams.values():
            apps.update(members)
        if spend is not None:
            apps.update(spend.by_app)
        apps.update(record.app for record in await self._keys.list(now=now))
        return sorted(apps)

    async def _spend(self, since: datetime, match: Match) -> Spend | None:
        """The spend since ``since`` (``None``: no audit log), read at most once per
        :data:`SPEND_TTL_S` for the same question, and by at most two readers at once."""
        if self._audit is None:
            return None
        key = (since, match)
        async with self._reads:
            cached = self._spent.get(key)
            if cached is not None and time.monotonic() - cached[0] < SPEND_TTL_S:
                return cached[1]
            spend = await read_spend(self._audit, since, match)
            if len(self._spent) >= _SPEND_CACHED:
                self._spent.clear()
            self._spent[key] = (time.monotonic(), spend)
            return spend


def _time(epoch: float | None) -> str | None:
    return None if epoch is None else utc_seconds(datetime.fromtimestamp(epoch, UTC))


def _money(micro: int) -> float:
    return float(from_micro(micro))


def _percent(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def usage_json(
    scope: str,
    name: str | None,
    now: datetime,
    readings: Sequence[Reading],
    spend: Spend | None,
    *,
    period: str,
    since: datetime,
    currency: str,
    truncated: bool = False,
) -> dict[str, Any]:
    """The answer of ``GET /admin/usage`` (the contract the console renders)."""
    limits: list[dict[str, Any]] = []
    budgets: list[dict[str, Any]] = []
    for r in readings:
        if r.kind == "cost":
            budgets.append(
                {
                    "scope": r.scope,
                    "name": r.name,
                    "period": r.period,
                    "currency": currency,
                    "limit": _money(r.limit),
                    "used": _money(r.used),
                    "remaining": _money(r.remaining),
                    "soft_percent": _percent(r.budget.soft_percent) if r.budget else None,
                    "resets_at": _time(r.resets_at),
                }
            )
            continue
        limits.append(
            {
                "scope": r.scope,
                "name": r.name,
                "kind": r.kind,
                "period": r.period,
                "label": r.words,
                "limit": r.limit,
                "used": r.used,
                "remaining": r.remaining,
                "resets_at": _time(r.resets_at),
            }
        )
    return {
        "scope": scope,
        "name": name,
        "now": utc_seconds(now),
        "limits": limits,
        "budgets": budgets,
        "truncated": truncated,
        "spend": _spend_json(spend, period, since),
    }


def _spend_json(spend: Spend | None, period: str, since: datetime) -> dict[str, Any]:
    found = spend or Spend()
    out: dict[str, Any] = {
        "period": period,
        "since": utc_seconds(since),
        **_totals(found.total),
        "audited": spend is not None,  # False: the audit log is off, nothing to sum
        "records_read": found.scanned,
        "truncated": found.truncated,
    }
    for field, name, groups in (
        ("by_key", "key_id", found.by_key),
        ("by_deployment", "deployment", found.by_deployment),
        ("by_app", "app", found.by_app),
    ):
        ranked = sorted(groups.items(), key=lambda kv: (-kv[1].cost, -kv[1].tokens, kv[0]))
        out[field] = [{name: n, **_totals(t)} for n, t in ranked[:MAX_SPEND_ROWS]]
        out[f"{field}_truncated"] = len(ranked) > MAX_SPEND_ROWS or found.groups_truncated
    return out


def _totals(t: Totals) -> dict[str, Any]:
    return {"requests": t.requests, "tokens": t.tokens, "cost": round(t.cost, 6)}


_TIME = {"type": ["string", "null"], "format": "date-time"}
_SUMS = {
    "requests": {"type": "integer"},
    "tokens": {"type": "integer"},
    "cost": {"type": "number"},
}


def _group(name: str) -> dict[str, Any]:
    return {
        "type": "array",
        "maxItems": MAX_SPEND_ROWS,
        "items": {"type": "object", "properties": {name: {"type": "string"}, **_SUMS}},
    }


#: The answer's JSON schema (``#/components/schemas/Usage`` in the OpenAPI description).
USAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "At most one of app, key, team, deployment; none: every app with usage or "
    "rules (at most 200), every team and deployment. Reading changes no counter.",
    "properties": {
        "scope": {"type": "string", "enum": ["app", "key", "team", "deployment", "all"]},
        "name": {"type": ["string", "null"]},
        "now": {"type": "string", "format": "date-time"},
        "truncated": {"type": "boolean", "description": "some limits were left out"},
        "limits": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "scope": {"enum": ["key", "app", "team", "deployment", "global"]},
                    "name": {"type": ["string", "null"]},
                    "kind": {"enum": ["tokens", "requests", "concurrent"]},
                    "period": {"enum": ["minute", "hour", "day", "month", None]},
                    "label": {"type": "string", "example": "tokens per minute"},
                    "limit": {"type": "integer"},
                    "used": {"type": "integer"},
                    "remaining": {"type": "integer"},
                    "resets_at": _TIME,
                },
            },
        },
        "budgets": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "scope": {"enum": ["key", "app", "team"]},
                    "name": {"type": "string"},
                    "period": {"enum": ["day", "month"]},
                    "currency": {"type": "string"},
                    "limit": {"type": "number"},
                    "used": {"type": "number"},
                    "remaining": {"type": "number"},
                    "soft_percent": {"type": ["number", "null"]},
                    "resets_at": _TIME,
                },
            },
        },
        "spend": {
            "type": "object",
            "properties": {
                "period": {"enum": list(PERIODS)},
                "since": {"type": "string", "format": "date-time"},
                **_SUMS,
                "audited": {"type": "boolean", "description": "false: the audit log is off"},
                "records_read": {"type": "integer"},
                "truncated": {"type": "boolean", "description": "more records than were read"},
                "by_key": _group("key_id"),
                "by_deployment": _group("deployment"),
                "by_app": _group("app"),
                "by_key_truncated": {"type": "boolean"},
                "by_deployment_truncated": {"type": "boolean"},
                "by_app_truncated": {"type": "boolean"},
            },
        },
    },
}
