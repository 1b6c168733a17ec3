"""What every transport of the replica bus shares: a bounded send queue drained by one sender
task, a listener task handing messages to the :class:`~.receive.Receiver`, the counts, and a
close that sends what is queued first (for ``flush_s`` at most).

A transport subclasses :class:`QueuedBus` and writes its two loops: ``_listen`` (open the
subscription, set ``connected`` and ``_ready``, deliver every message) and ``_send`` (take
from ``_queue``, publish, ``task_done``); both re-open their connection with
:meth:`_pause` between attempts. Publishing never waits: a full queue or an oversized message
is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from ..core.tasks import cancel_and_wait
from .base import MAX_MESSAGE, Handler, Message, new_nonce, sign
from .receive import Receiver

__all__ = ["QueuedBus"]

_QUEUE = 10_000  # messages waiting to be sent
_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)
_READY_S = 5.0  # start waits this long for the subscription, then goes on without it


class QueuedBus:
    def __init__(
        self, key: bytes, replica: str, *, channel: str, listen: bool, flush_s: float
    ) -> None:
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
        with contextlib.suppress(TimeoutError):  # start with the backend down: it reconnects
            await asyncio.wait_for(self._ready.wait(), _READY_S)

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._flush_s):
                if self._tasks:
                    await self._queue.join()
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        self.connected = False

    @staticmethod
    async def _pause(failures: int) -> None:
        """The back-off before re-opening a connection after ``failures`` failures."""
        await asyncio.sleep(_BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)])

    async def _listen(self) -> None:  # pragma: no cover - every transport has its own
        raise NotImplementedError

    async def _send(self) -> None:  # pragma: no cover - every transport has its own
        raise NotImplementedError
