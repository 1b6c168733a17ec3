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

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..core.tasks import cancel_and_wait
from .base import MAX_MESSAGE, Handler, Message, new_nonce, sign
from .receive import Receiver

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
        listen: bool = True,
        flush_s: float = 1.0,
    ) -> None:
        self._url = url
        self._password = password
        self._key = key
        self._replica = replica
        self._channel = channel
        self._listen_too = listen
        self._flush_s = flush_s
        self.receiver = Receiver(key, replica)
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self._lost = 0  # queued messages that could not be sent
        self.sent = 0
        self.connected = False  # the subscription is open

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
            self._queue.put_nowait(raw)
        except asyncio.QueueFull:
            self._lost += 1

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._send(), name="keyguard: bus sender")]
        if not self._listen_too:
            return
        self._tasks.append(asyncio.create_task(self._listen(), name="keyguard: bus listener"))
        with contextlib.suppress(TimeoutError):  # start even with Redis down: it reconnects
            await asyncio.wait_for(self._ready.wait(), 5)

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._flush_s):
                if self._tasks:
                    await self._queue.join()
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        self.connected = False

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
            await asyncio.sleep(_BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)])
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
            await asyncio.sleep(_BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)])
            failures += 1
