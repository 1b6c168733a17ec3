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
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from .transport import QueuedBus

__all__ = ["PostgresBus"]

log = logging.getLogger("keyguard.bus")

_CHECK_S = 1.0  # how often the listening connection is checked


def _dsn(url: str) -> str:
    """asyncpg's DSN from the store's SQLAlchemy-style URL."""
    scheme, sep, rest = url.partition("://")
    return "postgresql://" + rest if sep else url


class PostgresBus(QueuedBus):
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
        super().__init__(key, replica, channel=channel, listen=listen, flush_s=flush_s)
        self._dsn = _dsn(url)

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
            await self._pause(failures)
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
                        await conn.execute(
                            "SELECT pg_notify($1, $2)", self._channel, payload.decode()
                        )
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
            await self._pause(failures)
            failures += 1
