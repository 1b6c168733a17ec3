"""Admin-port routes of the monitor: ``GET /metrics`` and ``GET /admin/alerts``.

``/metrics`` is the Prometheus exposition (OpenMetrics when the scraper asks for it); like the
health checks it needs no credential, and it carries no secret and no unbounded label.
``/admin/alerts`` lists incidents with their evidence, newest first
(``?since=24h&status=open&limit=100``), the same data as ``keyguard alerts list --json``. It is
an admin route: ``require_admin`` checks the caller (the admin API's credentials); without it
the route fails closed with 401.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from ..durations import parse_duration
from ..errors import GatewayError
from ..metrics.registry import GatewayMetrics
from .store import MonitorStore

__all__ = ["add_monitor_routes", "RequireAdmin"]

RequireAdmin = Callable[[web.Request], Awaitable[None]]


def add_monitor_routes(
    app: web.Application,
    *,
    metrics: GatewayMetrics | None,
    store: MonitorStore | None,
    require_admin: RequireAdmin | None = None,
) -> None:
    """Add ``/metrics`` and ``/admin/alerts`` to the admin application ``app``."""

    async def metrics_route(request: web.Request) -> web.Response:
        if metrics is None:
            raise web.HTTPNotFound()
        body, content_type = metrics.render(request.headers.get("Accept"))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def alerts_route(request: web.Request) -> web.Response:
        if require_admin is None:
            return web.json_response(
                {"error": "admin authentication is not configured on this gateway"}, status=401
            )
        await require_admin(request)
        if store is None:
            return web.json_response({"incidents": []})
        try:
            since = request.query.get("since")
            start = datetime.now(UTC) - parse_duration(since) if since else None
            limit = max(1, min(1000, int(request.query.get("limit", "100"))))
        except ValueError as exc:
            return web.json_response({"error": str(exc)[:200]}, status=400)
        status = request.query.get("status")
        if status not in (None, "open", "resolved"):
            return web.json_response({"error": "status must be open or resolved"}, status=400)
        try:
            incidents = await store.incidents(since=start, status=status, limit=limit)
        except GatewayError:
            return web.json_response({"error": "the store is unavailable"}, status=503)
        return web.json_response({"incidents": [i.to_json() for i in incidents]})

    app.router.add_get("/metrics", metrics_route)
    app.router.add_get("/admin/alerts", alerts_route)
