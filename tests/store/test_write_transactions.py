"""Writers wait their turn, on every backend: a transaction that reads and then writes (lifting
an incident's throttles) queues behind a writer that holds the lock instead of failing with
"database is locked", concurrent writers of one process all get through, and a writer that
never gets its turn fails with a one-line storage error instead of hanging.

On SQLite a deferred transaction cannot wait for the write lock once it has read: SQLite
answers "database is locked" at once (it never calls the busy handler for that upgrade), so
every write transaction begins ``IMMEDIATE`` (:func:`keyguard.store.sql.write_transaction`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import event, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.errors import StorageError
from keyguard.monitor.store import MonitorStore
from keyguard.store import Store
from keyguard.store import sql as store_sql
from keyguard.store.schema import monitor_blocks
from keyguard.store.sql import SQLStore, write_transaction

NOW = 1_900_000_000.0
INCIDENT = "0123456789abcdef"
DEADLINE_S = 30.0  # a bound for a wait that must end, never a measure of speed


def _engine(store: Store) -> AsyncEngine:
    assert isinstance(store, SQLStore)
    return store.engine


def _waiting_for_the_lock(engine: AsyncEngine) -> Callable[[], Awaitable[bool]]:
    """A check: has another transaction started to wait for the lock the test holds?
    SQLite: a connection asked for the write lock (``BEGIN IMMEDIATE``); PostgreSQL: a
    backend waits for a row lock."""
    if engine.dialect.name == "sqlite":
        asked = asyncio.Event()

        def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            if statement.startswith("BEGIN IMMEDIATE"):
                asked.set()

        event.listen(engine.sync_engine, "before_cursor_execute", seen)

        async def sqlite_waits() -> bool:
            return asked.is_set()

        return sqlite_waits

    async def postgres_waits() -> bool:
        async with engine.connect() as conn:
            query = text("SELECT count(*) FROM pg_locks WHERE NOT granted")
            return bool((await conn.execute(query)).scalar())

    return postgres_waits


async def _until_waiting_or_done(
    task: asyncio.Task[Any], waiting: Callable[[], Awaitable[bool]]
) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not task.done() and not await waiting():
        assert time.monotonic() < deadline, "the second writer neither waited nor finished"
        await asyncio.sleep(0.005)  # polling a condition with a deadline


async def test_lifting_an_incidents_throttles_waits_for_a_writer_holding_the_lock(
    store: Store,
) -> None:
    engine = _engine(store)
    monitor = MonitorStore(engine)
    await monitor.add_block("key:k1", NOW + 60, "raw_azure_key", INCIDENT, NOW)
    await monitor.add_block("address:10.0.0.9", NOW + 60, "raw_azure_key", INCIDENT, NOW)
    await monitor.add_block("key:other", NOW + 60, "velocity", "fedcba9876543210", NOW)
    waiting = _waiting_for_the_lock(engine)
    async with engine.begin() as holder:  # another writer (a rotation step, the audit, ...)
        await holder.execute(
            update(monitor_blocks).where(monitor_blocks.c.subject == "key:k1").values(rule="x")
        )
        lifting = asyncio.create_task(monitor.remove_blocks(incident_id=INCIDENT))
        await _until_waiting_or_done(lifting, waiting)
    assert sorted(await asyncio.wait_for(lifting, DEADLINE_S)) == ["address:10.0.0.9", "key:k1"]
    assert list(await monitor.active_blocks(NOW)) == ["key:other"]


async def test_concurrent_writers_of_one_process_all_get_through(store: Store) -> None:
    monitor = MonitorStore(_engine(store))
    for round_ in range(5):
        subjects = [f"key:r{round_}-{i}" for i in range(12)]
        await asyncio.gather(
            *(monitor.add_block(s, NOW + 60, "velocity", f"{i:016x}", NOW) for i, s in
              enumerate(subjects))
        )  # fmt: skip
        lifted, _ = await asyncio.gather(
            asyncio.gather(*(monitor.remove_blocks(incident_id=f"{i:016x}") for i in range(12))),
            asyncio.gather(
                *(monitor.add_block(f"key:late{round_}-{i}", NOW + 60, "velocity", None, NOW)
                  for i in range(12))
            ),
        )  # fmt: skip
        assert sorted(s for found in lifted for s in found) == sorted(subjects)
        await monitor.remove_blocks(incident_id=None)
    assert await monitor.active_blocks(NOW) == {}


async def test_a_writer_that_never_gets_its_turn_fails_with_a_storage_error(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A careless operator's stuck transaction: the next writer gives up after the busy
    timeout with a one-line error naming the operation, never SQL; it does not hang."""
    monkeypatch.setattr(store_sql, "SQLITE_BUSY_TIMEOUT_MS", 50)
    engine = _engine(sqlite_store)
    monitor = MonitorStore(engine)
    async with write_transaction(engine, "hold the lock") as holder:
        await holder.execute(text("DELETE FROM monitor_blocks"))
        with pytest.raises(StorageError) as raised:
            await asyncio.wait_for(monitor.remove_blocks(subject="key:k1"), DEADLINE_S)
    assert str(raised.value).startswith("store: remove blocks failed")
    assert "DELETE" not in str(raised.value)
    assert await monitor.remove_blocks(subject="key:k1") == []  # the lock is free again
