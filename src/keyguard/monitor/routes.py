"""Admin-port route of the monitor: ``GET /metrics``.

``/metrics`` is the Prometheus exposition (OpenMetrics when the scraper asks for it); like the
health checks it needs no credential, and it carries no secret and no unbounded label.
Incidents are listed by the admin API (``GET /admin/alerts``), like every other admin read.
"""

from __future__ import annotations

from aiohttp import web

from ..metrics.registry import GatewayMetrics

__all__ = ["add_monitor_routes"]


def add_monitor_routes(app: web.Application, *, metrics: GatewayMetrics | None) -> None:
    """Add ``/metrics`` to the admin application ``app``."""

    async def metrics_route(request: web.Request) -> web.Response:
        if metrics is None:
            raise web.HTTPNotFound()
        body, content_type = metrics.render(request.headers.get("Accept"))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    app.router.add_get("/metrics", metrics_route)
