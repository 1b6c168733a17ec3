"""The console's pages (``GET``): each asks the admin service (or the audit view) for what it
shows and renders one template. Nothing here changes anything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from ..admin.activity import WINDOWS
from ..admin.service import key_json
from ..durations import parse_duration
from ..errors import BadRequest
from ..policy.store import PolicyConflict
from .app import View
from .charts import charts_of
from .usage import usage_of

__all__ = ["audit", "incidents", "key", "keys", "overview", "policy", "policy_page"]

EXPIRING = timedelta(days=7)
IDLE = timedelta(days=7)


async def overview(v: View) -> web.Response:
    window = v.request.query.get("window", "day")
    if window not in WINDOWS:
        window = "day"
    activity = await v.console.audit.activity(v.actor, window)
    open_incidents = await v.service.list_incidents(v.actor, status="open", limit=10)
    return v.page(
        "overview.html",
        window=window,
        windows=list(WINDOWS),
        activity=activity,
        charts=charts_of(activity),
        incidents=[i.to_json() for i in open_incidents],
    )


async def keys(v: View) -> web.Response:
    show_all = v.request.query.get("all") == "1"
    app = v.request.query.get("app") or None
    records = await v.service.list_keys(v.actor, app=app, include_revoked=show_all)
    now = v.service.now()
    expiring = await v.service.expiring_keys(v.actor, EXPIRING)
    week = await v.console.audit.activity(v.actor, "week")
    rows = [key_json(k, now) for k in records]
    idle = [
        r
        for r, k in zip(rows, records, strict=True)
        if r["state"] == "active" and k.created_at <= now - IDLE and k.key_id not in week.seen
    ]
    app_usage = await usage_of(v.service, v.actor, "app", app) if app and records else None
    apps: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        apps.setdefault(row["app"], []).append(row)
    return v.page(
        "keys.html",
        apps=dict(sorted(apps.items())),
        show_all=show_all,
        expiring=[(key_json(e.record, now), e.expires_at, e.by_max_age) for e in expiring],
        idle=idle,
        app_filter=app,
        app_usage=app_usage,
        usage_cut=week.truncated,
    )


async def key(v: View) -> web.Response:
    record = await v.service.get_key(v.actor, v.request.match_info["key_id"])
    now = v.service.now()
    usage = await usage_of(v.service, v.actor, "key", record.key_id)
    return v.page("key.html", key=key_json(record, now), usage=usage)


async def incidents(v: View) -> web.Response:
    status = v.request.query.get("status") or None
    if status not in (None, "open", "acknowledged", "resolved", "unresolved"):
        status = None
    found = await v.service.list_incidents(v.actor, status=status, limit=200)
    return v.page("incidents.html", incidents=[i.to_json() for i in found], shown=status)


def _time(value: str, name: str, now: datetime) -> datetime:
    """``24h`` (that long before ``now``) or an ISO 8601 time (UTC without an offset)."""
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # not a time, or one beyond the calendar in UTC
        raise BadRequest(
            f"'{name}': use a duration (24h, 7d) or a time (2026-01-31T00:00:00Z)",
            reason="invalid_query",
        ) from None


async def audit(v: View) -> web.Response:
    q = v.request.query
    now = v.service.now()
    form = {name: q.get(name, "")[:100] for name in ("since", "until", "kind", "key", "app")}
    since = _time(form["since"] or "24h", "since", now)
    until = _time(form["until"], "until", now) if form["until"] else None
    records, truncated = await v.console.audit.search(
        v.actor,
        since=since,
        until=until,
        kind=form["kind"] or None,
        key_id=form["key"] or None,
        app=form["app"] or None,
    )
    broken = sum(1 for r in records if r["intact"] != "yes")
    try:
        chain: dict[str, Any] | None = await v.service.audit_verification(v.actor)
    except BadRequest:  # no store to verify here
        chain = None
    return v.page(
        "audit.html",
        form=form,
        records=records,
        truncated=truncated,
        broken=broken,
        chain=chain,
    )


async def policy_page(
    v: View, explained: dict[str, Any] | None, asked: dict[str, str]
) -> web.Response:
    current: dict[str, Any] | None
    try:
        current = await v.service.get_policy(v.actor)
    except PolicyConflict as exc:
        current = None
        message = exc.message
    else:
        message = ""
    effective = current["effective"] if current else {}
    return v.page(
        "policy.html",
        message=message,
        managed=current["managed"] if current else False,
        version=current["managed_version"] if current else None,
        roles=effective.get("roles", {}),
        bindings=effective.get("bindings", []),
        explained=explained,
        asked=asked,
    )


async def policy(v: View) -> web.Response:
    return await policy_page(v, None, {"principal": "", "request": ""})
