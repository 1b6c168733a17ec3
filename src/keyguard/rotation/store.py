"""Rotation state in the store (SQLite or PostgreSQL, on the store's engine).

* ``upstream_rotations``: one row per rotation (:class:`~.machine.Rotation`), written after
  each step with a compare-and-set on ``updated_at``;
* ``rotation_leases``: one row per lease name, taken and released by
  :mod:`keyguard.store.leases` (exactly one replica holds it until it expires);
* ``credential_acks``: per replica and upstream, the key version it serves and when it last
  said so (a replica whose ``seen_at`` is old is considered gone);
* ``key_rotations``: Keyguard key rotations by idempotency token (digests only).

No secret is ever written here: fingerprints, digests and version ids only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import RowMapping, and_, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..errors import ConfigurationError, StorageError
from ..store.leases import acquire_lease, release_lease
from ..store.schema import credential_acks, key_rotations, rotation_leases, upstream_rotations
from ..store.sql import translate_errors, write_transaction
from .machine import TERMINAL, Rotation

__all__ = ["RotationStore", "ReplicaAck", "KeyRotationRecord"]


@dataclass(frozen=True, slots=True)
class ReplicaAck:
    replica: str
    upstream: str
    version: str | None
    switched_at: datetime | None
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class KeyRotationRecord:
    """A Keyguard key rotation: which digest it replaced and which it installed."""

    key_id: str
    token_digest: str
    base_digest: str
    new_digest: str
    rotated_at: datetime
    grace_until: datetime
    expires_at: datetime | None


def _rotation(row: RowMapping) -> Rotation:
    return Rotation(**{k: row[k] for k in Rotation.__dataclass_fields__})


class RotationStore:
    """The rotation tables, on an async engine (``SQLStore.engine``)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    def for_store(cls, store: object) -> RotationStore:
        engine = getattr(store, "engine", None)
        if not isinstance(engine, AsyncEngine):
            raise ConfigurationError("rotation needs the SQL store (sqlite:/// or postgresql://)")
        return cls(engine)

    @asynccontextmanager
    async def _read(self, action: str) -> AsyncIterator[AsyncConnection]:
        async with translate_errors(action), self._engine.connect() as conn:
            yield conn

    def _write(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]:
        return write_transaction(self._engine, action)

    # -- rotations ------------------------------------------------------------------------

    async def create_rotation(self, rotation: Rotation) -> None:
        async with self._write("create rotation") as conn:
            await conn.execute(upstream_rotations.insert().values(**asdict(rotation)))

    async def update_rotation(self, rotation: Rotation, *, expected_updated_at: datetime) -> bool:
        values = asdict(rotation)
        for fixed in ("id", "upstream", "created_at"):
            del values[fixed]
        r = upstream_rotations.c
        async with self._write("update rotation") as conn:
            result = await conn.execute(
                upstream_rotations.update()
                .where(and_(r.id == rotation.id, r.updated_at == expected_updated_at))
                .values(**values)
            )
        return bool(result.rowcount == 1)

    async def get_rotation(self, rotation_id: str) -> Rotation | None:
        query = select(upstream_rotations).where(upstream_rotations.c.id == rotation_id)
        async with self._read("get rotation") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _rotation(row._mapping)

    async def open_rotation(self, upstream: str) -> Rotation | None:
        """The unfinished rotation of ``upstream`` (at most one exists), if any."""
        r = upstream_rotations.c
        query = (
            select(upstream_rotations)
            .where(and_(r.upstream == upstream, r.state.not_in(sorted(TERMINAL))))
            .order_by(r.created_at.desc())
            .limit(1)
        )
        async with self._read("get open rotation") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _rotation(row._mapping)

    async def rotations(self, upstream: str | None = None, limit: int = 20) -> list[Rotation]:
        """The latest rotations, newest first."""
        r = upstream_rotations.c
        query = select(upstream_rotations).order_by(r.created_at.desc(), r.id).limit(limit)
        if upstream is not None:
            query = query.where(r.upstream == upstream)
        async with self._read("list rotations") as conn:
            rows = (await conn.execute(query)).all()
        return [_rotation(row._mapping) for row in rows]

    # -- leases ---------------------------------------------------------------------------

    async def acquire_lease(self, name: str, owner: str, now: datetime, ttl: timedelta) -> bool:
        """Take or renew ``name`` for ``owner`` until ``now + ttl``; ``False`` if held."""
        return await acquire_lease(self._engine, name, owner, now, ttl)

    async def release_lease(self, name: str, owner: str) -> None:
        await release_lease(self._engine, name, owner)

    async def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        query = select(rotation_leases).where(rotation_leases.c.name == name)
        async with self._read("get lease") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else (row.owner, row.expires_at)

    # -- replica acknowledgements ---------------------------------------------------------

    async def ack(self, ack: ReplicaAck) -> None:
        """Record which version ``ack.replica`` serves for ``ack.upstream`` (upsert)."""
        a = credential_acks.c
        values: dict[str, Any] = {
            "version": ack.version,
            "switched_at": ack.switched_at,
            "seen_at": ack.seen_at,
        }
        async with self._write("record replica ack") as conn:
            result = await conn.execute(
                credential_acks.update()
                .where(and_(a.replica == ack.replica, a.upstream == ack.upstream))
                .values(**values)
            )
        if result.rowcount == 1:
            return
        try:
            async with self._write("record replica ack") as conn:
                await conn.execute(credential_acks.insert().values(**asdict(ack)))
        except StorageError as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise  # else: inserted concurrently by the same replica; the next ack wins

    async def acks(self, upstream: str) -> list[ReplicaAck]:
        query = select(credential_acks).where(credential_acks.c.upstream == upstream)
        async with self._read("list replica acks") as conn:
            rows = (await conn.execute(query)).all()
        return [ReplicaAck(**dict(r._mapping)) for r in rows]

    async def forget_replica(self, replica: str) -> None:
        async with self._write("remove replica acks") as conn:
            await conn.execute(delete(credential_acks).where(credential_acks.c.replica == replica))

    # -- Keyguard key rotations -----------------------------------------------------------

    async def key_rotation(self, key_id: str, token_digest: str) -> KeyRotationRecord | None:
        k = key_rotations.c
        query = select(key_rotations).where(
            and_(k.key_id == key_id, k.token_digest == token_digest)
        )
        async with self._read("get key rotation") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else KeyRotationRecord(**dict(row._mapping))

    async def last_key_rotation(self, key_id: str) -> KeyRotationRecord | None:
        k = key_rotations.c
        query = (
            select(key_rotations).where(k.key_id == key_id).order_by(k.rotated_at.desc()).limit(1)
        )
        async with self._read("get key rotation") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else KeyRotationRecord(**dict(row._mapping))

    async def last_key_rotations(self) -> dict[str, datetime]:
        """key id -> when its secret was last rotated."""
        k = key_rotations.c
        query = select(k.key_id, func.max(k.rotated_at)).group_by(k.key_id)
        async with self._read("list key rotations") as conn:
            rows = (await conn.execute(query)).all()
        return {row[0]: row[1] for row in rows}

    async def record_key_rotation(self, record: KeyRotationRecord) -> bool:
        """Insert; ``False`` when this (key id, token) is already recorded."""
        try:
            async with self._write("record key rotation") as conn:
                await conn.execute(key_rotations.insert().values(**asdict(record)))
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                return False
            raise
        return True

    async def forget_key_rotation(self, key_id: str, token_digest: str) -> None:
        k = key_rotations.c
        async with self._write("remove key rotation") as conn:
            await conn.execute(
                delete(key_rotations).where(
                    and_(k.key_id == key_id, k.token_digest == token_digest)
                )
            )

    async def prune_key_rotations(self, before: datetime) -> None:
        """Forget idempotency records older than ``before`` (the newest per key is kept)."""
        k = key_rotations.c
        latest = await self.last_key_rotations()
        async with self._write("prune key rotations") as conn:
            for key_id, rotated_at in latest.items():
                await conn.execute(
                    delete(key_rotations).where(
                        and_(
                            k.key_id == key_id,
                            k.rotated_at < before,
                            k.rotated_at < rotated_at,
                        )
                    )
                )
