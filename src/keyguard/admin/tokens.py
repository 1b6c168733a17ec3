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

Verification on the admin port costs the same whether the id exists or not, and made-up ids do
not reach the store: the gateway keeps each looked-up record (or its absence) for at most
``ttl`` seconds (``proxy.key_cache_ttl_s``, as for Keyguard keys), an unknown id is compared
against a dummy digest (the work of a wrong secret), and an index of the token ids in the store
(:class:`~keyguard.identity.key_index.IdIndex`) lets an id it does not know be looked up only
within ``proxy.unknown_key_lookups_per_s``. A revocation through this process is in force when
the call returns (the cached record is dropped; a read already under way is read again); the
other replicas drop theirs when the bus tells them, else within ``ttl``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import BadRequest, NotFound, shown
from ..identity.key_index import IdIndex
from ..keys.admin_tokens import generate_token, parse_token
from ..store.schema import admin_tokens
from ..store.sql import translate_errors, write_transaction
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
_MAX_KNOWN = 4_096  # records of tokens that exist
_MAX_ABSENT = 16_384  # ids found not to exist: a flood of them cannot evict the real ones
_MAX_READS = 4  # reads of one record overtaken by revocations before refusing
_DUMMY_DIGEST = "0" * 64  # compared against when there is no record: a wrong secret's work


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
        async with write_transaction(self._engine, "create admin token") as conn:
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

    async def ids_changed(self, since: datetime | None) -> list[tuple[str, datetime]]:
        """``(token_id, created_at)`` of the tokens created after ``since`` (all when ``None``):
        an id, once it exists, never stops existing (a revoked token keeps its row)."""
        query = select(admin_tokens.c.token_id, admin_tokens.c.created_at)
        if since is not None:
            query = query.where(admin_tokens.c.created_at > since)
        async with translate_errors("list admin token ids"), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(token_id, created_at) for token_id, created_at in rows]

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
        async with write_transaction(self._engine, "revoke admin token") as conn:
            await conn.execute(
                admin_tokens.update()
                .where(and_(table.token_id == token_id, table.revoked_at.is_(None)))
                .values(revoked_at=at)
            )
            row = (
                await conn.execute(select(admin_tokens).where(table.token_id == token_id))
            ).first()
        return None if row is None else AdminTokenRecord(**row._mapping)


@dataclass(frozen=True, slots=True)
class _Cached:
    record: AdminTokenRecord | None
    fetched: float


class AdminTokenService:
    """Create, list, revoke and verify admin tokens (used by the admin API and the CLI).

    With ``ttl`` > 0 (the gateway) records are cached and an ``index`` keeps made-up ids off
    the store; ``on_revoke`` tells the other replicas (the bus). The CLI caches nothing."""

    def __init__(
        self,
        store: AdminTokenStore,
        pepper: bytes,
        *,
        ttl: float = 0.0,
        index: IdIndex | None = None,
        on_revoke: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(pepper) < 16:
            raise ValueError("the admin-token pepper must be at least 16 bytes")
        self._store = store
        self._pepper = pepper
        self._ttl = ttl
        self._index = index
        self._on_revoke = on_revoke
        self._clock = clock
        self._known: dict[str, _Cached] = {}
        self._absent: dict[str, _Cached] = {}
        self._changes = 0  # counts forget(): a read that a revocation overtook is read again

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
        self.forget(token_id)
        if self._index is not None:
            self._index.add(token_id)
        return record, token

    async def list(self) -> list[AdminTokenRecord]:
        return await self._store.list()

    async def revoke(self, token_id: str, *, now: datetime) -> AdminTokenRecord:
        record = await self._store.revoke(token_id, now) if _TOKEN_ID.fullmatch(token_id) else None
        if record is None:
            raise NotFound(f"no admin token with id {shown(token_id)}", reason="unknown_token")
        self.forget(token_id)
        if self._on_revoke is not None:
            self._on_revoke(token_id)
        return record

    def forget(self, token_id: str) -> None:
        """Drop ``token_id``'s cached record (it changed in the store); a read of it already
        under way is read again."""
        self._known.pop(token_id, None)
        self._absent.pop(token_id, None)
        self._changes += 1

    async def verify(self, token: str, now: datetime) -> AdminTokenRecord | None:
        """The record of an active token whose secret matches, else ``None`` (constant time)."""
        token_id = parse_token(token)
        if token_id is None:
            return None
        record = await self._record(token_id)
        # An unknown id costs the digest and the comparison a wrong secret costs.
        digest = self.digest(token)
        expected = _DUMMY_DIGEST if record is None else record.digest
        if not hmac.compare_digest(digest, expected) or record is None:
            return None
        return record if record.state(now) == "active" else None

    async def active(self, token_id: str, now: datetime) -> AdminTokenRecord | None:
        """The record of the active token ``token_id`` (no secret checked: for a caller that
        verified the secret before, as the console's sessions did at sign-in), else ``None``."""
        if not _TOKEN_ID.fullmatch(token_id):
            return None
        record = await self._record(token_id)
        return record if record is not None and record.state(now) == "active" else None

    async def _record(self, token_id: str) -> AdminTokenRecord | None:
        cached = self._known.get(token_id) or self._absent.get(token_id)
        if cached is not None and self._clock() - cached.fetched < self._ttl:
            return cached.record
        if self._index is not None and not self._index.may_look_up(token_id):
            return None  # an unknown id past the lookup budget: no store round trip
        for _ in range(_MAX_READS):
            changes, fetched = self._changes, self._clock()
            record = await self._store.get(token_id)
            if changes == self._changes:
                self._keep(token_id, _Cached(record, fetched))
                if record is not None and self._index is not None:
                    self._index.add(token_id)  # created elsewhere since the last refresh
                return record
        return None  # revoked again and again while it was read: refused, never stale

    def _keep(self, token_id: str, cached: _Cached) -> None:
        if self._ttl <= 0:
            return
        table, bound = (
            (self._known, _MAX_KNOWN) if cached.record is not None else (self._absent, _MAX_ABSENT)
        )
        if len(table) >= bound and token_id not in table:
            table.pop(next(iter(table)))
        table[token_id] = cached
        (self._absent if cached.record is not None else self._known).pop(token_id, None)
