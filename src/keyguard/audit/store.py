"""The audit tables: append a batch to the chain with its checkpoint, and read back in order.

Appending is one short transaction per batch that serialises writers on the chain's head
(``BEGIN IMMEDIATE`` on SQLite; a transaction-scoped advisory lock on PostgreSQL), so several
gateway replicas and the CLI extend one global chain without forking it. The writer says where
it expects the head (the head it holds); the batch is chained and its checkpoint signed inside
the transaction, so records and the checkpoint sealing them are committed together. A head the
writer did not expect is taken only when a valid checkpoint seals it (another writer's batch);
otherwise nothing is written and :class:`~.chain.HeadMoved` says where the head is.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..core.times import utc_micro
from ..errors import StorageError
from ..store.schema import audit_checkpoints, audit_records
from ..store.sql import _BEGIN_OPTION, translate_errors
from .chain import START, Appended, Checkpoint, HeadMoved, Link, Position, Record, chain
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

__all__ = ["AuditStore", "iso", "iso_at", "parse_iso"]

_PG_AUDIT_LOCK = 0x6B67617564  # "kgaud": pg_advisory_xact_lock id for the chain head
_PAGE = 2000
_HEAD = text("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")


def iso(at: datetime) -> str:
    """``2026-01-31T12:00:00.000000Z``: the one text form of a record's time (it is hashed)."""
    return utc_micro(at)


def iso_at(at: float) -> str:
    """:func:`iso` of the epoch time ``at`` (what ``iso(datetime.fromtimestamp(at, UTC))``
    gives), the date and time of day formatted once per second: one call per audit record."""
    frac, whole = math.modf(at)
    micro = round(frac * 1_000_000)
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    elif micro < 0:
        whole, micro = whole - 1, micro + 1_000_000
    return f"{_second_text(int(whole))}.{micro:06d}Z"


@functools.lru_cache(maxsize=8)
def _second_text(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class AuditStore:
    def __init__(self, engine: AsyncEngine, *, direct: bool = False) -> None:
        """``direct``: on a SQLite file, append from the event loop (:mod:`.sqlite_append`);
        the gateway's writer does, short-lived commands need not."""
        self._engine = engine
        path = sqlite_file(engine.url) if direct else None
        self._direct = SqliteAppender(path) if path is not None else None
        self.fallbacks = 0  # direct appends that found the lock taken and went the async way

    async def _append_direct(
        self, appender: SqliteAppender, items: Sequence[tuple[str, str, str]], link: Link
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
                part = appender.append(items[start : start + CHUNK], link)
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
        if self._direct is not None:
            try:
                return await self._append_direct(self._direct, items, link)
            except Busy:
                self.fallbacks += 1  # another writer holds the lock: the engine's thread waits
        return await self._append_async(items, link)

    async def _append_async(self, items: Sequence[tuple[str, str, str]], link: Link) -> Appended:
        async with translate_errors("append audit records"), self._engine.connect() as conn:
            conn = await conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
            async with conn.begin():
                if conn.dialect.name == "postgresql":
                    await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_AUDIT_LOCK})")
                row = (await conn.execute(_HEAD)).first()
                head = Position(int(row[0]), str(row[1])) if row is not None else START
                wanted = link.wants_checkpoints(head)
                after = link.start(
                    head, await self._checkpoints_at(conn, head.seq) if wanted else []
                )
                records = list(chain(head.seq + 1, after.hash, items))
                cp = link.seal(records[-1])
                if conn.dialect.name == "sqlite":  # the embedded default: skip per-row binds
                    await conn.exec_driver_sql(INSERT, sqlite_rows(records))
                    await conn.exec_driver_sql(INSERT_CHECKPOINT, sqlite_checkpoint(cp))
                    return Appended(records, [cp])
                await conn.execute(
                    audit_records.insert(),
                    [
                        {
                            "seq": r.seq,
                            "created_at": parse_iso(r.created),
                            "kind": r.kind,
                            "data": r.data,
                            "prev_hash": r.prev_hash,
                            "hash": r.hash,
                        }
                        for r in records
                    ],
                )
                await conn.execute(audit_checkpoints.insert().values(**_checkpoint_row(cp)))
        return Appended(records, [cp])

    @staticmethod
    async def _checkpoints_at(conn: AsyncConnection, seq: int) -> list[Checkpoint]:
        query = select(audit_checkpoints).where(audit_checkpoints.c.seq == seq)
        return [_checkpoint(row) for row in (await conn.execute(query)).all()]

    async def head(self) -> Position:
        """The chain's last record (:data:`~.chain.START` when the log is empty)."""
        async with translate_errors("read audit head"), self._engine.connect() as conn:
            row = (await conn.execute(_HEAD)).first()
        return START if row is None else Position(int(row[0]), str(row[1]))

    async def record(self, seq: int) -> Record | None:
        query = select(audit_records).where(audit_records.c.seq == seq)
        async with translate_errors("read an audit record"), self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

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
        return [((int(r.seq), int(r.id)), _checkpoint(r)) for r in rows]

    async def records(
        self, *, since: datetime | None = None, after_seq: int = 0, upto: int | None = None
    ) -> AsyncIterator[Record]:
        """Every record in chain order (optionally created at or after ``since``, at most up
        to seq ``upto``), paged."""
        last = after_seq
        while True:
            query = select(audit_records).where(audit_records.c.seq > last)
            if upto is not None:
                query = query.where(audit_records.c.seq <= upto)
            if since is not None:
                query = query.where(audit_records.c.created_at >= since)
            query = query.order_by(audit_records.c.seq).limit(_PAGE)
            async with translate_errors("read audit records"), self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            for row in rows:
                yield _record(row)
            if len(rows) < _PAGE:
                return
            last = int(rows[-1]._mapping["seq"])

    async def checkpoints(
        self, *, since: datetime | None = None, after_seq: int = 0, upto: int | None = None
    ) -> AsyncIterator[Checkpoint]:
        """Every checkpoint in seq order (optionally created at or after ``since``, at most up
        to seq ``upto``), paged."""
        c = audit_checkpoints.c
        place = (after_seq, 0)
        while True:
            query = (
                select(audit_checkpoints)
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
                yield _checkpoint(row)
            if len(rows) < _PAGE:
                return
            place = (int(rows[-1].seq), int(rows[-1].id))


def _record(row: Row[Any]) -> Record:
    m = row._mapping
    return Record(
        seq=int(m["seq"]),
        created=iso(m["created_at"]),
        kind=m["kind"],
        data=m["data"],
        prev_hash=m["prev_hash"],
        hash=m["hash"],
    )


def _checkpoint(row: Row[Any]) -> Checkpoint:
    m = row._mapping
    return Checkpoint(
        seq=int(m["seq"]),
        hash=m["hash"],
        created=iso(m["created_at"]),
        key_id=m["key_id"],
        signature=m["signature"],
    )


def _checkpoint_row(cp: Checkpoint) -> dict[str, Any]:
    return {
        "seq": cp.seq,
        "hash": cp.hash,
        "created_at": parse_iso(cp.created),
        "key_id": cp.key_id,
        "signature": cp.signature,
    }
