"""The incoming side of the transport seam over an ASGI server (:mod:`keyguard.core.transport`),
written for Granian's ASGI interface (see :mod:`.granian_server` for the server itself).

:class:`AsgiProxy` is the ASGI application: each HTTP request becomes an :class:`AsgiIncoming`
(the scope, read once: headers as a case-insensitive multidict with repeats kept, the target as
sent), is handed to the pipeline's handler, and the answer it returns is sent: an
:class:`AsgiWhole` in two messages, an :class:`AsgiStream` as the relay writes it.

What the server does not do, the adapter does:

* **body cap**: :meth:`AsgiIncoming.read_body` stops reading at the cap, whatever the framing
  (a ``Content-Length`` or chunks), and returns ``None``;
* **body timeouts** (the settings :mod:`.connections` enforces on aiohttp's connections): the
  body must keep arriving at ``min_body_rate`` bytes/s after ``body_grace_s`` and be complete
  within ``body_timeout_s`` of the request's start, timed on the adapter's own reads; if not,
  :class:`~keyguard.errors.RequestTimeout` (408), and the answer closes the connection;
* **a client gone**: Granian's ``send`` returns quietly once the client has left, and says so
  only through ``receive()`` (``http.disconnect``). While an answer streams, one task per
  stream waits on ``receive()``; once it sees the disconnect, the next :meth:`AsgiStream.write`
  raises ``ConnectionResetError`` (the seam's ``ClientGone``). The task ends with the stream,
  and reads at most what is left of a body the pipeline did not read (bounded by the cap);
* **back-pressure**: each ``send`` of a chunk returns once the server has taken it; Granian's
  ASGI interface waits for the client's socket (its RSGI interface does not).

A verified client certificate is not exposed by Granian's ASGI scope (2.8.9: no ``tls``
extension), so :meth:`AsgiIncoming.peer_certificate` is always ``None``: mutual TLS
authentication needs the aiohttp server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any, Literal

from multidict import CIMultiDict, CIMultiDictProxy

from ..core.transport import Answer, Incoming, StreamedAnswer, media_type
from ..errors import BadRequest
from .connections import ConnectionGuard

__all__ = ["AsgiIncoming", "AsgiProxy", "AsgiStream", "AsgiWhole", "close_connection"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[Incoming], Awaitable[Answer | StreamedAnswer]]

_CLOSE = (b"connection", b"close")
_YIELD_EVERY = 8  # writes between two turns of the loop given to the disconnect watcher
_WATCH_LIMIT = 65536  # bytes of an unread body the disconnect watcher reads and drops


class AsgiIncoming:
    """One ASGI HTTP request as the seam's :class:`~keyguard.core.transport.Incoming`."""

    __slots__ = ("_scope", "_receive", "_send", "_guard", "_started", "_stream", "headers",
                 "gone", "close")  # fmt: skip

    def __init__(
        self,
        scope: Mapping[str, Any],
        receive: Receive,
        send: Send,
        guard: ConnectionGuard,
        started: float,
    ) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self._stream: AsgiStream | None = None
        self._guard = guard
        self._started = started  # the loop's time when the request reached the application
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(
            CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        )
        self.gone = False  # receive() said the client has left
        self.close = False  # the answer closes the connection (a body timed out)

    @property
    def method(self) -> str:
        method: str = self._scope["method"]
        return method

    @property
    def raw_path(self) -> str:
        scope = self._scope
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope["query_string"]
        return (raw + b"?" + query if query else raw).decode("latin-1")

    @property
    def path(self) -> str:
        path: str = self._scope["path"]
        return path

    @property
    def remote(self) -> str | None:
        client = self._scope.get("client")
        return str(client[0]) if client else None

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        if value is None or not value.isdigit():
            return None
        return int(value)

    @property
    def content_type(self) -> str:
        return media_type(self.headers.get("content-type"))

    def peer_certificate(self) -> bytes | None:
        return None  # Granian's ASGI scope carries no client certificate (module docstring)

    async def read_body(self, limit: int) -> bytes | None:
        guard = self._guard
        limits = guard.limits
        loop = asyncio.get_running_loop()
        total_due = self._started + limits.body_timeout_s
        grace_due = self._started + limits.body_grace_s
        rate = limits.min_body_rate
        parts: list[bytes] = []
        size = 0
        declared = self.content_length  # the server holds the body to it: once in, it is whole
        receive = self._receive
        while True:
            due = min(total_due, grace_due + size / rate)
            if loop.time() >= due:
                raise self._late()
            try:
                async with asyncio.timeout_at(due):
                    message = await receive()
            except TimeoutError:
                raise self._late() from None
            if message["type"] != "http.request":  # http.disconnect
                self.gone = True
                raise BadRequest(
                    "The client closed the connection before its request body was complete.",
                    reason="client_gone",
                )
            chunk: bytes = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    return None  # the rest is never read
                parts.append(chunk)
            if not message.get("more_body", False) or size == declared:
                return parts[0] if len(parts) == 1 else b"".join(parts)

    def _late(self) -> Exception:
        self.close = True
        return self._guard.late_body()

    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> AsgiWhole:
        return AsgiWhole(status, headers, body)

    def stream(self, status: int, headers: Mapping[str, str]) -> AsgiStream:
        self._stream = stream = AsgiStream(self, self._send, status, headers)
        return stream

    def finish(self) -> None:
        """The request is over: stop watching for the client's departure."""
        if self._stream is not None:
            self._stream.stop_watching()

    async def watch(self, limit: int) -> None:
        """Wait for the client to leave (``http.disconnect``), reading and dropping at most
        ``limit`` bytes of a body left unread; then set :attr:`gone`."""
        receive, left = self._receive, limit
        while True:
            message = await receive()
            if message["type"] != "http.request":
                self.gone = True
                return
            left -= len(message.get("body", b""))
            if left < 0:  # a body beyond the cap: stop watching, the answer still goes out
                return


