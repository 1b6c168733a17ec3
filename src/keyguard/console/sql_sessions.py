"""The console's sessions in the store (``console_sessions``), so that a session opened on one
worker or replica is known to every other. A row holds the SHA-256 of the session id, the
admin token's id (never the token) or an Entra identity's object id, role and end, the CSRF
token and the times; nothing in it signs anyone in without the cookie's value. A row whose
Entra columns are half written, or whose role is not a role, is no session.

Bounded like :class:`~.sessions.MemorySessions`: opening a session first deletes the expired
ones, and those dated more than ``SKEW`` in the future (no console wrote them: a store writer
could otherwise fill the table, or an actor's quota, with rows that never expire) and, when
the actor has ``max_per_actor`` left, the actor's oldest; then, when ``max_sessions`` remain,
the sign-in is refused (nobody else's session is ended). The rows counted are not checked
against their MAC (the table holds no session id to check it with, only its digest); a row
that fails its MAC is closed when its cookie comes back. On PostgreSQL the opening holds a
transaction-level advisory lock, so that two sign-ins at once cannot both find room and both
insert (SQLite's writers are serialised already). A session's ``seen_at`` is written at most
once a minute (a page view is a read, not a write), so its idle deadline is kept to the minute.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..admin.settings import ADMIN_ROLES
from ..store.schema import console_sessions
from ..store.sql import translate_errors, write_transaction
from .sessions import (
    IDLE,
    LIFETIME,
    MAX_PER_ACTOR,
    MAX_SESSIONS,
    EntraIdentity,
    Session,
    digest,
    full,
    issued,
    new_session,
    plausible,
)

__all__ = ["SqlSessions"]

SEEN_EVERY = timedelta(minutes=1)
SKEW = timedelta(minutes=1)  # how far in the future a row's times may be (clocks of replicas)
_PG_LOCK = 0x6B67_636F_6E73  # "kgcons": pg_advisory_xact_lock id for opening a console session


class SqlSessions:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        idle: timedelta = IDLE,
        lifetime: timedelta = LIFETIME,
        max_sessions: int = MAX_SESSIONS,
        max_per_actor: int = MAX_PER_ACTOR,
        key: bytes | None = None,
    ) -> None:
        """``key``: what session ids are MACed with (the vault's, shared by every process; a
        key of this process alone when not given, and then sessions do not cross processes)."""
        if min(max_sessions, max_per_actor) < 1 or idle <= SEEN_EVERY or lifetime <= timedelta(0):
            raise ValueError("sessions need a positive size, lifetime and an idle timeout > 1m")
        self._engine = engine
        self._key = key or secrets.token_bytes(32)
        self._idle = idle
        self._lifetime = lifetime
        self._max = max_sessions
        self._per_actor = max_per_actor

    async def open(
        self, token_id: str, now: datetime, entra: EntraIdentity | None = None
    ) -> tuple[str, Session]:
        session_id, session = new_session(token_id, now, entra, key=self._key)
        c = console_sessions.c
        async with write_transaction(self._engine, "open a console session") as conn:
            if conn.dialect.name == "postgresql":  # one opening at a time: counts stay true
                await conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK})"))
            await conn.execute(
                delete(console_sessions).where(
                    (c.seen_at <= now - self._idle)
                    | (c.created_at <= now - self._lifetime)
                    | (c.ends_at <= now)
                    | (c.created_at > now + SKEW)
                    | (c.seen_at > now + SKEW)
                )
            )
            mine = (
                c.entra_oid == entra.object_id
                if entra is not None
                else (c.token_id == token_id) & c.entra_oid.is_(None)
            )
            count = (
                await conn.execute(select(func.count()).select_from(console_sessions).where(mine))
            ).scalar()
            surplus = int(count or 0) - self._per_actor + 1
            if surplus > 0:
                oldest = select(c.id_digest).where(mine).order_by(c.created_at).limit(surplus)
                await conn.execute(delete(console_sessions).where(c.id_digest.in_(oldest)))
            count = (
                await conn.execute(select(func.count()).select_from(console_sessions))
            ).scalar()
            if int(count or 0) >= self._max:
                raise full()  # rolls the transaction back: nothing was ended
            await conn.execute(
                console_sessions.insert().values(
                    id_digest=digest(session_id),
                    token_id=token_id,
                    csrf=session.csrf,
                    created_at=now,
                    seen_at=now,
                    entra_oid=entra.object_id if entra else None,
                    role=entra.role if entra else None,
                    ends_at=entra.ends if entra else None,
                )
            )
        return session_id, session

    async def get(self, session_id: str | None, now: datetime) -> Session | None:
        if session_id is None or not plausible(session_id):
            return None
        key = digest(session_id)
        c = console_sessions.c
        query = select(
            c.token_id, c.csrf, c.created_at, c.seen_at, c.entra_oid, c.role, c.ends_at
        ).where(c.id_digest == key)
        async with translate_errors("read a console session"), self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        entra = None
        if (row.entra_oid, row.role, row.ends_at) != (None, None, None):
            if not row.entra_oid or row.role not in ADMIN_ROLES or row.ends_at is None:
                await self.close(session_id)
                return None
            entra = EntraIdentity(row.entra_oid, row.role, row.ends_at)
        session = Session(row.token_id, row.csrf, row.created_at, row.seen_at, entra)
        if (
            not issued(self._key, session_id, session)  # not as the console wrote it
            or max(session.created, session.seen) > now + SKEW  # dated in the future
            or session.expires(self._idle, self._lifetime) <= now
        ):
            await self.close(session_id)
            return None
        if now - session.seen >= SEEN_EVERY:
            async with write_transaction(self._engine, "touch a console session") as conn:
                await conn.execute(
                    update(console_sessions).where(c.id_digest == key).values(seen_at=now)
                )
            session.seen = now
        return session

    async def close(self, session_id: str | None) -> None:
        if session_id is None or not plausible(session_id):
            return
        c = console_sessions.c
        async with write_transaction(self._engine, "close a console session") as conn:
            await conn.execute(delete(console_sessions).where(c.id_digest == digest(session_id)))
