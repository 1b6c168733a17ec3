"""The audit writer: appends to a chain of its own, seals each batch, signs head sets.

Records wait in a bounded :class:`~.queue.RecordQueue` (serialised one by one as they come).
:meth:`AuditWriter.tick` (every ``flush_interval_s``, on a :class:`~keyguard.core.tasks.
PeriodicTask`) writes them in batches to this writer's own chain (named by its id), so
replicas never wait for each other; each batch is committed together with an Ed25519
checkpoint over its last record, so a record no checkpoint covers is never Keyguard's. Every
``checkpoint_interval_s`` it signs a head set naming the newest checkpoint of every chain that
moved recently (:mod:`.heads`) and sends it, with its own newest checkpoint, to the anchor
outside the store (:mod:`.anchor`); with the optional SIEM sink every committed record too.

The writer extends its chain from the head it holds, not from whatever the store's last row
is. At start it checks the newest head sets (in the store and the anchor) against the records
(:mod:`.tail`), and its chain's first record (a segment ``open`` record, :mod:`.segments`) says
what it found wrong, also raised as a critical ``audit_tampered`` security event. When its own
chain's head is not where it left it (someone wrote to or cut it), it never links to what it
did not write: it starts a new chain, under a new id, whose open record says so.
:meth:`close` writes everything queued, a closing record and its checkpoint, a last head set,
and anchors them: a graceful stop loses nothing; a crash loses at most what was queued since
the last flush.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..errors import StorageError
from ..events import Event, SecurityEvent
from .anchor import FileAnchor
from .chain import START, Appended, Checkpoint, HeadMoved, Link, Position, Record, canonical
from .delivery import LossReport, Stream
from .heads import Carried, next_heads, sign_heads
from .partitions import chain_id
from .queue import RecordQueue
from .rows import iso, iso_at, parse_iso
from .segments import KIND, close_data, open_data
from .settings import AuditSettings
from .signing import Signer, signature_checker
from .sinks import Sink
from .store import AuditStore
from .tail import HEADS_KEEP_S, survey

__all__ = ["AuditWriter"]

log = logging.getLogger("keyguard.audit")

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
        self.id = chain_id(clock())  # names this writer's chain (a new one after tampering)
        self._store = store
        self._settings = settings
        self._signer = signer
        self._check = signature_checker({signer.key_id: signer.public})
        self._sink = sink
        self._losses = LossReport()
        self._anchor = anchor
        self._emit = emit
        self._clock = clock
        self._queue = RecordQueue(settings, clock=clock, alert=emit)
        self._lock = asyncio.Lock()
        self._head: Position | None = None  # where this writer's chain ends; None: not open
        self._newest: Checkpoint | None = None  # the last checkpoint it committed
        self._anchored: Checkpoint | None = None  # the last checkpoint anchored
        self._last_anchor = clock()
        self._carried: Carried = {}  # the heads its next head set names (:mod:`.heads`)
        self._chain_started = clock()
        self._chain_records = 0  # records in its current chain
        self.chains = 1  # chains it started (a new one by time, or after tampering)
        self._heads_since = 0.0  # the newest checkpoints are read from this time on
        self._closed = False
        self.written = 0  # records committed, its segment's own included
        self.failures = 0
        self.findings = 0  # tampering found (each finding)
        self.last_flush_s = 0.0
        self.last_seq = 0
        self.head_sets = 0  # head sets signed

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

    def lag(self) -> float:
        """Seconds since the oldest record still waiting was queued (0 when none waits): how
        far the store is behind the traffic."""
        oldest = self._queue.oldest()
        return 0.0 if oldest is None else max(0.0, self._clock() - oldest)

    @property
    def sink(self) -> Sink | None:
        return self._sink

    @property
    def head(self) -> Position | None:
        return self._head

    def append(self, kind: str, data: Any, at: float | None = None) -> bool:
        """Queue a record (``kind``: request, admin, security); never blocks, never raises;
        ``False`` when it was dropped (counted)."""
        return self._queue.put(kind, data, at)

    def ticket(self) -> int:
        """O(1): the ticket of the record just queued, for :meth:`durable`."""
        return self._queue.accepted

    async def durable(self, ticket: int) -> None:
        """Return once the record of ``ticket`` is committed (``durability: before_answer``):
        flush now; callers waiting together share one transaction (the first flushes what
        every one of them queued, the others find theirs written). Raises
        :class:`~keyguard.errors.StorageError` when it cannot be committed in
        ``durable_timeout_s``."""
        queue = self._queue
        try:
            async with asyncio.timeout(self._settings.durable_timeout_s):
                while queue.done < ticket:
                    if self._closed and not queue.waiting():
                        raise StorageError("audit: the writer is closed")
                    await self.flush()
        except TimeoutError:
            raise StorageError("audit: the record was not committed in time") from None

    # -- writing --------------------------------------------------------------------------

    async def open(self) -> None:
        """Survey the end of the log and start this writer's segment (done by the first
        flush otherwise)."""
        async with self._lock:
            if self._head is None:
                await self._open()

    async def _open(self, found: list[str] | None = None) -> None:
        """Start this writer's chain with its open record (what it found wrong in it)."""
        if found is None:
            anchored = (
                await asyncio.to_thread(self._anchor.newest_heads, self._check)
                if (self._anchor)
                else None
            )
            self._carried, found = await survey(self._store, self._check, anchored=anchored)
            self._heads_since = self._clock() - HEADS_KEEP_S
        await self._store.prepare()  # the day's partition, on PostgreSQL
        item = self._item(KIND, open_data(self.id, START, found))
        self._chain_started = self._clock()
        self._chain_records = 0
        done = await self._store.append([item], Link(START, self._seal, self.id))
        self._advance(done)
        await self._copy(done)
        if found:
            self._tampered(found)

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
                    done = await self._write(items)
                except BaseException:
                    queue.give_back(batch)  # retried at the next flush
                    raise
                self.last_flush_s = time.perf_counter() - started
                n = len(done.records)
                total += n
                queue.written(n)
                if n < len(batch):  # the store became busy part-way: the rest next time
                    queue.give_back(batch[n:])
                    break
            queue.settle()
        return total

    async def _write(self, items: list[Item]) -> Appended:
        """Append after this writer's head; when its chain was changed by someone else, start
        a new chain (its open record says what was found) and write there."""
        assert self._head is not None
        try:
            done = await self._store.append(items, Link(self._head, self._seal, self.id))
        except HeadMoved as moved:
            found = [self._moved(moved.head)]
            self.id = chain_id(self._clock())
            self.chains += 1
            self._head = None
            await self._open(found)
            assert self._head is not None
            done = await self._store.append(items, Link(self._head, self._seal, self.id))
        self._advance(done)
        await self._copy(done)
        return done

    def _moved(self, head: Position) -> str:
        own = self._head or START
        if head.seq < own.seq:
            what = f"ends at seq {head.seq}: its records after that were deleted"
        elif head.seq > own.seq:
            what = f"holds records up to seq {head.seq} that this writer did not write"
        else:
            what = "was replaced by records this writer did not write"
        return (
            f"the chain of writer {self.id} (written up to seq {own.seq}) {what}; "
            "it is left as it is, and this writer goes on in a new chain"
        )

    def _seal(self, record: Record) -> Checkpoint:
        return self._signer.sign(record.seq, record.hash, self._now_iso(), record.chain)

    def _advance(self, done: Appended) -> None:
        if not done.records:
            return
        self._head = done.records[-1].position
        self.last_seq = self._head.seq
        self.written += len(done.records)
        self._chain_records += len(done.records)
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
        self._sink_losses()

    def _sink_losses(self) -> None:
        """Report lines the SIEM stream dropped or refused, as a security event."""
        sink = self._sink
        if not isinstance(sink, Stream) or self._emit is None:
            return
        lost = self._losses.due(sink.losses, self._clock())
        if not lost:
            return
        summary = (
            f"audit: {lost} lines were not delivered to the {self._settings.sink} SIEM stream "
            f"({sink.dropped} dropped from its full buffer, {sink.rejected} too long, since "
            "start); the audit store keeps them: export and resend"
        )
        log.error("%s", summary)
        at = datetime.fromtimestamp(self._clock(), UTC)
        evidence = {"lost": lost, "dropped": sink.dropped, "rejected": sink.rejected,
                    "waiting": sink.waiting, "lag_s": round(sink.lag(), 1)}  # fmt: skip
        self._emit(SecurityEvent(at, "audit_sink_lost", "high", summary, evidence=evidence))

    def _tampered(self, found: list[str], *, new_chain: bool = True) -> None:
        self.findings += len(found)
        for finding in found:
            log.critical("audit: %s", finding)
        log.critical(
            "audit: the audit log was changed by someone without the signing key%s",
            f"; this writer's chain is {self.id}" if new_chain else "",
        )
        if self._emit is not None:
            more = f" (and {len(found) - 1} more findings)" if len(found) > 1 else ""
            self._emit(
                SecurityEvent(
                    datetime.fromtimestamp(self._clock(), UTC),
                    "audit_tampered",
                    "critical",
                    f"The audit log was changed by someone without the signing key: "
                    f"{found[0]}{more}.",
                    evidence={"writer": self.id, "findings": found[:10]},
                )
            )

    def _item(self, kind: str, data: dict[str, Any]) -> Item:
        return (self._now_iso(), kind, canonical(data))

    def _now_iso(self) -> str:
        return iso(datetime.fromtimestamp(self._clock(), UTC))

    # -- the loop, the anchor, the end ----------------------------------------------------

    async def tick(self) -> None:
        """One pass of the background loop: flush; sign a head set and anchor on schedule."""
        if self._closed:
            return
        try:
            await self.flush()
            if self._clock() - self._last_anchor >= self._settings.checkpoint_interval_s:
                await self.anchor()
            if self._clock() - self._chain_started >= self._settings.chain_max_age_s:
                await self.roll()
        except StorageError as exc:
            self.failures += 1
            log.error("audit: cannot write to the store (%s); %d queued", exc, self.queued)

    async def anchor(self, *, force: bool = False) -> None:
        """Sign a head set naming every chain's newest checkpoint, store it, and send it with
        this writer's newest checkpoint to the anchor. A head set another writer signed within
        the last half interval stands for this one (its own checkpoint is anchored still), so
        the head sets stay about two per interval whatever the number of writers; ``force``
        (closing a chain) always signs one."""
        self._last_anchor = now = self._clock()
        if self._head is None:
            return
        if not force and await self._recent_heads(now):
            await self._anchor_lines([])
            return
        since = datetime.fromtimestamp(self._heads_since, UTC)
        fresh = await self._store.newest_by_chain(since)
        self._heads_since = now - 2 * self._settings.checkpoint_interval_s
        self._carried, found = next_heads(
            self._carried, fresh, now=now, keep_s=HEADS_KEEP_S, check=self._check,
            parse_time=lambda created: parse_iso(created).timestamp(),
        )  # fmt: skip
        if found:
            self._tampered(found, new_chain=False)
        if self._newest is not None:  # its own, even when the store lost it since
            self._carried[self.id] = (Position(self._newest.seq, self._newest.hash), now)
        heads = sign_heads(
            self._signer,
            self._now_iso(),
            self.id,
            [(chain, pos) for chain, (pos, _) in self._carried.items()],
        )
        await self._store.add_heads(heads)
        self.head_sets += 1
        if self._sink is not None:
            try:
                await asyncio.to_thread(self._sink.write, [canonical(heads.to_json())])
            except OSError as exc:
                log.warning("audit: the %s sink failed: %s", self._settings.sink, exc)
        await self._anchor_lines([heads.to_json()])

    async def _recent_heads(self, now: float) -> bool:
        """Whether the newest head set in the store is valid and signed within the last half
        interval (one forged, or dated ahead, never stops this writer signing its own)."""
        async for newest in self._store.head_sets(newest_first=True, limit=1):
            if isinstance(newest, str) or not self._check(newest):
                return False
            age = now - parse_iso(newest.created).timestamp()
            return 0 <= age < self._settings.checkpoint_interval_s / 2
        return False

    async def _anchor_lines(self, lines: list[dict[str, Any]]) -> None:
        """This writer's newest checkpoint (when not sent yet) and ``lines`` to the anchor."""
        if self._anchor is None:
            return
        cp = self._newest
        if cp is not None and cp != self._anchored:
            lines.insert(0, {**cp.to_json(), "writer": self.id})
        if not lines:
            return
        try:
            await asyncio.to_thread(self._anchor.write_lines, lines)
        except OSError as exc:
            self.failures += 1
            log.error("audit: cannot write the anchor %s: %s", self._anchor.path, exc.strerror)
            return
        self._anchored = cp

    async def roll(self) -> None:
        """Close this writer's chain (a closing record, sealed, named in a head set and
        anchored) and go on in a new one from the next flush: chains are closed by time."""
        async with self._lock:
            if self._head is None:
                return
            item = self._item(KIND, close_data(self.id, self._chain_records))
            await self._write([item])
        await self.anchor(force=True)
        async with self._lock:
            self.id = chain_id(self._clock())
            self._head = None
            self._newest = None
        self.chains += 1

    async def close(self) -> None:
        """Write everything still queued and the segment's closing record, sealed, named in a
        last head set and anchored; then nothing more is taken (later records are dropped
        and counted)."""
        if self._closed:
            return
        self._closed = True
        if self._head is not None or len(self._queue):
            closing = close_data(self.id, self._chain_records + len(self._queue))
            self._queue.put_last(KIND, closing, self._clock())
            for attempt in range(3):
                try:
                    await self.flush()
                    await self.anchor(force=True)
                    break
                except StorageError as exc:
                    log.error("audit: final flush failed (%s); attempt %d of 3", exc, attempt + 1)
            if len(self._queue):
                log.error("audit: %d records could not be written at shutdown", len(self._queue))
        self._store.close()
        if self._sink is not None:
            await asyncio.to_thread(self._sink.close)  # a stream delivers what waits first
        if self._anchor is not None:
            self._anchor.close()