class AsgiWhole:
    """A whole answer as the seam's :class:`~keyguard.core.transport.Answer`."""

    __slots__ = ("status", "headers", "body", "close")

    streamed: Literal[False] = False

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers: CIMultiDict[str] = CIMultiDict(headers)
        self.body = body
        self.close = False


class AsgiStream:
    """A streamed answer as the seam's :class:`~keyguard.core.transport.StreamedAnswer`."""

    __slots__ = ("status", "headers", "started", "ended", "close", "_request", "_send",
                 "_watcher", "_writes")  # fmt: skip

    streamed: Literal[True] = True

    def __init__(
        self, request: AsgiIncoming, send: Send, status: int, headers: Mapping[str, str]
    ) -> None:
        self.status = status
        self.headers: CIMultiDict[str] = CIMultiDict(headers)
        self.started = False
        self.ended = False
        self.close = False
        self._request = request
        self._send = send
        self._writes = 0
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.started:
            return
        request = self._request
        if not request.gone:
            self._watcher = asyncio.create_task(request.watch(_WATCH_LIMIT))
        self.started = True
        await self._send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": _raw_headers(self.headers.items(), self.close or request.close),
            }
        )

    async def write(self, data: bytes) -> None:
        if self._request.gone:
            raise ConnectionResetError("the client has closed the connection")
        await self._send({"type": "http.response.body", "body": data, "more_body": True})
        self._writes += 1
        if not self._writes % _YIELD_EVERY:  # a send to a client gone returns at once: let
            await asyncio.sleep(0)  # the watcher see the disconnect between such sends

    async def write_eof(self, data: bytes = b"") -> None:
        if self.ended:
            return
        self.ended = True
        self.stop_watching()
        if self._request.gone:
            raise ConnectionResetError("the client has closed the connection")
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    def stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()


def close_connection(answer: Answer | StreamedAnswer) -> None:
    """Have ``answer`` (not yet sent) close its connection (``Connection: close``)."""
    assert isinstance(answer, AsgiWhole | AsgiStream)
    answer.close = True


def _raw_headers(items: Iterable[tuple[str, str]], close: bool) -> list[tuple[bytes, bytes]]:
    out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in items]
    if close:
        out.append(_CLOSE)
    return out


class AsgiProxy:
    """The proxy port's ASGI application: each HTTP request through ``handler``."""

    def __init__(self, handler: Handler, guard: ConnectionGuard) -> None:
        self._handler = handler
        self.guard = guard

    async def __call__(self, scope: Mapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no lifespan (the gateway starts itself), no websockets
            return
        loop = asyncio.get_running_loop()
        request = AsgiIncoming(scope, receive, send, self.guard, loop.time())
        try:
            answer = await self._handler(request)
            if isinstance(answer, AsgiStream):
                if not answer.started:
                    await answer.start()
                await answer.write_eof()
                return
            assert isinstance(answer, AsgiWhole)
            body = answer.body
            headers = _raw_headers(answer.headers.items(), answer.close or request.close)
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": answer.status,
                        "headers": headers})  # fmt: skip
            await send({"type": "http.response.body", "body": body, "more_body": False})
        except ConnectionResetError:
            return  # the client left: nothing more to send
        finally:
            request.finish()
