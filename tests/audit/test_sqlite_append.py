"""The gateway's direct SQLite appends: the same chains as the engine's path, each
transaction with its checkpoint, a head moved by someone else never linked to, never waiting
for a lock on the event loop (the engine's path takes over), and nothing lost or doubled
when the store turns busy part-way through a flush."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from contextlib import closing

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.audit.chain import (
    START,
    Appended,
    Checkpoint,
    HeadMoved,
    Link,
    Record,
    canonical,
)
from keyguard.audit.export import verify_store
from keyguard.audit.rows import iso
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.audit.sqlite_append import CHUNK, Busy, SqliteAppender, sqlite_file
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter

NOW = 1_800_000_000.0
SIGNER = Signer(Ed25519PrivateKey.generate())
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))


def seal(record: Record) -> Checkpoint:
    return SIGNER.sign(record.seq, record.hash, record.created)


async def append(store: AuditStore, items: list[tuple[str, str, str]]) -> Appended:
    """Append after the store's head, as a writer that holds that head would."""
    return await store.append(items, Link(await store.head(), seal))


def _items(n: int, first: int = 0) -> list[tuple[str, str, str]]:
    from datetime import UTC, datetime

    return [
        (iso(datetime.fromtimestamp(NOW + i, UTC)), "request", canonical({"i": i}))
        for i in range(first, first + n)
    ]


async def _chain_of(store: AuditStore) -> list[Record]:
    return [r async for r in store.records()]


async def _verified(store: AuditStore) -> bool:
    report = await verify_store(store, CHECK)
    return bool(report.ok) and report.records == len([r async for r in store.records_by_time()])


def test_only_sqlite_files_qualify() -> None:
    assert sqlite_file(make_url("sqlite+aiosqlite:///var/lib/keyguard/k.db")) == (
        "var/lib/keyguard/k.db"
    )
    assert sqlite_file(make_url("sqlite+aiosqlite://")) is None
    assert sqlite_file(make_url("sqlite+aiosqlite:///:memory:")) is None
    assert sqlite_file(make_url("sqlite+aiosqlite:///file:k?mode=memory&uri=true")) is None
    assert sqlite_file(make_url("postgresql+asyncpg://h/db")) is None


async def test_direct_appends_chain_with_the_engine_path(sqlite_engine: AsyncEngine) -> None:
    engine = sqlite_engine
    direct, plain = AuditStore(engine, direct=True), AuditStore(engine)
    first = await append(direct, _items(CHUNK * 2 + 5))  # three transactions
    assert [cp.seq for cp in first.checkpoints] == [CHUNK, CHUNK * 2, CHUNK * 2 + 5]
    written = first.records
    written += (await append(plain, _items(3, first=1000))).records
    written += (await append(direct, _items(4, first=2000))).records
    direct.close()
    stored = await _chain_of(plain)
    assert [r.seq for r in written] == list(range(1, CHUNK * 2 + 13))
    assert stored == written and await _verified(plain)
    assert direct.fallbacks == 0


async def test_a_head_moved_by_someone_else_is_never_linked_to(
    sqlite_engine: AsyncEngine,
) -> None:
    engine, path = sqlite_engine, sqlite_file(sqlite_engine.url)
    assert path is not None
    store = AuditStore(engine, direct=True)
    mine = (await store.append(_items(2), Link(START, seal, "w1"))).records[-1].position
    other = await store.append(_items(3), Link(START, seal, "w2"))  # another writer's chain
    assert other.records[0].prev_hash == "0" * 64  # chains never link to one another
    with closing(sqlite3.connect(path)) as conn, conn:  # someone appends a row to w1's chain
        conn.execute(
            "INSERT INTO audit_records (chain, seq, created_at, kind, data, packed, prev_hash, "
            "hash) SELECT chain, 3, created_at, kind, data, packed, hash, hash FROM audit_records "
            "WHERE chain = 'w1' AND seq = 2"
        )
    for appender in (store, AuditStore(engine)):  # the direct path and the engine's
        with pytest.raises(HeadMoved) as moved:
            await appender.append(_items(1, first=30), Link(mine, seal, "w1"))
        assert moved.value.head.seq in (0, 3)
    assert (await store.head("w1")).seq == 3  # nothing written
    with closing(sqlite3.connect(path)) as conn, conn:  # and someone cuts it
        conn.execute("DELETE FROM audit_records WHERE chain = 'w1' AND seq > 1")
    with pytest.raises(HeadMoved):
        await store.append(_items(1, first=30), Link(mine, seal, "w1"))
    store.close()


async def test_a_held_lock_is_never_waited_for(sqlite_engine: AsyncEngine) -> None:
    engine, path = sqlite_engine, sqlite_file(sqlite_engine.url)
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    appender = SqliteAppender(path)
    with pytest.raises(Busy):
        appender.append(_items(2), Link(START, seal))
    store = AuditStore(engine, direct=True)
    task = asyncio.create_task(store.append(_items(6), Link(START, seal)))
    while store.fallbacks == 0:  # the direct path refused at once; the engine's thread waits
        await asyncio.sleep(0)
    assert not task.done()
    holder.execute("COMMIT")
    holder.close()
    records = (await task).records
    assert [r.seq for r in records] == [1, 2, 3, 4, 5, 6]
    again = appender.append(_items(1, first=10), Link(records[-1].position, seal))
    assert again.records[0].seq == 7  # the lock is free again
    appender.close()
    store.close()
    assert await _verified(AuditStore(engine))


class _BusyAfter(AuditStore):
    """A store that writes ``ok`` records, then is busy once (a direct append cut short)."""

    def __init__(self, engine: AsyncEngine, ok: int) -> None:
        super().__init__(engine)
        self.ok = ok
        self.calls: list[int] = []

    async def append(self, items: Sequence[tuple[str, str, str]], link: Link) -> Appended:
        self.calls.append(len(items))
        part = items[: self.ok] if len(self.calls) == 2 else items  # the first is the open
        return await super().append(part, link)


async def test_writer_keeps_what_a_cut_short_append_did_not_write(
    sqlite_engine: AsyncEngine,
) -> None:
    store = _BusyAfter(sqlite_engine, ok=3)
    writer = AuditWriter(store, AuditSettings(), signer=SIGNER)
    await writer.open()
    for i in range(10):
        writer.append("request", {"i": i}, at=NOW + i)
    assert await writer.flush() == 3 and writer.queued == 7
    assert await writer.flush() == 7 and writer.queued == 0
    assert store.calls == [1, 10, 7] and writer.written == 11 and writer.last_seq == 11
    assert await _verified(store)


@pytest.mark.parametrize("seed", range(3))
def test_iso_at_is_the_iso_text_of_the_time(seed: int) -> None:
    import random
    from datetime import UTC, datetime

    from keyguard.audit.rows import iso_at

    rng = random.Random(seed)
    edges = [0.0, 1.9999995, NOW + 0.0000005, NOW + 0.9999996, NOW - 1e-7, 4102444799.9999999]
    for at in edges + [rng.uniform(0, 4.1e9) for _ in range(20_000)]:
        assert iso_at(at) == iso(datetime.fromtimestamp(at, UTC)), at
