"""Test and operations endpoints under ``/_emulator/`` (never part of Azure's surface).

All but ``health`` and ``images`` require ``x-emulator-token: <config.control_token>``:

* ``GET  /_emulator/health``        ``{"status": "ok"}`` (no token; for readiness probes)
* ``GET  /_emulator/usage``         totals per deployment, per credential slot, overall
* ``GET  /_emulator/keys``          ``{"key1", "key2"}`` (for scripts that cannot use ARM)
* ``POST /_emulator/faults``        queue a fault (see :mod:`keyguard.emulator.faults`) → 201
* ``GET  /_emulator/faults``        pending faults; ``DELETE`` clears them
* ``POST /_emulator/reset``         forget usage, limiter windows and faults; with
  ``{"keys": true}`` also regenerate both keys
* ``GET  /_emulator/images/{hex}.png``  the PNG behind an image ``url`` (no token, like a SAS URL)
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from keyguard.emulator.appkeys import STATE_KEY
from keyguard.emulator.faults import Fault, fault_view
from keyguard.emulator.media import png_image
from keyguard.emulator.state import EmulatorState

__all__ = ["CONTROL_HEADER", "fault_handler", "routes"]

CONTROL_HEADER = "x-emulator-token"


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _error(status: int, code: str, message: str) -> web.Response:
    return _json(status, {"error": {"code": code, "message": message}})


def _authorized(request: web.Request) -> EmulatorState | None:
    state = request.app[STATE_KEY]
    presented = request.headers.get(CONTROL_HEADER, "").encode()
    if hmac.compare_digest(presented, state.config.control_token.encode()):
        return state
    return None


def _denied() -> web.Response:
    return _error(401, "Unauthorized", f"The {CONTROL_HEADER} header is missing or wrong.")


async def _body(request: web.Request) -> dict[str, Any] | None:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


async def health(request: web.Request) -> web.Response:
    return _json(200, {"status": "ok"})


async def usage(request: web.Request) -> web.Response:
    state = _authorized(request)
    return _denied() if state is None else _json(200, state.usage_view())


async def keys(request: web.Request) -> web.Response:
    state = _authorized(request)
    if state is None:
        return _denied()
    key1, key2 = state.keys()
    return _json(200, {"key1": key1, "key2": key2})


async def add_fault(request: web.Request) -> web.Response:
    state = _authorized(request)
    if state is None:
        return _denied()
    body = await _body(request)
    if body is None:
        return _error(400, "BadRequest", "The body must be a JSON object.")
    try:
        fault = state.add_fault(body)
    except ValueError as exc:
        return _error(400, "BadRequest", str(exc))
    return _json(201, fault_view(fault))


async def list_faults(request: web.Request) -> web.Response:
    state = _authorized(request)
    if state is None:
        return _denied()
    return _json(200, {"faults": [fault_view(f) for f in state.faults()]})


async def clear_faults(request: web.Request) -> web.Response:
    state = _authorized(request)
    if state is None:
        return _denied()
    state.clear_faults()
    return _json(200, {"faults": []})


async def reset(request: web.Request) -> web.Response:
    state = _authorized(request)
    if state is None:
        return _denied()
    body = await _body(request)
    if body is None:
        return _error(400, "BadRequest", "The body must be a JSON object.")
    state.reset()
    if body.get("keys") is True:
        state.regenerate("key1")
        state.regenerate("key2")
    return _json(200, {"reset": True})


async def image(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        seed = bytes.fromhex(name)
    except ValueError:
        return _error(404, "404", "Resource not found")
    return web.Response(body=png_image(seed), content_type="image/png")


def fault_handler(
    add: Callable[[web.Request, dict[str, Any]], Fault],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``POST`` of a fault to one service's own queue (``add`` validates and queues it,
    raising ``ValueError``): the control token, a JSON object, ``201 {"id"}`` or 400."""

    async def handler(request: web.Request) -> web.Response:
        if _authorized(request) is None:
            return _denied()
        body = await _body(request)
        if body is None:
            return _error(400, "BadRequest", "The body must be a JSON object.")
        try:
            fault = add(request, body)
        except ValueError as exc:
            return _error(400, "BadRequest", str(exc))
        return _json(201, {"id": fault.id})

    return handler


def routes() -> list[web.RouteDef]:
    return [
        web.get("/_emulator/health", health),
        web.get("/_emulator/usage", usage),
        web.get("/_emulator/keys", keys),
        web.post("/_emulator/faults", add_fault),
        web.get("/_emulator/faults", list_faults),
        web.delete("/_emulator/faults", clear_faults),
        web.post("/_emulator/reset", reset),
        web.get("/_emulator/images/{name}.png", image),
    ]
