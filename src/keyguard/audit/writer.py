"""The audit writer: it holds its own head, seals each batch, never seals what it did not write.

Records wait in a bounded :class:`~.queue.RecordQueue` (serialised one by one as they come).
:meth:`AuditWriter.tick` (every ``flush_interval_s``, on a :class:`~keyguard.core.tasks.
PeriodicTask`) writes them in batches; each batch is committed together with an Ed25519
checkpoint over its last record, so a record no checkpoint covers is never Keyguard's. Every
``checkpoint_interval_s`` the newest checkpoint also goes to the anchor outside the store
(:mod:`.anchor`), and with the optional SIEM sink every committed record and checkpoint.

The writer extends the chain from the head it holds, not from whatever the store's last row
is. :meth:`open` surveys the end of the log first (:mod:`.tail`): it links to the newest record
a valid checkpoint seals, and when something is wrong (records after it that nothing seals, a
checkpoint forged or sealing a deleted record, the anchor past the log's end) it starts its
segment there, leaving the rest out, and raises a critical ``audit_tampered`` security event.
A head it did not expect while running is taken only when a valid checkpoint seals it
(another writer's batch); otherwise it surveys again and opens a new segment.
:meth:`close` writes everything queued, a closing record and its checkpoint, and anchors it:
a graceful stop loses nothing; a crash loses at most what was queued since the last flush.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..errors import StorageError
from ..events import Event, SecurityEvent
from .anchor import FileAnchor
from .chain import Appended, Checkpoint, HeadMoved, Link, Position, Record, canonical
from .queue import RecordQueue
from .segments import KIND, close_data, open_data, plan_open
from .settings import AuditSettings
from .signing import Signer, signature_checker
from .sinks import Sink
from .store import AuditStore, iso, iso_at
from .tail import survey

__all__ = ["AuditWriter"]

log = logging.getLogger("keyguard.audit")
_ATTEMPTS = 5  # surveys before a write gives up until the next flush (the head keeps moving)
_OPEN_ATTEMPTS = 40  # surveys before opening gives up (a replica starting beside busy ones)
_OPEN_PAUSE_S = 0.05  # at most this long, at random, between two: out of step with the others

Item = tuple[str, str, str]


class AuditWriter:
    def __init__(
        self,
        store: AuditStore,
        settings: AuditSettings,
        *,
        signer: Signer,
        sink: Sink | None = None,
        anchor: FileAnchor | None = None,
        emit: Callable[[Event], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.id = secrets.token_hex(8)  # names this writer's segment
        self._store = store
        self._settings = settings
        self._signer = signer
        self._check = signature_checker({signer.key_id: signer.public})
        self._sink = sink
        self._anchor = anchor
        self._emit = emit
        self._clock = clock
        self._queue = RecordQueue(settings, clock=clock, alert=emit)
        self._lock = asyncio.Lock()
        self._head: Position | None = None  # where this writer's chain ends; None: not open
        self._newest: Checkpoint | None = None  # the last checkpoint it committed
        self._anchored = 0  # seq of the last checkpoint anchored
        self._last_anchor = clock()
        self._closed = False
        self.written = 0  # records committed, its segment's own included
        self.failures = 0
        self.findings = 0  # tampering found (each finding)
        self.last_flush_s = 0.0
        self.last_seq = 0

    # -- the queue ------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def dropped(self) -> int:
        return self._queue.dropped

    @property
    def rejected(self) -> int:
        return self._queue.rejected

    @property
    def full(self) -> bool:
        """O(1): the queue is 90% full (see ``on_full``)."""
        return self._queue.full

    def room_for(self, more: int) -> bool:
        """O(1): whether ``more`` records would still leave the queue under the 90% mark."""
        return self._queue.room_for(more)

    @property
    def head(self) -> Position | None:
        return self._head

    def append(self, kind: str, data: Any, at: float | None = None) -> bool:
        """Queue a record (``kind``: request, admin, security); never blocks, never raises;
        ``False`` when it was dropped (counted)."""
        return self._queue.put(kind, data, at)

    # -- writing --------------------------------------------------------------------------

    async def open(self) -> None:
        """Survey the end of the log and start this writer's segment (done by the first
        flush otherwise)."""
        async with self._lock:
            if self._head is None:
                await self._open()

    async def _open(self) -> None:
        anchor = self._anchor
        anchored = await asyncio.to_thread(anchor.newest, self._check) if anchor else None
        for attempt in range(_OPEN_ATTEMPTS):
            if attempt:  # the others append every flush_interval_s: fall out of step with them
                await asyncio.sleep(random.uniform(0, _OPEN_PAUSE_S))
            tail = await survey(self._store, self._check, anchored=anchored)
            after, found = plan_open(tail)
            item = self._item(KIND, open_data(self.id, after, found))
            try:
                done = await self._store.append([item], Link(tail.head, self._seal, after))
            except HeadMoved:
                continue  # another writer wrote meanwhile: look again
            self._advance(done)
            await self._copy(done)
            if found:
                self._tampered(found, after)
            return
        raise StorageError("store: the audit log's head keeps moving; not opened")

    async def flush(self) -> int:
        """Write everything queued now, in batches; return how many records were written."""
        total = 0
        async with self._lock:
            if self._head is None:
                await self._open()
            queue = self._queue
            while queue.waiting():
                batch = queue.take(self._settings.batch_size)
                items = [(iso_at(at), kind, data) for at, kind, data in batch]
                started = time.perf_counter()
                try:
                    done, extra = await self._write(items)
                except BaseException:
                    queue.give_back(batch)  # retried at the next flush
                    raise
                self.last_flush_s = time.perf_counter() - started
                n = len(done.records) - extra
                total += n
                queue.written(n)
                if n < len(batch):  # the store became busy part-way: the rest next time
                    queue.give_back(batch[n:])
                    break
            queue.settle()
        return total

    async def _write(self, items: list[Item]) -> tuple[Appended, int]:
        """Append after this writer's head; ``extra``: a segment's open record written first."""
        assert self._head is not None
        expect = after = self._head
        extra = 0
        found: list[str] = []
        for _ in range(_ATTEMPTS):
            try:
                accept = None if extra else self._accept
                done = await self._store.append(items, Link(expect, self._seal, after, accept))
            except HeadMoved:
                tail = await survey(self._store, self._check, own=self._head)
                after, found = plan_open(tail, self._head)
                items = items[extra:]
                if not found:  # another writer's batch, sealed: link after it
                    expect = after = tail.head
                    extra = 0
                    continue
                items = [self._item(KIND, open_data(self.id, after, found)), *items]
                expect, extra = tail.head, 1
                continue
            self._advance(done)
            await self._copy(done)
            if extra:
                self._tampered(found, after)
            return done, extra
        raise StorageError("store: the audit log's head keeps moving; retrying later")

    def _accept(self, head: Position, checkpoints: list[Checkpoint]) -> bool:
        """Another writer's head: taken when it is past this writer's and sealed by a valid
        checkpoint (a shorter log than this writer left is a cut, never taken)."""
        own = self._head
        return (
            own is not None
            and head.seq > own.seq
            and any(cp.hash == head.hash and self._check(cp) for cp in checkpoints)
        )

    def _seal(self, record: Record) -> Checkpoint:
        return self._signer.sign(record.seq, record.hash, self._now_iso())

    def _advance(self, done: Appended) -> None:
        if not done.records:
            return
        self._head = done.records[-1].position
        self.last_seq = self._head.seq
        self.written += len(done.records)
        if done.checkpoints:
            self._newest = done.checkpoints[-1]

    async def _copy(self, done: Appended) -> None:
        """Send what was committed to the SIEM sink, if any."""
        if self._sink is None or not done.records:
            return
        lines = [canonical(r.to_json()) for r in done.records]
        lines += [canonical(c.to_json()) for c in done.checkpoints]
        try:
            await asyncio.to_thread(self._sink.write, lines)
        except OSError as exc:
            log.warning("audit: the %s sink failed: %s", self._settings.sink, exc)

    def _tampered(self, found: list[str], after: Position) -> None:
        self.findings += len(found)
        for finding in found:
            log.critical("audit: %s", finding)
        log.critical(
            "audit: this writer (%s) started a new segment after seq %d; the audit log was "
            "changed by someone without the signing key",
            self.id,
            after.seq,
        )
        if self._emit is not None:
            more = f" (and {len(found) - 1} more findings)" if len(found) > 1 else ""
            self._emit(
                SecurityEvent(
                    datetime.fromtimestamp(self._clock(), UTC),
                    "audit_tampered",
                    "critical",
                    f"The audit log was changed by someone without the signing key: "
                    f"{found[0]}{more}. A new segment starts after seq {after.seq}.",
                    evidence={"writer": self.id, "after_seq": after.seq, "findings": found[:10]},
                )
            )

    def _item(self, kind: str, data: dict[str, Any]) -> Item:
        return (self._now_iso(), kind, canonical(data))

    def _now_iso(self) -> str:
        return iso(datetime.fromtimestamp(self._clock(), UTC))

    # -- the loop, the anchor, the end ----------------------------------------------------

    async def tick(self) -> None:
        """One pass of the background loop: flush, and anchor on schedule."""
        if self._closed:
            return
        try:
            await self.flush()
            if self._clock() - self._last_anchor >= self._settings.checkpoint_interval_s:
                await self.anchor()
        except StorageError as exc:
            self.failures += 1
            log.error("audit: cannot write to the store (%s); %d queued", exc, self.queued)

    async def anchor(self) -> None:
        """Send the newest checkpoint to the anchor, if it is newer than the last sent."""
        self._last_anchor = self._clock()
        cp = self._newest
        if self._anchor is None or cp is None or cp.seq <= self._anchored:
            return
        try:
            await asyncio.to_thread(self._anchor.write, [cp], self.id)
        except OSError as exc:
            self.failures += 1
            log.error("audit: cannot write the anchor %s: %s", self._anchor.path, exc.strerror)
            return
        self._anchored = cp.seq

    async def close(self) -> None:
        """Write everything still queued and the segment's closing record, sealed and
        anchored; then nothing more is taken (later records are dropped and counted)."""
        if self._closed:
            return
        self._closed = True
        if self._head is not None or len(self._queue):
            closing = close_data(self.id, self.written + len(self._queue))
            self._queue.put_last(KIND, closing, self._clock())
            for attempt in range(3):
                try:
                    await self.flush()
                    break
                except StorageError as exc:
                    log.error("audit: final flush failed (%s); attempt %d of 3", exc, attempt + 1)
            if len(self._queue):
                log.error("audit: %d records could not be written at shutdown", len(self._queue))
            await self.anchor()
        self._store.close()
        if self._sink is not None:
            self._sink.close()
        if self._anchor is not None:
            self._anchor.close()
