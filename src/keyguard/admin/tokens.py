"""Admin tokens: the admin port's own credentials, identifiable, checksummed, digested at rest.

A token is 54 characters, ``kga_`` + a 12-character public id + a 32-character secret + a
6-character CRC32 checksum (:mod:`keyguard.keys.admin_tokens`; the scheme of Keyguard keys, with
its own prefix so neither can ever be used in place of the other, and scanners tell them apart).
The store keeps ``HMAC-SHA256(admin pepper, token)``; the pepper is an internal vault secret of
its own (``keyguard/admin-token-pepper``). A token carries one role -- ``viewer`` (read),
``operator`` (+ manage Keyguard keys) or ``admin`` (+ policy and admin tokens) -- and optionally
expires.

Bootstrap: ``keyguard admin tokens create --role admin --name bootstrap`` on a host that can
open the store (it prints the token once).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import BadRequest, NotFound, shown
from ..keys.admin_tokens import generate_token, parse_token
from ..store.schema import admin_tokens
from ..store.sql import translate_errors
from .settings import ADMIN_ROLES, AdminRole

__all__ = [
    "ADMIN_PEPPER",
    "AdminTokenRecord",
    "AdminTokenService",
    "AdminTokenStore",
    "role_allows",
]

ADMIN_PEPPER = "keyguard/admin-token-pepper"
_TOKEN_ID = re.compile(r"[0-9A-Za-z]{12}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_RANK = {role: i for i, role in enumerate(ADMIN_ROLES)}


def role_allows(held: AdminRole, needed: AdminRole) -> bool:
    """viewer < operator < admin."""
    return _RANK[held] >= _RANK[needed]


@dataclass(frozen=True, slots=True)
class AdminTokenRecord:
    token_id: str
    name: str
    role: AdminRole
    digest: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


class AdminTokenStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, record: AdminTokenRecord) -> None:
        async with translate_errors("create admin token"), self._engine.begin() as conn:
            await conn.execute(
                admin_tokens.insert().values(
                    token_id=record.token_id,
                    name=record.name,
                    role=record.role,
                    digest=record.digest,
                    created_at=record.created_at,
                    created_by=record.created_by,
                    expires_at=record.expires_at,
                    revoked_at=record.revoked_at,
                )
            )

    async def get(self, token_id: str) -> AdminTokenRecord | None:
        query = select(admin_tokens).where(admin_tokens.c.token_id == token_id)
        async with translate_errors("get admin token"), self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else AdminTokenRecord(**row._mapping)

    async def list(self) -> list[AdminTokenRecord]:
        query = select(admin_tokens).order_by(admin_tokens.c.created_at, admin_tokens.c.token_id)
        async with translate_errors("list admin tokens"), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [AdminTokenRecord(**r._mapping) for r in rows]

    async def revoke(self, token_id: str, at: datetime) -> AdminTokenRecord | None:
        table = admin_tokens.c
        async with translate_errors("revoke admin token"), self._engine.begin() as conn:
            await conn.execute(
                admin_tokens.update()
                .where(and_(table.token_id == token_id, table.revoked_at.is_(None)))
                .values(revoked_at=at)
            )
            row = (
                await conn.execute(select(admin_tokens).where(table.token_id == token_id))
            ).first()
        return None if row is None else AdminTokenRecord(**row._mapping)


class AdminTokenService:
    """Create, list, revoke and verify admin tokens (used by the admin API and the CLI)."""

    def __init__(self, store: AdminTokenStore, pepper: bytes) -> None:
        if len(pepper) < 16:
            raise ValueError("the admin-token pepper must be at least 16 bytes")
        self._store = store
        self._pepper = pepper

    def digest(self, token: str) -> str:
        return hmac.new(self._pepper, token.encode(), hashlib.sha256).hexdigest()

    async def create(
        self,
        *,
        name: str,
        role: str,
        created_by: str,
        now: datetime,
        expires_in: timedelta | None = None,
    ) -> tuple[AdminTokenRecord, str]:
        if role not in ADMIN_ROLES:
            raise BadRequest(
                f"role must be one of {', '.join(ADMIN_ROLES)}", reason="invalid_admin_role"
            )
        if not _NAME.fullmatch(name):
            raise BadRequest(
                "name must be 1-64 letters, digits, '.', '_', '@' or '-'", reason="invalid_name"
            )
        if expires_in is not None and expires_in <= timedelta(0):
            raise BadRequest("expiry must be in the future", reason="invalid_expiry")
        token_id, token = generate_token()
        record = AdminTokenRecord(
            token_id=token_id,
            name=name,
            role=role,  # checked above
            digest=self.digest(token),
            created_at=now,
            created_by=created_by[:200],
            expires_at=None if expires_in is None else now + expires_in,
        )
        await self._store.create(record)
        return record, token

    async def list(self) -> list[AdminTokenRecord]:
        return await self._store.list()

    async def revoke(self, token_id: str, *, now: datetime) -> AdminTokenRecord:
        record = await self._store.revoke(token_id, now) if _TOKEN_ID.fullmatch(token_id) else None
        if record is None:
            raise NotFound(f"no admin token with id {shown(token_id)}", reason="unknown_token")
        return record

    async def verify(self, token: str, now: datetime) -> AdminTokenRecord | None:
        """The record of an active token whose secret matches, else ``None`` (constant time)."""
        token_id = parse_token(token)
        if token_id is None:
            return None
        record = await self._store.get(token_id)
        digest = self.digest(token)
        if record is None:
            hmac.compare_digest(digest, digest)  # same work for unknown ids
            return None
        if not hmac.compare_digest(digest, record.digest) or record.state(now) != "active":
            return None
        return record
