"""The admin port: separate from the proxy port, never reachable through it.

* ``GET /healthz`` (the process is up), ``GET /livez`` (the process works) and ``GET /readyz``
  (it can serve: the store, the limits backend, an upstream for every deployment, not
  draining; the reasons in the body), for orchestrators, without a credential;
* ``GET /admin/openapi.json``: the OpenAPI description of the admin API, without a credential;
* the admin API (:mod:`.api`): keys, admin tokens, policy; every call authenticated with an
  admin token or an Entra ID token, checked against its role, and recorded as an
  ``AdminAction`` with the actor.

The operator console (:mod:`keyguard.console`: ``/`` and its pages) is added to this
application by the wiring; its answers carry their own Content-Security-Policy, which the
headers below do not replace.

Hardening: its own listener (bind it to a private address), its own credentials (the proxy's
Keyguard keys are refused here), JSON bodies of at most 1 MiB, ``Host`` checked against
``access.allowed_hosts`` when set (DNS rebinding), ``Cache-Control: no-store`` and
``nosniff`` on every answer, and errors in one JSON shape that never carries a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware

from .. import __version__
from ..core.netaddr import host_allowed
from ..errors import ConfigurationError, RequestError, StorageError
from ..policy.document import PolicyInvalid
from ..store.base import Store
from .api import MAX_BODY, AdminApi
from .openapi import openapi_document

__all__ = ["HealthProbe", "create_admin_app"]

log = logging.getLogger("keyguard.admin")

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


class HealthProbe(Protocol):
    def live(self) -> tuple[bool, dict[str, Any]]: ...

    async def ready(self) -> tuple[bool, dict[str, Any]]: ...


def _error(status: int, code: str, message: str, **more: object) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **more}}, status=status)


def _middlewares(allowed_hosts: frozenset[str]) -> list[Middleware]:
    @web.middleware
    async def guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if not host_allowed(request.headers.getall("Host", ()), allowed_hosts):
            response: web.StreamResponse = _error(
                400, "HostNotAllowed", "This admin port does not serve that host name."
            )
        else:
            response = await _answer(request, handler)
        for name, value in _HEADERS.items():  # the console's pages set their own policy
            response.headers.setdefault(name, value)
        return response

    return [guard]


async def _answer(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as exc:
        return _error(exc.status, exc.code, exc.message)
    except PolicyInvalid as exc:
        return _error(400, "InvalidPolicy", str(exc), problems=exc.problems)
    except ConfigurationError as exc:
        return _error(400, "BadRequest", str(exc))
    except StorageError as exc:  # its message only: the driver error it chains quotes SQL
        log.error("admin: %s (%s %r)", exc, request.method, request.path[:200])
        return _error(503, "ServiceUnavailable", "The store is unavailable; retry shortly.")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, str(exc.status), exc.reason)
        raise
    except Exception:
        log.exception("admin: unexpected error on %s %s", request.method, request.path)
        return _error(500, "InternalServerError", "Keyguard hit an internal error.")


def create_admin_app(
    store: Store,
    *,
    api: AdminApi | None = None,
    allowed_hosts: Collection[str] = (),
    health: HealthProbe | None = None,
) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if health is not None:
            ok, body = await health.ready()
            return web.json_response(body, status=200 if ok else 503)
        try:
            await store.get_key("000000000000")
        except StorageError:
            return web.json_response({"status": "store unavailable"}, status=503)
        return web.json_response({"status": "ready"})

    async def livez(_: web.Request) -> web.Response:
        ok, body = health.live() if health is not None else (True, {"status": "ok"})
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application(
        client_max_size=MAX_BODY, middlewares=_middlewares(frozenset(allowed_hosts))
    )
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/livez", livez)
    if api is not None:
        description = openapi_document(api.endpoints, version=__version__)

        async def openapi(_: web.Request) -> web.Response:
            return web.json_response(description)

        app.router.add_get("/admin/openapi.json", openapi)
        api.add_routes(app)
    return app
