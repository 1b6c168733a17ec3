"""A minimal pipelined Redis client for the limits hot path: one connection, RESP2, no pool.

Why not redis-py here: measured on this project's benchmark, one ``EVALSHA`` through
redis-py's asyncio client costs ~0.3 ms of CPU (connection-pool checkout, command wrappers,
retry machinery), which alone breaks the limits budget (Redis within 30% of the gateway's
throughput per core). This client writes each command straight to one socket and matches
replies in order (Redis answers a connection's commands in the order it received them), for a
few microseconds per call. It speaks exactly what the limits backend needs: commands whose
replies are integers, strings, errors, nil and (nested) arrays. redis-py remains the tool for
everything else (tests, scripts).

Failures: a broken connection fails every command in flight with ``ConnectionError``; the
next command reconnects. A command with no reply within ``timeout`` fails with
``TimeoutError`` (its late reply is read and dropped, keeping the order).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import unquote, urlsplit

__all__ = ["RespClient", "RespError", "bulks", "encode"]

Reply = Any


class RespError(Exception):
    """An error reply from Redis (``-ERR ...``, ``-NOSCRIPT ...``)."""


def bulks(items: Sequence[str]) -> bytes:
    """``items`` as RESP bulk strings, without the array header: a command is
    ``b"*%d\r\n" % count`` followed by its bulk strings, so a part shared by many commands
    can be encoded once."""
    text = "".join([f"${len(t)}\r\n{t}\r\n" for t in items])
    if text.isascii():  # one character per byte: the lengths are right
        return text.encode()
    return b"".join([_bulk(t.encode()) for t in items])


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def encode(args: Sequence[object]) -> bytes:
    """One command: the array header and its bulk strings (``str()`` of each argument, bytes
    as they are)."""
    head = b"*%d\r\n" % len(args)
    if any(isinstance(a, bytes) for a in args):
        return head + b"".join(
            [_bulk(a if isinstance(a, bytes) else str(a).encode()) for a in args]
        )
    return head + bulks([a if isinstance(a, str) else str(a) for a in args])


class _Incomplete(Exception):
    pass


def _parse(buf: bytes, pos: int) -> tuple[Reply, int]:
    """One reply starting at ``pos``: (value, next position); ``_Incomplete`` if cut short."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line = buf[pos : pos + 1], buf[pos + 1 : end]
    pos = end + 2
    if kind == b":":
        return int(line), pos
    if kind == b"+":
        return line, pos
    if kind == b"-":
        return RespError(line.decode(errors="replace")), pos
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _Incomplete
        return buf[pos : pos + size], pos + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    raise ConnectionError(f"unexpected reply from redis: {kind!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[Reply]] = deque()
        self._buf = b""
        self._out: list[bytes] = []
        self.lost: BaseException | None = None

    def send(self, data: bytes) -> None:
        """Queue ``data``; everything queued in one loop iteration goes out in one write."""
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        pos = 0
        while pos < len(buf):
            try:
                value, pos_next = _parse(buf, pos)
            except _Incomplete:
                break
            pos = pos_next
            fut = self.waiting.popleft()
            if fut.done():
                continue  # timed out already: drop its late reply
            if isinstance(value, RespError):
                fut.set_exception(value)
            else:
                fut.set_result(value)
        self._buf = buf[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError("redis closed the connection")
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(ConnectionError("the connection to redis was lost"))


def _expire(fut: asyncio.Future[Reply]) -> None:  # a reply that never came
    if not fut.done():
        fut.set_exception(TimeoutError("redis did not answer in time"))


class RespClient:
    """``await client.call("EVALSHA", sha, 2, "k1", "k2", 5)``; one connection, pipelined."""

    def __init__(self, url: str, *, timeout: float, password: str | None = None) -> None:
        parts = urlsplit(url)
        self._scheme = parts.scheme
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._path = parts.path
        self._db = int(parts.path.lstrip("/") or 0) if parts.scheme != "unix" else 0
        self._username = unquote(parts.username) if parts.username else None
        self._password = password
        self._timeout = timeout
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._proto is not None and self._proto.lost is None:
                return self._proto
            async with asyncio.timeout(self._timeout):
                if self._scheme == "unix":
                    _, proto = await loop.create_unix_connection(_Protocol, self._path)
                else:
                    context = ssl.create_default_context() if self._scheme == "rediss" else None
                    _, proto = await loop.create_connection(
                        _Protocol, self._host, self._port, ssl=context
                    )
            self._proto = proto
            if self._password is not None:
                auth = (self._username, self._password) if self._username else (self._password,)
                await self.call("AUTH", *auth)
            if self._db:
                await self.call("SELECT", self._db)
            return proto

    async def call(self, *args: Any) -> Reply:
        return await self.call_encoded(encode(args))

    async def call_encoded(self, command: bytes) -> Reply:
        """Send one command already encoded (:func:`encode`, or parts made with :func:`bulks`)."""
        proto = self._proto
        if proto is None or proto.lost is not None or proto.transport is None:
            proto = await self._connect()
        assert proto.transport is not None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Reply] = loop.create_future()
        proto.waiting.append(fut)
        proto.send(command)
        timer = loop.call_later(self._timeout, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()

    async def close(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()
