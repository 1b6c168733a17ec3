"""Connection hygiene on the gateway's ports: how long a client may take, how many
connections it may hold.

aiohttp's server bounds the size of the request line and of the headers and closes a
kept-alive connection after ``keepalive_timeout`` of silence, but a client that sends half a
header line, or a body one byte a minute, otherwise holds its connection (a file descriptor)
for as long as it likes. :class:`GuardedProtocol` adds, for every connection of a port:

* **caps**: at most ``max_connections`` open connections on the port and ``max_per_address``
  from one client address (an IPv6 client counts per /64; a trusted proxy counts towards the
  port's cap only). A connection beyond either is answered at once with a canned 503 or 429
  and closed, before a byte of it is read;
* **header timeout**: a request's line and headers must be complete ``header_timeout_s``
  after the connection was accepted, or after the first byte of a later request on a
  kept-alive connection; if not, a canned 408 and the connection is closed;
* **body timeout**: once the headers are in, the body must keep arriving at
  ``min_body_rate`` bytes/s after a grace of ``body_grace_s`` and be complete within
  ``body_timeout_s``; if not, whoever reads it gets :class:`~keyguard.errors.RequestTimeout`
  (a 408 in the port's error shape) and the connection is closed after that answer. Time in
  which the gateway itself stopped reading (its buffer is full) is not counted against the
  client;
* **idle timeout** (aiohttp's keep-alive timeout): a kept-alive connection that starts no
  request for ``idle_timeout_s`` is closed.

Timers are set once per connection and re-armed lazily: a busy kept-alive connection costs a
clock read per request, not a timer.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from ..errors import RequestTimeout
from .headers import SERVER_HEADER

__all__ = [
    "ConnectionGuard",
    "ConnectionLimits",
    "GuardedAppRunner",
    "GuardedProtocol",
    "GuardedServer",
    "address_key",
    "connection_budget",
]

_RESERVED_FDS = 256  # the store, log files, DNS, the limits backend, webhooks, the admin port


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 75.0
    body_grace_s: float = 10.0
    body_timeout_s: float = 60.0
    min_body_rate: float = 16384.0  # bytes per second
    max_connections: int = 10_000
    max_per_address: int = 1024


def connection_budget(nofile: int, *, upstream: int, others: int = 0) -> int:
    """The connections a port may hold so that the process keeps descriptors for its
    ``upstream`` pool, ``others`` (another port's cap) and its own files (0: none left)."""
    return max(0, nofile - upstream - others - _RESERVED_FDS)


def address_key(host: str, trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """What one client address counts as: the IPv4 address, the /64 of an IPv6 address;
    ``""`` (not counted) for a trusted proxy and for a peer that is not an IP address."""
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in trusted):
        return ""
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _answer(status: str, code: str, message: str, retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 answer in Azure's error shape that closes the connection."""
    body = orjson.dumps({"error": {"code": code, "message": message}})
    head = [
        f"HTTP/1.1 {status}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in SERVER_HEADER.items()),
    ]
    if retry_after is not None:
        head += [f"Retry-After: {retry_after}", f"retry-after-ms: {retry_after * 1000}"]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


_BUSY = _answer(
    "503 Service Unavailable",
    "ServiceUnavailable",
    "This gateway has as many open connections as it accepts; retry after 1 second.",
    retry_after=1,
)
_CROWDED = _answer(
    "429 Too Many Requests",
    "429",
    "Too many open connections from your address; reuse or close idle connections, or retry "
    "after 1 second.",
    retry_after=1,
)
_HEADERS_LATE = _answer(
    "408 Request Timeout",
    "RequestTimeout",
    "The request line and headers did not arrive in time; send each request whole.",
)


class ConnectionGuard:
    """One port's connection counts, and its refusals and timeouts (for metrics)."""

    def __init__(self, limits: ConnectionLimits, *, trusted_proxies: Sequence[str] = ()) -> None:
        self.limits = limits
        self.open = 0
        self.refused = 0
        self.header_timeouts = 0
        self.body_timeouts = 0
        self._per_address: dict[str, int] = {}
        trusted = tuple(ipaddress.ip_network(c) for c in trusted_proxies)
        key = functools.partial(address_key, trusted=trusted)
        self._key = functools.lru_cache(maxsize=4096)(key)  # parsing is µs; peers repeat

    def admit(self, peer: Any) -> str | bytes:
        """The address the new connection counts against, or the answer that refuses it."""
        if self.open >= self.limits.max_connections:
            self.refused += 1
            return _BUSY
        address = self._key(peer[0]) if isinstance(peer, tuple) and peer else ""
        if address:
            count = self._per_address.get(address, 0)
            if count >= self.limits.max_per_address:
                self.refused += 1
                return _CROWDED
            self._per_address[address] = count + 1
        self.open += 1
        return address

    def release(self, address: str) -> None:
        self.open -= 1
        if address:
            count = self._per_address.pop(address) - 1
            if count:
                self._per_address[address] = count

    def late_body(self) -> RequestTimeout:
        self.body_timeouts += 1
        limits = self.limits
        return RequestTimeout(
            "The request body did not arrive in time: send it at "
            f"{limits.min_body_rate:.0f} bytes per second or more, all of it within "
            f"{limits.body_timeout_s:g} seconds.",
            reason="body_timeout",
        )


class GuardedProtocol(RequestHandler):
    """aiohttp's connection handler with the caps and timeouts of a :class:`ConnectionGuard`."""

    __slots__ = ("_guard", "_address", "_header_since", "_header_timer", "_body", "_body_since",
                 "_body_timer")  # fmt: skip

    def __init__(self, manager: web.Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._address: str | None = None  # set once admitted
        self._header_since: float | None = None  # when the current request's first byte came
        self._header_timer: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None  # a body still arriving
        self._body_since = 0.0
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        admitted = self._guard.admit(transport.get_extra_info("peername"))
        if isinstance(admitted, bytes):  # refused: answered and closed, nothing read
            self._close = True
            self._header_since = 0.0  # no header clock either
            cast(asyncio.Transport, transport).write(admitted)
            transport.close()
            return
        self._address = admitted
        super().connection_made(transport)
        self._header_clock()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._address is not None:
            self._guard.release(self._address)
            self._address = None
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None
        self._body = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        body = self._body
        if body is None:
            if self._header_since is None and data:  # the first byte of the next request
                self._header_clock()
            super().data_received(data)
            return
        super().data_received(data)
        if body.is_eof():
            self._body = None

    def headers_complete(self, payload: StreamReader) -> None:
        """Called as each request is handed to the handler: its headers are in."""
        self._header_since = None
        if payload.is_eof():  # no body, or it came with the headers: the usual case
            return
        loop = self._loop
        self._body, self._body_since = payload, loop.time()
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = loop.call_at(self._body_since + self._guard.limits.body_grace_s,
                                        self._body_due)  # fmt: skip

    def _header_clock(self) -> None:
        loop = self._loop
        self._header_since = now = loop.time()
        if self._header_timer is None:
            due = now + self._guard.limits.header_timeout_s
            self._header_timer = loop.call_at(due, self._headers_due)

    def _headers_due(self) -> None:
        self._header_timer = None
        since = self._header_since
        if since is None or self.transport is None:
            return
        loop, timeout = self._loop, self._guard.limits.header_timeout_s
        now = loop.time()
        if now < since + timeout:
            self._header_timer = loop.call_at(since + timeout, self._headers_due)
            return
        waiter = self._waiter  # pending while the connection waits for a request's headers
        if waiter is None or waiter.done():  # a pipelined request waits behind one handled
            self._header_timer = loop.call_at(now + timeout, self._headers_due)
            return
        self._guard.header_timeouts += 1
        self.transport.write(_HEADERS_LATE)
        self.force_close()

    def _body_due(self) -> None:
        self._body_timer = None
        body = self._body
        if body is None or self.transport is None:
            return
        if body.is_eof() or body.exception() is not None:
            self._body = None
            return
        loop, limits = self._loop, self._guard.limits
        now = loop.time()
        if self._reading_paused:  # our buffer is full: the time is ours, not the client's
            self._body_since = now
            self._body_timer = loop.call_at(now + limits.body_grace_s, self._body_due)
            return
        since = self._body_since
        due = min(
            since + limits.body_timeout_s,
            since + limits.body_grace_s + body.total_bytes / limits.min_body_rate,
        )
        if now < due:
            self._body_timer = loop.call_at(due, self._body_due)
            return
        self._body = None
        body.set_exception(self._guard.late_body())


class GuardedServer(web.Server):
    """``web.Server`` whose connections are guarded by ``guard`` (one guard per port)."""

    protocol: type[GuardedProtocol] = GuardedProtocol

    def __init__(self, handler: Any, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        kwargs["keepalive_timeout"] = guard.limits.idle_timeout_s
        super().__init__(handler, **kwargs)
        self.guard = guard
        make_request = self.request_factory

        def request_factory(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> web.BaseRequest:
            protocol.headers_complete(payload)  # type: ignore[attr-defined]  # ours, see __call__
            return make_request(message, payload, protocol, writer, task)

        self.request_factory = request_factory

    def __call__(self) -> RequestHandler:
        kwargs: dict[str, Any] = self._kwargs
        return self.protocol(self, guard=self.guard, loop=self._loop, **kwargs)


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` for an application whose port is guarded by ``guard``."""

    def __init__(self, app: web.Application, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # the application started and frozen
        kwargs: dict[str, Any] = plain._kwargs
        return GuardedServer(
            plain.request_handler,
            guard=self.guard,
            request_factory=plain.request_factory,
            loop=plain._loop,
            **kwargs,
        )
