"""Named leases in the store: one holder at a time, across replicas and commands.

A lease is a row (``rotation_leases``: the table was made for key rotation and serves every
lease); it is taken with an update that only matches when the lease expired or is the
caller's own, or an insert when there is no row, so exactly one owner holds it until it
expires or is released. Rotation (``rotation:<upstream>``) and the audit archive
(``audit:archive``) use it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import StorageError
from .schema import rotation_leases
from .sql import write_transaction

__all__ = ["acquire_lease", "release_lease"]


async def acquire_lease(
    engine: AsyncEngine, name: str, owner: str, now: datetime, ttl: timedelta
) -> bool:
    """Take or renew ``name`` for ``owner`` until ``now + ttl``; ``False`` if another holds it."""
    lease = rotation_leases.c
    until = now + ttl
    async with write_transaction(engine, "take lease") as conn:
        result = await conn.execute(
            rotation_leases.update()
            .where(and_(lease.name == name, or_(lease.owner == owner, lease.expires_at <= now)))
            .values(owner=owner, expires_at=until)
        )
    if result.rowcount == 1:
        return True
    try:
        async with write_transaction(engine, "take lease") as conn:
            await conn.execute(
                rotation_leases.insert().values(name=name, owner=owner, expires_at=until)
            )
    except StorageError as exc:
        if isinstance(exc.__cause__, IntegrityError):
            return False  # somebody else holds it
        raise
    return True


async def release_lease(engine: AsyncEngine, name: str, owner: str) -> None:
    lease = rotation_leases.c
    async with write_transaction(engine, "release lease") as conn:
        await conn.execute(
            delete(rotation_leases).where(and_(lease.name == name, lease.owner == owner))
        )
