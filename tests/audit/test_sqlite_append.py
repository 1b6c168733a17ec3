"""The gateway's direct SQLite appends: one chain with every other writer, never waiting for a
lock on the event loop (the engine's path takes over), and nothing lost or doubled when the
store turns busy part-way through a flush."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.audit.chain import ChainVerifier, Record, canonical, chain
from keyguard.audit.settings import AuditSettings
from keyguard.audit.sqlite_append import CHUNK, Busy, SqliteAppender, sqlite_file
from keyguard.audit.store import AuditStore, iso
from keyguard.audit.writer import AuditWriter

NOW = 1_800_000_000.0


def _items(n: int, first: int = 0) -> list[tuple[str, str, str]]:
    from datetime import UTC, datetime

    return [
        (iso(datetime.fromtimestamp(NOW + i, UTC)), "request", canonical({"i": i}))
        for i in range(first, first + n)
    ]


async def _chain_of(store: AuditStore) -> list[Record]:
    return [r async for r in store.records()]


def _verified(records: list[Record]) -> bool:
    verifier = ChainVerifier([], lambda _cp: True)
    for record in records:
        verifier.feed(record)
    report = verifier.finish()
    return bool(report.ok) and report.records == len(records)


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
    written = await direct.append(_items(CHUNK * 2 + 5))  # three transactions
    written += await plain.append(_items(3, first=1000))
    written += await direct.append(_items(4, first=2000))
    direct.close()
    stored = await _chain_of(plain)
    assert [r.seq for r in written] == list(range(1, CHUNK * 2 + 13))
    assert stored == written and _verified(stored)
    assert direct.fallbacks == 0


async def test_a_held_lock_is_never_waited_for(sqlite_engine: AsyncEngine) -> None:
    engine, path = sqlite_engine, sqlite_file(sqlite_engine.url)
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    appender = SqliteAppender(path)
    with pytest.raises(Busy):
        appender.append(_items(2))
    store = AuditStore(engine, direct=True)
    task = asyncio.create_task(store.append(_items(6)))
    while store.fallbacks == 0:  # the direct path refused at once; the engine's thread waits
        await asyncio.sleep(0)
    assert not task.done()
    holder.execute("COMMIT")
    holder.close()
    records = await task
    assert [r.seq for r in records] == [1, 2, 3, 4, 5, 6]
    assert appender.append(_items(1, first=10))[0].seq == 7  # the lock is free again
    appender.close()
    store.close()
    assert _verified(await _chain_of(AuditStore(engine)))


class _BusyAfter:
    """A store that writes ``ok`` records, then is busy once (a direct append cut short)."""

    def __init__(self, ok: int) -> None:
        self.ok = ok
        self.calls: list[int] = []
        self.head = ("0" * 64, 0)

    async def append(self, items: list[tuple[str, str, str]], times: object = None) -> list[Record]:
        self.calls.append(len(items))
        part = items[: self.ok] if len(self.calls) == 1 else items
        records = list(chain(self.head[1] + 1, self.head[0], part))
        self.head = (records[-1].hash, records[-1].seq)
        return records

    def close(self) -> None:
        pass


async def test_writer_keeps_what_a_cut_short_append_did_not_write() -> None:
    store = _BusyAfter(ok=3)
    writer = AuditWriter(store, AuditSettings())  # type: ignore[arg-type]
    for i in range(10):
        writer.append("request", {"i": i}, at=NOW + i)
    assert await writer.flush() == 3 and writer.queued == 7
    assert await writer.flush() == 7 and writer.queued == 0
    assert store.calls == [10, 7] and writer.written == 10 and writer.last_seq == 10


@pytest.mark.parametrize("seed", range(3))
def test_iso_at_is_the_iso_text_of_the_time(seed: int) -> None:
    import random
    from datetime import UTC, datetime

    from keyguard.audit.store import iso_at

    rng = random.Random(seed)
    edges = [0.0, 1.9999995, NOW + 0.0000005, NOW + 0.9999996, NOW - 1e-7, 4102444799.9999999]
    for at in edges + [rng.uniform(0, 4.1e9) for _ in range(20_000)]:
        assert iso_at(at) == iso(datetime.fromtimestamp(at, UTC)), at
