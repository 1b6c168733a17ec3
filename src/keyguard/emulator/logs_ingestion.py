"""The Azure Monitor Logs Ingestion API (what Microsoft Sentinel reads), as
``azure-monitor-ingestion`` calls it.

On the emulator's own origin (use it as the data collection endpoint, over TLS: the SDK sends
bearer tokens only over https)::

    POST /dataCollectionRules/{dcrId}/streams/{stream}?api-version=2023-01-01
    Authorization: Bearer <token for https://monitor.azure.com>
    Content-Encoding: gzip            (optional)
    [{...}, {...}]                    a JSON array of objects, the stream's rows

answers ``204`` and keeps the rows (:class:`LogsIngestionState`, ``received[(dcr, stream)]``,
at most :data:`MAX_ROWS` rows in all, the oldest forgotten first) so tests assert on what
arrived. Refused, in Azure's error shape: no or a bad token, or a token for another audience
(401); no or another api-version (400); a body over 1 MB, compressed or not (413; the gzip
stream is inflated at most that far, so a compression bomb costs nothing); a body that is not
a JSON array of objects (400); an identity without the role Monitoring Metrics Publisher (403;
every identity has it unless :attr:`LogsIngestionState.publishers` names some client ids); an
unknown rule or stream (404; every rule and stream is known unless
:attr:`LogsIngestionState.rules` names some).

Faults, the data plane's format (:mod:`.faults`: ``status`` 429 or 5xx with ``retry_after``,
``latency_ms``, ``count`` or ``duration_s``), posted with the control token to ``POST
/_emulator/logs-ingestion/faults``; ``GET /_emulator/logs-ingestion/received`` returns the
rows kept per ``dcrId/stream``.
"""

from __future__ import annotations

import asyncio
import hmac
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from keyguard.emulator import errors
from keyguard.emulator.appkeys import STATE_KEY
from keyguard.emulator.auth import bearer_value
from keyguard.emulator.control import fault_handler
from keyguard.emulator.faults import Fault, parse_fault, take_fault
from keyguard.emulator.signing import TokenError

__all__ = [
    "LOGS_KEY",
    "LogsIngestionState",
    "MAX_BODY_BYTES",
    "MAX_ROWS",
    "MONITOR_AUDIENCES",
    "register",
]

MONITOR_AUDIENCES = frozenset({"https://monitor.azure.com", "https://monitor.azure.com/"})
API_VERSION = "2023-01-01"
MAX_BODY_BYTES = 1024 * 1024  # Azure's limit per call, compressed or not
MAX_ROWS = 200_000  # rows kept for tests, in all
_TARGET = "logs-ingestion"


@dataclass(slots=True)
class LogsIngestionState:
    """Rows received per (rule, stream), calls answered, pending faults."""

    received: dict[tuple[str, str], deque[dict[str, Any]]] = field(default_factory=dict)
    #: the rules and their streams that exist; ``None``: any
    rules: dict[str, frozenset[str]] | None = None
    #: the client ids holding Monitoring Metrics Publisher on the rules; ``None``: every one
    publishers: frozenset[str] | None = None
    calls: int = 0  # every POST, refused ones included
    accepted: int = 0  # POSTs answered 204
    _faults: tuple[Fault, ...] = ()
    _count: int = 0
    _rows: int = 0

    def rows(self, dcr: str, stream: str) -> list[dict[str, Any]]:
        return list(self.received.get((dcr, stream), ()))

    def keep(self, dcr: str, stream: str, rows: list[dict[str, Any]]) -> None:
        kept = self.received.setdefault((dcr, stream), deque())
        kept.extend(rows)
        self._rows += len(rows)
        while self._rows > MAX_ROWS:  # the oldest go first, from the fullest stream
            fullest = max(self.received.values(), key=len)
            fullest.popleft()
            self._rows -= 1

    def add_fault(self, raw: Mapping[str, Any], now: float) -> Fault:
        """Queue a fault (``ValueError`` when invalid)."""
        self._count += 1
        fault = parse_fault(raw, f"li-fault-{self._count}", now)
        self._faults = (*self._faults, fault)
        return fault

    def take_fault(self, now: float) -> Fault | None:
        fault, self._faults = take_fault(self._faults, _TARGET, now)
        return fault

    def reset(self) -> None:
        self.received.clear()
        self._faults = ()
        self._rows = 0
        self.calls = self.accepted = 0


