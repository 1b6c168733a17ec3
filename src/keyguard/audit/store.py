"""The audit tables: append a batch to the chain, checkpoints, and reading back in order.

Appending is one short transaction per batch that serialises writers on the chain's head
(``BEGIN IMMEDIATE`` on SQLite; a transaction-scoped advisory lock on PostgreSQL), so several
gateway replicas and the CLI extend one global chain without forking it.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ..core.times import utc_micro
from ..errors import StorageError
from ..store.schema import audit_checkpoints, audit_records
from ..store.sql import _BEGIN_OPTION, translate_errors
from .chain import GENESIS, Checkpoint, Record, chain
from .sqlite_append import CHUNK, INSERT, Busy, SqliteAppender, sqlite_file, sqlite_rows

__all__ = ["AuditStore", "iso", "iso_at", "parse_iso"]

_PG_AUDIT_LOCK = 0x6B67617564  # "kgaud": pg_advisory_xact_lock id for the chain head
_PAGE = 2000


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
        self, appender: SqliteAppender, items: Sequence[tuple[str, str, str]]
    ) -> list[Record]:
        """The embedded SQLite store: short transactions from the loop (:mod:`.sqlite_append`).
        When the lock is taken or the store fails after some chunks were written, the records
        written so far are returned (a prefix of ``items``; the caller keeps the rest)."""
        records: list[Record] = []
        for start in range(0, len(items), CHUNK):
            if start:
                await asyncio.sleep(0)  # let requests through between two chunks
            try:
                records += appender.append(items[start : start + CHUNK])
            except (Busy, StorageError):
                if not records:
                    raise
                break
        return records

    def close(self) -> None:
        """Close the direct SQLite connection, if any (the engine is closed by its owner)."""
        if self._direct is not None:
            self._direct.close()

    async def append(self, items: Sequence[tuple[str, str, str]]) -> list[Record]:
        """Chain and insert ``(created, kind, canonical data)`` items; return the records
        written: all of them, or with ``direct`` possibly a prefix when the store became busy
        part-way (the caller keeps the rest for later). ``created`` is :func:`iso` text (what
        is hashed)."""
        if not items:
            return []
        if self._direct is not None:
            try:
                return await self._append_direct(self._direct, items)
            except Busy:
                self.fallbacks += 1  # another writer holds the lock: the engine's thread waits
        return await self._append_async(items)

    async def _append_async(self, items: Sequence[tuple[str, str, str]]) -> list[Record]:
        async with translate_errors("append audit records"), self._engine.connect() as conn:
            conn = await conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
            async with conn.begin():
                if conn.dialect.name == "postgresql":
                    await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_AUDIT_LOCK})")
                head = (
                    await conn.execute(
                        select(audit_records.c.seq, audit_records.c.hash)
                        .order_by(audit_records.c.seq.desc())
                        .limit(1)
                    )
                ).first()
                seq, prev = (head[0] + 1, head[1]) if head is not None else (1, GENESIS)
                records = list(chain(seq, prev, items))
                if conn.dialect.name == "sqlite":  # the embedded default: skip per-row binds
                    await conn.exec_driver_sql(INSERT, sqlite_rows(records))
                    return records
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
        return records

    async def head(self) -> tuple[int, str] | None:
        async with translate_errors("read audit head"), self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(audit_records.c.seq, audit_records.c.hash)
                    .order_by(audit_records.c.seq.desc())
                    .limit(1)
                )
            ).first()
        return None if row is None else (int(row[0]), str(row[1]))

    async def add_checkpoint(self, cp: Checkpoint) -> None:
        async with translate_errors("write audit checkpoint"), self._engine.begin() as conn:
            await conn.execute(
                audit_checkpoints.insert().values(
                    seq=cp.seq,
                    hash=cp.hash,
                    created_at=parse_iso(cp.created),
                    key_id=cp.key_id,
                    signature=cp.signature,
                )
            )

    async def records(
        self, *, since: datetime | None = None, after_seq: int = 0
    ) -> AsyncIterator[Record]:
        """Every record in chain order (optionally created at or after ``since``), paged."""
        last = after_seq
        while True:
            query = select(audit_records).where(audit_records.c.seq > last)
            if since is not None:
                query = query.where(audit_records.c.created_at >= since)
            query = query.order_by(audit_records.c.seq).limit(_PAGE)
            async with translate_errors("read audit records"), self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            for row in rows:
                m = row._mapping
                yield Record(
                    seq=int(m["seq"]),
                    created=iso(m["created_at"]),
                    kind=m["kind"],
                    data=m["data"],
                    prev_hash=m["prev_hash"],
                    hash=m["hash"],
                )
            if len(rows) < _PAGE:
                return
            last = int(rows[-1]._mapping["seq"])

    async def checkpoints(self, *, since: datetime | None = None) -> list[Checkpoint]:
        query = select(audit_checkpoints).order_by(audit_checkpoints.c.seq)
        if since is not None:
            query = query.where(audit_checkpoints.c.created_at >= since)
        async with translate_errors("read audit checkpoints"), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Checkpoint(
                seq=int(r.seq),
                hash=r.hash,
                created=iso(r.created_at),
                key_id=r.key_id,
                signature=r.signature,
            )
            for r in rows
        ]
