"""Entra ID console sessions: they end at the access token's expiry, and a row a hostile store
writer half-filled is no session."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.console.sessions import EntraIdentity, Sessions, digest
from keyguard.console.sql_sessions import SqlSessions
from keyguard.store.schema import console_sessions

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
OID = "00000000-0000-4000-8000-0000000000e1"


async def test_an_entra_session_ends_at_its_tokens_expiry(
    sessions: Callable[..., Sessions],
) -> None:
    table = sessions(idle=timedelta(minutes=30), lifetime=timedelta(hours=8))
    ends = NOW + timedelta(minutes=10)
    sid, session = await table.open("", NOW, EntraIdentity(OID, "operator", ends))
    got = await table.get(sid, ends - timedelta(seconds=1))
    assert got is not None and got.entra == EntraIdentity(OID, "operator", ends)
    assert got.token_id == "" and got.csrf == session.csrf
    assert (await table.get(sid, ends)) is None
    assert (await table.get(sid, ends - timedelta(seconds=1))) is None  # and it is gone


@pytest.mark.parametrize(
    "hostile",
    [
        {"role": "root"},
        {"role": None},
        {"ends_at": None},
        {"entra_oid": ""},
        {"entra_oid": None},
    ],
)
async def test_a_half_written_entra_row_is_no_session(
    sqlite_engine: AsyncEngine, hostile: dict[str, Any]
) -> None:
    table = SqlSessions(sqlite_engine)
    entra = EntraIdentity(OID, "viewer", NOW + timedelta(hours=1))
    sid, _ = await table.open("", NOW, entra)
    async with sqlite_engine.begin() as conn:
        await conn.execute(update(console_sessions).values(**hostile))
    assert (await table.get(sid, NOW)) is None


@pytest.mark.parametrize(
    "raised",
    [
        {"role": "admin"},  # a viewer's row raised to admin
        {"entra_oid": "00000000-0000-4000-8000-0000000000e2"},  # another identity
        {"token_id": "tok_someone_else"},
        {"ends_at": NOW + timedelta(hours=8)},  # its re-check time pushed back
    ],
)
async def test_a_store_writer_cannot_raise_a_session(
    sqlite_engine: AsyncEngine, raised: dict[str, Any]
) -> None:
    table = SqlSessions(sqlite_engine, key=b"k" * 32)
    sid, _ = await table.open("", NOW, EntraIdentity(OID, "viewer", NOW + timedelta(hours=1)))
    assert (await table.get(sid, NOW)) is not None
    async with sqlite_engine.begin() as conn:
        await conn.execute(update(console_sessions).values(**raised))
    assert (await table.get(sid, NOW)) is None


async def test_a_row_a_store_writer_inserts_opens_nothing(sqlite_engine: AsyncEngine) -> None:
    """Without the key, a writer who picks a session id and inserts its row (the id's digest,
    an admin role) holds a cookie the console refuses, whatever MAC it carries."""
    table = SqlSessions(sqlite_engine, key=b"k" * 32)
    for cookie in ("x", "x.", "x." + "0" * 64, "a" * 43 + "." + "f" * 64):
        async with sqlite_engine.begin() as conn:
            await conn.execute(
                console_sessions.insert().values(
                    id_digest=digest(cookie), token_id="", csrf="c", created_at=NOW,
                    seen_at=NOW, entra_oid=OID, role="admin", ends_at=NOW + timedelta(hours=1),
                )
            )  # fmt: skip
        assert (await table.get(cookie, NOW)) is None


async def test_sessions_cross_processes_with_the_shared_key_only(
    sqlite_engine: AsyncEngine,
) -> None:
    one = SqlSessions(sqlite_engine, key=b"k" * 32)
    two = SqlSessions(sqlite_engine, key=b"k" * 32)
    other = SqlSessions(sqlite_engine, key=b"o" * 32)
    sid, _ = await one.open("tok_1", NOW)
    assert (await two.get(sid, NOW)) is not None and (await other.get(sid, NOW)) is None
