"""The admin port: separate from the proxy port, never reachable through it.

Today it serves health checks for orchestrators: ``GET /healthz`` (the process is up) and
``GET /readyz`` (the store answers). Management happens through the CLI, which calls the same
service functions as any admin endpoint will.
"""

from __future__ import annotations

from aiohttp import web

from ..errors import StorageError
from ..store.base import Store

__all__ = ["create_admin_app"]


def create_admin_app(store: Store) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        try:
            await store.get_key("000000000000")
        except StorageError:
            return web.json_response({"status": "store unavailable"}, status=503)
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
