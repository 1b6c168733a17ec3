"""The console's sessions in the store, on each backend, against sign-ins at the same moment
(the caps hold: PostgreSQL's openings take an advisory lock, SQLite's writers queue) and a
hostile store writer (rows dated in the future neither fill the table nor an actor's quota; a
row altered in place is closed when its cookie comes back)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.console.sessions import digest
from keyguard.console.sql_sessions import SqlSessions
from keyguard.store import Store
from keyguard.store.schema import console_sessions
from keyguard.store.sql import SQLStore

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def engine_of(store: Store) -> AsyncEngine:
    assert isinstance(store, SQLStore)
    return store.engine


async def rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).select_from(console_sessions)
        return int((await conn.execute(query)).scalar() or 0)


async def forge(engine: AsyncEngine, token_id: str, at: datetime) -> None:
    """A row a store writer inserts, dated ``at``."""
    async with engine.begin() as conn:
        await conn.execute(
            console_sessions.insert().values(
                id_digest=digest(secrets.token_urlsafe(16)),
                token_id=token_id,
                csrf="c" * 43,
                created_at=at,
                seen_at=at,
            )
        )


async def test_sign_ins_at_the_same_moment_never_pass_the_caps(store: Store) -> None:
    engine = engine_of(store)
    table = SqlSessions(engine, max_per_actor=2, max_sessions=4)
    await asyncio.gather(*(table.open("ONEACTOR0001", NOW) for _ in range(12)))
    assert await rows(engine) == 2  # one actor: its 2 newest, however many came at once
    opened = await asyncio.gather(
        *(table.open(f"ACTOR{n:07d}", NOW) for n in range(12)), return_exceptions=True
    )
    assert len([o for o in opened if not isinstance(o, BaseException)]) == 2
    assert await rows(engine) == 4  # the whole table: never more than its cap


async def test_rows_dated_in_the_future_fill_neither_the_table_nor_a_quota(
    store: Store,
) -> None:
    engine = engine_of(store)
    table = SqlSessions(engine, max_per_actor=2, max_sessions=4)
    for n in range(4):  # a full table of rows that would never expire
        await forge(engine, f"FORGED{n:06d}", NOW + timedelta(days=3650))
    for _ in range(2):  # and the actor's quota taken by rows newer than any sign-in
        await forge(engine, "VICTIM000001", NOW + timedelta(days=3650))
    first, _ = await table.open("VICTIM000001", NOW)
    second, _ = await table.open("VICTIM000001", NOW + timedelta(seconds=1))
    later = NOW + timedelta(seconds=2)
    assert await table.get(first, later) and await table.get(second, later)
    assert await rows(engine) == 2
    # a minute of skew between replicas' clocks is not the future
    await forge(engine, "REPLICA00001", NOW + timedelta(seconds=50))
    await table.open("OTHER0000001", NOW)
    assert await rows(engine) == 4


async def test_a_row_altered_in_place_is_closed_when_its_cookie_comes_back(
    store: Store,
) -> None:
    engine = engine_of(store)
    table = SqlSessions(engine)
    raised, _ = await table.open("VIEWER000001", NOW)
    kept, _ = await table.open("VIEWER000002", NOW)
    stretched, _ = await table.open("VIEWER000003", NOW)
    c = console_sessions.c
    async with engine.begin() as conn:
        await conn.execute(  # the viewer's row now names the admin's token
            update(console_sessions)
            .where(c.id_digest == digest(raised))
            .values(token_id="ADMIN0000001")
        )
        await conn.execute(  # a session that would never end
            update(console_sessions)
            .where(c.id_digest == digest(stretched))
            .values(created_at=NOW + timedelta(days=3650), seen_at=NOW + timedelta(days=3650))
        )
    assert await table.get(raised, NOW) is None
    assert await table.get(stretched, NOW) is None
    assert await table.get(kept, NOW) is not None
    assert await rows(engine) == 1  # both closed, not left to fill the table
