"""The replica bus over PostgreSQL ``LISTEN/NOTIFY``, for replicas that share a PostgreSQL store
and no Redis (``cluster.bus: postgresql://...``, usually the store's own URL).

One asyncpg connection listens on the channel and hands every notification's payload to the
:class:`~.receive.Receiver` (bounded, verified, fresh, once); publishing goes through a bounded
queue and one sender task (``SELECT pg_notify(channel, payload)`` on a second connection), so a
request never waits for the database. A lost connection is re-opened with back-off; messages
meanwhile are dropped and counted, ``connected`` is false, and the periodic reloads converge.
Any role that may connect to the database may ``NOTIFY`` on any channel: only the signature
makes a message count, as with Redis. PostgreSQL caps a payload at 8,000 bytes; the bus's
messages are at most :data:`~.base.MAX_MESSAGE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from ..core.tasks import cancel_and_wait
from .base import MAX_MESSAGE, Handler, Message, new_nonce, sign
from .receive import Receiver

__all__ = ["PostgresBus"]

log = logging.getLogger("keyguard.bus")

_QUEUE = 10_000
_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)
_CHECK_S = 1.0  # how often the listening connection is checked


def _dsn(url: str) -> str:
    """asyncpg's DSN from the store's SQLAlchemy-style URL."""
    scheme, sep, rest = url.partition("://")
    return "postgresql://" + rest if sep else url


class PostgresBus:
    def __init__(
        self,
        url: str,
        key: bytes,
        replica: str,
        *,
        channel: str = "keyguard:bus",
        listen: bool = True,
        flush_s: float = 1.0,
    ) -> None:
        self._dsn = _dsn(url)
        self._key = key
        self._replica = replica
        self._channel = channel
        self._listen_too = listen
        self._flush_s = flush_s
        self.receiver = Receiver(key, replica)
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self._lost = 0
        self.sent = 0
        self.connected = False

    @property
    def received(self) -> int:
        return self.receiver.received

    @property
    def dropped(self) -> int:
        return self._lost + self.receiver.dropped

    @property
    def lost(self) -> int:
        return self._lost

    def subscribe(self, topic: str, handler: Handler) -> None:
        self.receiver.subscribe(topic, handler)

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        message = Message(topic, self._replica, data, time.time(), new_nonce())
        raw = sign(self._key, message)
        if len(raw) > MAX_MESSAGE:  # the others would refuse it: never sent
            self._lost += 1
            return
        try:
            self._queue.put_nowait(raw.decode())
        except asyncio.QueueFull:
            self._lost += 1

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._send(), name="keyguard: bus sender")]
        if not self._listen_too:
            return
        self._tasks.append(asyncio.create_task(self._listen(), name="keyguard: bus listener"))
        with contextlib.suppress(TimeoutError):  # start even with the database down
            await asyncio.wait_for(self._ready.wait(), 5)

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._flush_s):
                if self._tasks:
                    await self._queue.join()
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        self.connected = False

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self.receiver.deliver(payload.encode())

    async def _listen(self) -> None:
        failures = 0
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=5)
                await conn.add_listener(self._channel, self._notified)
                self.connected = True
                self._ready.set()
                failures = 0
                while not conn.is_closed():
                    await asyncio.sleep(_CHECK_S)
                log.warning("bus: the PostgreSQL connection closed; reconnecting")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("bus: listening on PostgreSQL failed (%s); reconnecting", exc)
            finally:
                self.connected = False
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            await asyncio.sleep(_BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)])
            failures += 1

    async def _send(self) -> None:
        failures = 0
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=5)
                while True:
                    payload = await self._queue.get()
                    try:
                        await conn.execute("SELECT pg_notify($1, $2)", self._channel, payload)
                    finally:
                        self._queue.task_done()
                    self.sent += 1
                    failures = 0
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                self._lost += 1
                log.warning("bus: notifying on PostgreSQL failed (%s); reconnecting", exc)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            await asyncio.sleep(_BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)])
            failures += 1