LOGS_KEY: web.AppKey[LogsIngestionState] = web.AppKey("emulator_logs", LogsIngestionState)


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> errors.AzureError:
    return errors.AzureError(status, {"error": {"code": code, "message": message}}, headers)


def _authenticate(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE_KEY]
    token = bearer_value(request.headers.get("Authorization"))
    if token is None:
        raise _error(401, "InvalidAuthenticationToken", "The bearer token is missing.")
    try:
        return state.signer.verify(token, now=state.clock(), audiences=MONITOR_AUDIENCES)
    except TokenError as exc:
        message = {
            "expired": "The provided authentication token has expired.",
            "audience": "The provided authentication token is not valid for this resource: "
            "its audience must be https://monitor.azure.com.",
        }.get(exc.reason, "The provided authentication token is not valid.")
        raise _error(401, "InvalidAuthenticationToken", message) from exc


async def _read_bounded(request: web.Request) -> bytes:
    """The body, inflated (aiohttp inflates a gzip body as it is read), refused beyond 1 MB
    either way: the inflating stops there, so a compression bomb costs nothing."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip"):
        raise _error(415, "UnsupportedMediaType", f"Content-Encoding {encoding!r} is not taken.")
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise errors.payload_too_large(MAX_BODY_BYTES)
    body = b""
    try:
        while len(body) <= MAX_BODY_BYTES:
            chunk = await request.content.read(MAX_BODY_BYTES + 1 - len(body))
            if not chunk:
                break
            body += chunk
    except web.HTTPException:
        raise
    except Exception as exc:  # aiohttp's payload error: a gzip stream that does not inflate
        raise _error(400, "InvalidContent", "The gzip body cannot be read.") from exc
    if len(body) > MAX_BODY_BYTES:
        raise errors.payload_too_large(MAX_BODY_BYTES)
    return body


async def upload(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    logs = request.app[LOGS_KEY]
    logs.calls += 1
    body = await _read_bounded(request)  # read whatever the answer (keep-alive stays sound)
    claims = _authenticate(request)
    if request.query.get("api-version") != API_VERSION:
        raise _error(400, "InvalidApiVersion", f"The api-version must be {API_VERSION}.")
    dcr, stream = request.match_info["dcr"], request.match_info["stream"]
    if logs.publishers is not None and claims.get("appid") not in logs.publishers:
        raise _error(
            403,
            "OperationFailed",
            "The authentication token provided does not have access to ingest data for the "
            f"data collection rule with immutable Id '{dcr}'.",
        )
    if logs.rules is not None and stream not in logs.rules.get(dcr, frozenset()):
        raise _error(
            404, "NotFound", f"Data collection rule {dcr} with stream {stream} was not found."
        )
    fault = logs.take_fault(state.clock())
    if fault is not None:
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.status is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.status == 429 else {}
            code = "TooManyRequests" if fault.status == 429 else "ServiceUnavailable"
            raise _error(fault.status, code, fault.message or "Injected fault.", headers)
    try:
        rows = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _error(400, "InvalidContent", "The body is not valid JSON.") from exc
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise _error(400, "InvalidContent", "The body must be a JSON array of objects.")
    logs.keep(dcr, stream, rows)
    logs.accepted += 1
    return web.Response(status=204)


def _authorized(request: web.Request) -> bool:
    presented = request.headers.get("x-emulator-token", "").encode()
    return hmac.compare_digest(presented, request.app[STATE_KEY].config.control_token.encode())


def _add_fault(request: web.Request, raw: dict[str, Any]) -> Fault:
    return request.app[LOGS_KEY].add_fault(raw, request.app[STATE_KEY].clock())


async def control_received(request: web.Request) -> web.Response:
    if not _authorized(request):
        return web.json_response({"error": {"code": "Unauthorized"}}, status=401)
    logs = request.app[LOGS_KEY]
    body = {f"{dcr}/{stream}": list(rows) for (dcr, stream), rows in logs.received.items()}
    return web.Response(body=orjson.dumps({"received": body}), content_type="application/json")


def register(app: web.Application) -> None:
    """Add the Logs Ingestion state and routes to the emulator's application."""
    app[LOGS_KEY] = LogsIngestionState()
    router = app.router
    router.add_post("/dataCollectionRules/{dcr}/streams/{stream}", upload)
    router.add_post("/_emulator/logs-ingestion/faults", fault_handler(_add_fault))
    router.add_get("/_emulator/logs-ingestion/received", control_received)
