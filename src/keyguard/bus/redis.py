"""The replica bus over Redis pub/sub (redis-py's asyncio client, off the hot path).

One connection subscribes to the ``keyguard:bus`` channel (under the configured prefix) and
hands every message it verifies to the topic's handlers; publishing goes through a bounded
queue and one sender task, so a request never waits for Redis. The connection is re-opened
with back-off when it breaks; messages sent meanwhile are dropped and counted (the replicas'
periodic reloads still converge).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..core.tasks import cancel_and_wait
from .base import Handler, Message, sign, verify

__all__ = ["RedisBus"]

log = logging.getLogger("keyguard.bus")

_QUEUE = 10_000  # messages waiting to be sent
_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)


class RedisBus:
    def __init__(
        self,
        url: str,
        key: bytes,
        replica: str,
        *,
        password: str | None = None,
        channel: str = "keyguard:bus",
    ) -> None:
        self._url = url
        self._password = password
        self._key = key
        self._replica = replica
        self._channel = channel
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self.dropped = 0
        self.sent = 0
        self.received = 0

    def subscribe(self, topic: str, handler: Handler) -> None:
        self._handlers[topic].append(handler)

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(sign(self._key, Message(topic, self._replica, data)))
        except asyncio.QueueFull:
            self.dropped += 1

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="keyguard: bus listener"),
            asyncio.create_task(self._send(), name="keyguard: bus sender"),
        ]
        with contextlib.suppress(TimeoutError):  # start even with Redis down: it reconnects
            await asyncio.wait_for(self._ready.wait(), 5)

    async def close(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []

    async def _listen(self) -> None:
        failures = 0
        while True:
            client = self._client()
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    self._ready.set()
                    failures = 0
                    async for item in pubsub.listen():
                        data = item.get("data")
                        if isinstance(data, bytes):
                            self._deliver(data)
            except (RedisError, OSError) as exc:
                log.warning("bus: the subscription to Redis broke (%s); reconnecting", exc)
            finally:
                await client.aclose()
            await asyncio.sleep(_BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)])
            failures += 1

    def _client(self, socket_timeout: float | None = None) -> aioredis.Redis:
        return aioredis.Redis.from_url(
            self._url,
            socket_connect_timeout=5,
            socket_timeout=socket_timeout,
            password=self._password,
        )

    def _deliver(self, raw: bytes) -> None:
        message = verify(self._key, raw)
        if message is None:
            self.dropped += 1
            return
        if message.sender == self._replica:
            return
        self.received += 1
        for handler in self._handlers.get(message.topic, ()):
            try:
                handler(message)
            except Exception:
                log.exception("bus: a %s handler failed", message.topic)

    async def _send(self) -> None:
        failures = 0
        while True:
            client = self._client(socket_timeout=5)
            try:
                while True:
                    raw = await self._queue.get()
                    await client.publish(self._channel, raw)
                    self.sent += 1
                    failures = 0
            except (RedisError, OSError) as exc:
                self.dropped += 1
                log.warning("bus: publishing to Redis failed (%s); reconnecting", exc)
            finally:
                await client.aclose()
            await asyncio.sleep(_BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)])
            failures += 1
