"""The managed policy in the store: append-only revisions, the latest one in force.

Every change through the admin API (or ``keyguard policy apply``) writes a new revision with
``version = previous + 1``; the primary key makes a concurrent writer lose instead of silently
overwriting (compare-and-set), and the history stays for audit and rollback. Replicas poll
:meth:`PolicyStore.latest_version` (one indexed ``max()``) off the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import RequestError, StorageError
from ..store.schema import policy_revisions
from ..store.sql import translate_errors, write_transaction

__all__ = ["PolicyConflict", "PolicyRevision", "PolicyStore"]

_ACTOR_MAX = 200


class PolicyConflict(RequestError):
    """409: the policy changed since it was read, or a name is already taken."""

    status = 409
    code = "Conflict"


@dataclass(frozen=True, slots=True)
class PolicyRevision:
    version: int
    document: dict[str, Any]
    created_at: datetime
    created_by: str


class PolicyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def latest_version(self) -> int:
        """The version in force (0: no managed policy yet)."""
        async with translate_errors("read policy version"), self._engine.connect() as conn:
            value = await conn.scalar(select(func.max(policy_revisions.c.version)))
        return int(value or 0)

    async def latest(self) -> PolicyRevision | None:
        query = select(policy_revisions).order_by(policy_revisions.c.version.desc()).limit(1)
        async with translate_errors("read policy"), self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _revision(row._mapping)

    async def history(self, limit: int = 50) -> list[PolicyRevision]:
        query = select(policy_revisions).order_by(policy_revisions.c.version.desc()).limit(limit)
        async with translate_errors("read policy history"), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_revision(r._mapping) for r in rows]

    async def append(
        self, document: dict[str, Any], *, expected_version: int, actor: str, now: datetime
    ) -> PolicyRevision:
        """Write ``document`` as version ``expected_version + 1``; :class:`PolicyConflict` when
        another revision was written since ``expected_version`` was read."""
        revision = PolicyRevision(expected_version + 1, document, now, actor[:_ACTOR_MAX])
        try:
            # the read and the write below are one step (IMMEDIATE on SQLite: see
            # keyguard.store.sql.write_transaction)
            async with write_transaction(self._engine, "write policy") as conn:
                current = await conn.scalar(select(func.max(policy_revisions.c.version)))
                if int(current or 0) != expected_version:
                    raise _conflict()
                await conn.execute(
                    policy_revisions.insert().values(
                        version=revision.version,
                        document=orjson.dumps(document).decode(),
                        created_at=now,
                        created_by=revision.created_by,
                    )
                )
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise _conflict() from None
            raise
        return revision


def _conflict() -> PolicyConflict:
    return PolicyConflict(
        "The managed policy changed since it was read; read it again and retry.",
        reason="policy_version_conflict",
    )


def _revision(row: Any) -> PolicyRevision:
    document = orjson.loads(row["document"])
    return PolicyRevision(row["version"], document, row["created_at"], row["created_by"])
