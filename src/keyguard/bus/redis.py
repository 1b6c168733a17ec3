"""The replica bus over Redis pub/sub (redis-py's asyncio client, off the hot path).

One connection subscribes to the ``keyguard:bus`` channel (under the configured prefix) and
hands every message to the :class:`~.receive.Receiver` (bounded, verified, fresh, once);
publishing goes through a bounded queue and one sender task, so a request never waits for
Redis. The connection is re-opened with back-off when it breaks; messages sent meanwhile are
dropped and counted, ``connected`` turns false (a metric), and the replicas' periodic reloads
still converge. A publisher only (the CLI: ``listen=False``) opens no subscription, and its
:meth:`close` sends what is queued first, for ``flush_s`` at most.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .transport import QueuedBus

__all__ = ["RedisBus"]

log = logging.getLogger("keyguard.bus")


class RedisBus(QueuedBus):
    def __init__(
        self,
        url: str,
        key: bytes,
        replica: str,
        *,
        password: str | None = None,
        channel: str = "keyguard:bus",
        listen: bool = True,
        flush_s: float = 1.0,
    ) -> None:
        super().__init__(key, replica, channel=channel, listen=listen, flush_s=flush_s)
        self._url = url
        self._password = password

    async def _listen(self) -> None:
        failures = 0
        while True:
            client = self._client()
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    self.connected = True
                    self._ready.set()
                    failures = 0
                    async for item in pubsub.listen():
                        data = item.get("data")
                        if isinstance(data, bytes):
                            self.receiver.deliver(data)
            except (RedisError, OSError) as exc:
                log.warning("bus: the subscription to Redis broke (%s); reconnecting", exc)
            finally:
                self.connected = False
                await client.aclose()
            await self._pause(failures)
            failures += 1

    def _client(self, socket_timeout: float | None = None) -> aioredis.Redis:
        return aioredis.Redis.from_url(
            self._url,
            socket_connect_timeout=5,
            socket_timeout=socket_timeout,
            password=self._password,
        )

    async def _send(self) -> None:
        failures = 0
        while True:
            client = self._client(socket_timeout=5)
            try:
                while True:
                    raw = await self._queue.get()
                    try:
                        await client.publish(self._channel, raw)
                    finally:
                        self._queue.task_done()
                    self.sent += 1
                    failures = 0
            except (RedisError, OSError) as exc:
                self._lost += 1
                log.warning("bus: publishing to Redis failed (%s); reconnecting", exc)
            finally:
                await client.aclose()
            await self._pause(failures)
            failures += 1
