"""The audit writer: records queued in memory by the gateway, written in batches off the hot path.

``append`` is synchronous and O(1) (a deque append): the proxy's recorder and the event bus call
it. A background task (:meth:`AuditWriter.run`) writes what is queued every
``flush_interval_s`` as one transaction (:class:`~.store.AuditStore`), sends the committed
records to the optional SIEM sink, and seals the chain with a signed checkpoint every
``checkpoint_interval_s``. :meth:`close` writes everything still queued and a last checkpoint:
a graceful stop loses nothing; a crash loses at most what was queued since the last flush.

A store outage keeps records queued (up to ``max_queue``; beyond it the oldest are dropped and
counted in ``dropped``) and retries at the next flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..errors import StorageError
from .chain import Checkpoint, Record, canonical
from .settings import AuditSettings
from .signing import Signer
from .sinks import Sink
from .store import AuditStore, iso, iso_at

__all__ = ["AuditWriter"]

log = logging.getLogger("keyguard.audit")


class AuditWriter:
    def __init__(
        self,
        store: AuditStore,
        settings: AuditSettings,
        *,
        signer: Signer | None = None,
        sink: Sink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._settings = settings
        self._signer = signer
        self._sink = sink
        self._clock = clock
        # (time, kind, canonical JSON): plain values only, which the garbage collector does
        # not track, however many records wait for the next flush
        self._queue: deque[tuple[float, str, str]] = deque()
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._last_checkpoint = clock()
        self._sealed_seq = -1
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self.last_flush_s = 0.0
        self.last_seq = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def append(self, kind: str, data: dict[str, Any], at: float | None = None) -> None:
        """Queue a record (``kind``: request, admin, security); never blocks, never raises."""
        if len(self._queue) >= self._settings.max_queue:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append((self._clock() if at is None else at, kind, canonical(data)))

    async def run(self) -> None:
        """Flush every ``flush_interval_s`` and checkpoint on schedule, until :meth:`close`."""
        interval = self._settings.flush_interval_s
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
            if self._stop.is_set():
                break
            await self._tick()

    async def _tick(self) -> None:
        try:
            await self.flush()
            if self._clock() - self._last_checkpoint >= self._settings.checkpoint_interval_s:
                await self.checkpoint()
        except StorageError as exc:
            self.failures += 1
            log.error("audit: cannot write to the store (%s); %d queued", exc, self.queued)
        except Exception:
            self.failures += 1
            log.exception("audit: unexpected error while writing")

    async def flush(self) -> int:
        """Write everything queued now, in batches; return how many records were written."""
        total = 0
        async with self._lock:
            while self._queue:
                n = min(len(self._queue), self._settings.batch_size)
                batch = [self._queue.popleft() for _ in range(n)]
                items = [(iso_at(at), kind, data) for at, kind, data in batch]
                started = time.perf_counter()
                try:
                    records = await self._store.append(items)
                except BaseException:
                    self._queue.extendleft(reversed(batch))  # retried at the next flush
                    raise
                self.last_flush_s = time.perf_counter() - started
                self.written += len(records)
                total += len(records)
                self.last_seq = records[-1].seq
                await self._emit(records, [])
                if len(records) < n:  # the store became busy part-way: the rest next time
                    self._queue.extendleft(reversed(batch[len(records) :]))
                    break
        return total

    async def checkpoint(self) -> Checkpoint | None:
        """Sign the chain's head, unless it is already sealed."""
        self._last_checkpoint = self._clock()
        if self._signer is None:
            return None
        head = await self._store.head()
        if head is None or head[0] == self._sealed_seq:
            return None
        cp = self._signer.sign(head[0], head[1], iso(datetime.fromtimestamp(self._clock(), UTC)))
        await self._store.add_checkpoint(cp)
        self._sealed_seq = head[0]
        await self._emit([], [cp])
        return cp

    async def _emit(self, records: list[Record], checkpoints: list[Checkpoint]) -> None:
        if self._sink is None:
            return
        lines = [canonical(r.to_json()) for r in records]
        lines += [canonical(c.to_json()) for c in checkpoints]
        try:
            await asyncio.to_thread(self._sink.write, lines)
        except OSError as exc:
            log.warning("audit: the %s sink failed: %s", self._settings.sink, exc)

    async def close(self) -> None:
        """Stop the loop; write everything still queued and a final checkpoint."""
        self._stop.set()
        for _ in range(3):
            try:
                await self.flush()
                await self.checkpoint()
                break
            except StorageError as exc:
                log.error("audit: final flush failed (%s); %d records lost", exc, self.queued)
        self._store.close()
        if self._sink is not None:
            self._sink.close()
