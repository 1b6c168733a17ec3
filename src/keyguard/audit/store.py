"""The audit tables: append a batch to a writer's chain with its checkpoint; read back.

Appending is one short transaction per batch on the writer's own chain: on PostgreSQL it takes
no lock but its rows' (the primary key ``(chain, seq)`` keeps a chain from forking), so replicas
never wait for each other; SQLite has one write lock for the whole file (``BEGIN IMMEDIATE``).
The writer says where it expects its chain's head (the head it holds); the batch is chained and
its checkpoint signed inside the transaction, so records and the checkpoint sealing them are
committed together. When the head is elsewhere (someone else wrote to or cut that chain)
nothing is written and :class:`~.chain.HeadMoved` says where it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Table, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import StorageError
from ..store.schema import audit_archives, audit_checkpoints, audit_heads, audit_records
from ..store.sql import translate_errors, write_transaction
from . import partitions
from .chain import (
    START,
    Appended,
    Checkpoint,
    HeadMoved,
    Link,
    Position,
    Record,
    chain,
)
from .heads import Heads
from .partitions import Removed
from .rows import (
    after_place,
    checkpoint_of,
    checkpoint_row,
    heads_of,
    iso,
    iso_at,
    pack_all,
    parse_iso,
    record_of,
    record_row,
)
from .sqlite_append import (
    CHUNK,
    INSERT,
    INSERT_CHECKPOINT,
    Busy,
    SqliteAppender,
    sqlite_checkpoint,
    sqlite_file,
    sqlite_rows,
)

# the time forms (:mod:`.rows`) stay importable from here too
__all__ = ["AuditStore", "iso", "iso_at", "parse_iso"]

log = logging.getLogger("keyguard.audit")

_PAGE = 2000
_HEAD = text("SELECT seq, hash FROM audit_records WHERE chain = :chain ORDER BY seq DESC LIMIT 1")
_NEWEST_BY_CHAIN = text(
    "SELECT c.chain, c.seq, c.hash, c.created_at, c.key_id, c.signature "
    "FROM audit_checkpoints c JOIN (SELECT chain, MAX(seq) AS seq FROM audit_checkpoints "
    "WHERE created_at >= :since AND chain <> '' GROUP BY chain) m "
    "ON c.chain = m.chain AND c.seq = m.seq"
)


PACK_SLICE = 64  # records packed between two yields to the loop (~4 us each: ~0.25 ms)


async def _pack_yielding(items: Sequence[tuple[str, str, str]]) -> list[bytes]:
    """The items' packed data (:mod:`keyguard.store.packing`), packed on the event loop in
    slices of :data:`PACK_SLICE` with a yield between two. Not in a worker thread: zlib gives
    the GIL up and takes it back for every record, and each take from the busy loop is a
    forced switch; measured on one core, a thread packing 600-record batches used ~25 us of
    CPU a request for ~4 us of packing."""
    packed: list[bytes] = []
    for start in range(0, len(items), PACK_SLICE):
        if start:
            await asyncio.sleep(0)
        packed.extend(pack_all(items[start : start + PACK_SLICE]))
    return packed


class AuditStore:
    def __init__(self, engine: AsyncEngine, *, direct: bool = False) -> None:
        """``direct``: on a SQLite file, append from the event loop (:mod:`.sqlite_append`);
        the gateway's writer does, short-lived commands need not."""
        self._engine = engine
        path = sqlite_file(engine.url) if direct else None
        self._direct = SqliteAppender(path) if path is not None else None
        self.fallbacks = 0  # direct appends that found the lock taken and went the async way

    async def _append_direct(
        self,
        appender: SqliteAppender,
        items: Sequence[tuple[str, str, str]],
        link: Link,
        packed: Sequence[bytes],
    ) -> Appended:
        """The embedded SQLite store: short transactions from the loop (:mod:`.sqlite_append`),
        each with its checkpoint. When the lock is taken, the head moved or the store fails
        after some chunks were written, what was written so far is returned (a prefix of
        ``items``; the caller keeps the rest)."""
        done = Appended([], [])
        for start in range(0, len(items), CHUNK):
            if start:
                await asyncio.sleep(0)  # let requests through between two chunks
                link = link.next(done.records[-1].position)
            try:
                end = start + CHUNK
                part = appender.append(items[start:end], link, packed[start:end])
            except (Busy, StorageError, HeadMoved):
                if not done.records:
                    raise
                break
            done.records.extend(part.records)
            done.checkpoints.extend(part.checkpoints)
        return done

    def close(self) -> None:
        """Close the direct SQLite connection, if any (the engine is closed by its owner)."""
        if self._direct is not None:
            self._direct.close()

    async def append(self, items: Sequence[tuple[str, str, str]], link: Link) -> Appended:
        """Chain ``(created, kind, canonical data)`` items and insert them with the checkpoint
        ``link.seal`` gives for the last of them, if the chain's head is ``link.expect`` (or a
        head ``link.accept`` takes, then linked to). The first record links to ``link.after``
        (default: the head): a writer that starts a segment after records it will not seal.
        Returns what was written: everything, or with ``direct`` possibly a prefix when the
        store became busy part-way (the caller keeps the rest for later). ``created`` is
        :func:`iso` text (what is hashed). Raises :class:`~.chain.HeadMoved` when nothing could
        be written because the head is elsewhere."""
        if not items:
            return Appended([], [])
        packed = await _pack_yielding(items)
        if self._direct is not None:
            try:
                return await self._append_direct(self._direct, items, link, packed)
            except Busy:
                self.fallbacks += 1  # another writer holds the lock: the engine's thread waits
        return await self._append_async(items, link, packed)

    async def _append_async(
        self, items: Sequence[tuple[str, str, str]], link: Link, packed: Sequence[bytes]
    ) -> Appended:
        try:
            async with write_transaction(self._engine, "append audit records") as conn:
                row = (await conn.execute(_HEAD, {"chain": link.chain})).first()
                head = Position(int(row[0]), str(row[1])) if row is not None else START
                after = link.start(head)
                records = list(chain(head.seq + 1, after.hash, items, link.chain))
                cp = link.seal(records[-1])
                if conn.dialect.name == "sqlite":  # the embedded default: no per-row binds
                    await conn.exec_driver_sql(INSERT, sqlite_rows(records, packed))
                    await conn.exec_driver_sql(INSERT_CHECKPOINT, sqlite_checkpoint(cp))
                    return Appended(records, [cp])
                rows = [record_row(r, p) for r, p in zip(records, packed, strict=True)]
                await conn.execute(audit_records.insert(), rows)
                await conn.execute(audit_checkpoints.insert().values(**checkpoint_row(cp)))
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # a row at our seq: someone wrote
                raise HeadMoved(await self.head(link.chain)) from None
            raise
        return Appended(records, [cp])

    async def head(self, chain: str = "") -> Position:
        """The last record of ``chain`` (:data:`~.chain.START` when it has none)."""
        async with translate_errors("read audit head"), self._engine.connect() as conn:
            row = (await conn.execute(_HEAD, {"chain": chain})).first()
        return START if row is None else Position(int(row[0]), str(row[1]))

    async def record(self, seq: int, chain: str = "") -> Record | None:
        c = audit_records.c
        query = select(audit_records).where((c.chain == chain) & (c.seq == seq))
        async with translate_errors("read an audit record"), self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else record_of(row)

    async def chains(self) -> dict[str, Position]:
        """Every chain in the store with its last record."""
        c = audit_records.c
        last = select(c.chain, func.max(c.seq).label("seq")).group_by(c.chain).subquery()
        query = select(c.chain, c.seq, c.hash).join(
            last, (c.chain == last.c.chain) & (c.seq == last.c.seq)
        )
        async with translate_errors("read audit chains"), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {str(r.chain): Position(int(r.seq), str(r.hash)) for r in rows}

    async def newest_by_chain(self, since: datetime) -> list[Checkpoint]:
        """The newest checkpoint of every writer's chain that has one created since ``since``."""
        async with translate_errors("read audit checkpoints"), self._engine.connect() as conn:
            rows = (await conn.execute(_NEWEST_BY_CHAIN, {"since": since})).all()
        return [checkpoint_of(row) for row in rows]

    async def add_heads(self, heads: Heads) -> None:
        row = {
            "created_at": parse_iso(heads.created),
            "writer": heads.writer,
            "heads": heads.payload().decode(),
            "key_id": heads.key_id,
            "signature": heads.signature,
        }
        async with write_transaction(self._engine, "write audit heads") as conn:
            await conn.execute(audit_heads.insert().values(**row))

    async def head_sets(
        self,
        *,
        newest_first: bool = False,
        limit: int | None = None,
        since: datetime | None = None,
    ) -> AsyncIterator[Heads | str]:
        """Every head set in the store (created at or after ``since``), oldest first (or
        newest first), paged; a row that is not a head set (a forged or damaged one) comes as
        a text saying so."""
        c = audit_heads.c
        last: int | None = None
        given = 0
        while limit is None or given < limit:
            query = select(audit_heads).order_by(c.id.desc() if newest_first else c.id)
            if since is not None:
                query = query.where(c.created_at >= since)
            if last is not None:
                query = query.where(c.id < last if newest_first else c.id > last)
            query = query.limit(_PAGE if limit is None else min(_PAGE, limit - given))
            async with translate_errors("read audit heads"), self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            for row in rows:
                given += 1
                yield heads_of(row)
            if len(rows) < _PAGE:
                return
            last = int(rows[-1].id)

    async def newest_checkpoints(
        self, *, below: tuple[int, int] | None = None, limit: int = 200
    ) -> list[tuple[tuple[int, int], Checkpoint]]:
        """Checkpoints from the highest seq down, ``limit`` at a time: each with its place
        ``(seq, row id)``; pass the last place as ``below`` for the next page."""
        c = audit_checkpoints.c
        query = select(audit_checkpoints).order_by(c.seq.desc(), c.id.desc()).limit(limit)
        if below is not None:
            query = query.where((c.seq < below[0]) | ((c.seq == below[0]) & (c.id < below[1])))
        async with translate_errors("read audit checkpoints"), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [((int(r.seq), int(r.id)), checkpoint_of(r)) for r in rows]

    async def records(
        self,
        *,
        chain: str = "",
        since: datetime | None = None,
        after_seq: int = 0,
        upto: int | None = None,
    ) -> AsyncIterator[Record]:
        """Every record of ``chain`` in order (optionally created at or after ``since``, at
        most up to seq ``upto``), paged."""
        last = after_seq
        while True:
            query = select(audit_records).where(
                (audit_records.c.chain == chain) & (audit_records.c.seq > last)
            )
            if upto is not None:
                query = query.where(audit_records.c.seq <= upto)
            if since is not None:
                query = query.where(audit_records.c.created_at >= since)
            query = query.order_by(audit_records.c.seq).limit(_PAGE)
            async with translate_errors("read audit records"), self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            for row in rows:
                yield record_of(row)
            if len(rows) < _PAGE:
                return
            last = int(rows[-1]._mapping["seq"])

    async def checkpoints(
        self,
        *,
        chain: str = "",
        since: datetime | None = None,
        after_seq: int = 0,
        upto: int | None = None,
    ) -> AsyncIterator[Checkpoint]:
        """Every checkpoint of ``chain`` in seq order (optionally created at or after
        ``since``, at most up to seq ``upto``), paged."""
        c = audit_checkpoints.c
        place = (after_seq, 0)
        while True:
            query = (
                select(audit_checkpoints)
                .where(c.chain == chain)
                .where((c.seq > place[0]) | ((c.seq == place[0]) & (c.id > place[1])))
                .order_by(c.seq, c.id)
                .limit(_PAGE)
            )
            if upto is not None:
                query = query.where(c.seq <= upto)
            if since is not None:
                query = query.where(c.created_at >= since)
            async with translate_errors("read audit checkpoints"), self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            for row in rows:
                yield checkpoint_of(row)
            if len(rows) < _PAGE:
                return
            place = (int(rows[-1].seq), int(rows[-1].id))

    # -- retention and archive (:mod:`.archive`) ---------------------------------------------

    async def chains_before(self, before: datetime) -> list[str]:
        """Writers' chains whose last record is older than ``before``, oldest first."""
        c = audit_records.c
        query = (
            select(c.chain)
            .where(c.chain != "")
            .group_by(c.chain)
            .having(func.max(c.created_at) < before)
            .order_by(func.min(c.created_at))
        )
        async with translate_errors("read audit chains"), self._engine.connect() as conn:
            return [str(row[0]) for row in (await conn.execute(query)).all()]

    async def add_archive(self, chain: str, at: datetime, manifest: str) -> None:
        """Keep ``manifest`` (once: the same line again, from a run that resumed, is a no-op)."""
        row = {"chain": chain, "created_at": at, "manifest": manifest}
        a = audit_archives.c
        kept = select(a.id).where((a.chain == chain) & (a.manifest == manifest)).limit(1)
        async with write_transaction(self._engine, "write an audit archive") as conn:
            if (await conn.execute(kept)).first() is None:
                await conn.execute(audit_archives.insert().values(**row))

    async def archives(self) -> list[str]:
        """The manifest lines of every chain archived, oldest first."""
        query = select(audit_archives.c.manifest).order_by(audit_archives.c.id)
        async with translate_errors("read audit archives"), self._engine.connect() as conn:
            return [str(row[0]) for row in (await conn.execute(query)).all()]

    async def delete_chain(self, chain: str) -> None:
        await self.delete_chains([chain])

    async def delete_chains(self, chains: Sequence[str]) -> Removed:
        """Remove the records and checkpoints of ``chains`` (archived): on PostgreSQL the day
        partitions holding nothing else are dropped (:mod:`.partitions`)."""
        return await partitions.remove(self._engine, chains)

    async def prepare(self) -> list[str]:
        """Create the partitions new chains go to, when missing (PostgreSQL; never raises)."""
        try:
            return await partitions.prepare(self._engine)
        except StorageError as exc:
            log.warning("audit: the partitions were not checked (%s)", exc)
            return []

    async def delete_head_sets(self, before: datetime) -> None:
        async with write_transaction(self._engine, "delete audit heads") as conn:
            await conn.execute(audit_heads.delete().where(audit_heads.c.created_at < before))

    async def insert_rows(self, records: list[Record], checkpoints: list[Checkpoint]) -> None:
        """Put rows back as they were (a restored archive), in one transaction."""
        async with write_transaction(self._engine, "restore audit records") as conn:
            for start in range(0, len(records), _PAGE):
                rows = [record_row(r) for r in records[start : start + _PAGE]]
                await conn.execute(audit_records.insert(), rows)
            if checkpoints:
                await conn.execute(
                    audit_checkpoints.insert(), [checkpoint_row(cp) for cp in checkpoints]
                )

    async def records_by_time(self, *, since: datetime | None = None) -> AsyncIterator[Record]:
        """Every record of every chain, by time (then chain and seq), paged."""
        async for row in self._by_time(audit_records, since):
            yield record_of(row)

    async def checkpoints_by_time(
        self, *, since: datetime | None = None
    ) -> AsyncIterator[Checkpoint]:
        """Every checkpoint of every chain, by time (then chain and seq), paged."""
        async for row in self._by_time(audit_checkpoints, since):
            yield checkpoint_of(row)

    async def _by_time(self, table: Table, since: datetime | None) -> AsyncIterator[Row[Any]]:
        c = table.c
        place: tuple[datetime, str, int] | None = None
        while True:
            query = select(table).order_by(c.created_at, c.chain, c.seq).limit(_PAGE)
            if since is not None:
                query = query.where(c.created_at >= since)
            if place is not None:
                query = query.where(after_place(c, place))
            async with translate_errors("read the audit log"), self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            for row in rows:
                yield row
            if len(rows) < _PAGE:
                return
            m = rows[-1]._mapping
            place = (m["created_at"], m["chain"], int(m["seq"]))
