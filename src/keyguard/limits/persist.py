"""The in-process backend, with its long windows kept across restarts (the embedded default).

Per-minute counters (TPM, RPM) and concurrency slots live in memory only: a restart forgets
them, which at worst admits one more minute's worth. Hour, day and month token quotas and the
budgets must not reset when the process restarts, so :class:`PersistentMemoryBackend` loads
them from the store at start, saves the ones that changed every ``interval_s`` seconds
(table ``limit_counters``, migration 0004) and once more at a clean stop.

The bound, stated in ``docs/limits.md``: after a crash, at most the last ``interval_s``
seconds of charges to those counters are lost; a reservation in flight at the crash stays
charged at its estimate (it can no longer be settled).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..core.tasks import PeriodicTask
from ..errors import StorageError
from ..store.schema import limit_counters
from ..store.sql import write_transaction
from .backend import MemoryBackend

__all__ = ["PersistentMemoryBackend", "LONG_METRICS", "load_levels", "store_levels"]

log = logging.getLogger("keyguard.limits")

#: Counter metrics (the third part of a key) that outlive a restart.
LONG_METRICS = frozenset({"tph", "tpd", "tpmo", "costd", "costmo"})


def _long(key: str) -> bool:
    parts = key.rsplit(":", 2)
    return len(parts) == 3 and parts[1] in LONG_METRICS


async def load_levels(engine: AsyncEngine, now: float) -> list[tuple[str, int, float]]:
    """The saved counters whose window has not passed: (key, level, expiry)."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(limit_counters).where(limit_counters.c.expires_at > now))
        return [(key, int(level), float(expires_at)) for key, level, expires_at in rows]


async def store_levels(
    engine: AsyncEngine, levels: list[tuple[str, int, float]], now: float
) -> None:
    """Save these counters' levels (replacing what was saved for them) and forget the
    expired ones. Several replicas may save at once: rows are upserted in key order, so two
    saves neither collide on a key nor wait on each other in a cycle."""
    upsert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    async with write_transaction(engine, "save limit counters") as conn:
        await conn.execute(delete(limit_counters).where(limit_counters.c.expires_at <= now))
        if levels:
            rows = [
                {"key": key, "level": level, "expires_at": math.ceil(expiry)}
                for key, level, expiry in sorted(levels)
            ]
            statement = upsert(limit_counters)
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[limit_counters.c.key],
                    set_={
                        "level": statement.excluded.level,
                        "expires_at": statement.excluded.expires_at,
                    },
                ),
                rows,
            )


class PersistentMemoryBackend(MemoryBackend):
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        interval_s: float,
        journal_max_len: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(journal_max_len=journal_max_len)
        self._engine = engine
        self._interval = interval_s
        self._clock = clock
        self._saved: dict[str, int] = {}
        self._task = PeriodicTask("saving the limits counters", self._save, interval=interval_s)

    async def start(self) -> None:
        for key, level, expires_at in await load_levels(self._engine, self._clock()):
            self.counters[key] = level
            self.expiry[key] = expires_at
            self._saved[key] = level
        self._task.start()

    async def close(self) -> None:
        await self._task.close()
        await self.save()

    async def _save(self) -> None:
        try:
            await self.save()
        except StorageError as exc:  # its message holds no SQL text or parameter
            log.warning("could not save the limits counters: %s", exc)
        except SQLAlchemyError as exc:
            log.warning("could not save the limits counters: %s", type(exc).__name__)

    async def save(self) -> None:
        """Write the long-window counters that changed since the last save."""
        changed = {
            key: level
            for key, level in self.counters.items()
            if _long(key) and self._saved.get(key) != level
        }
        now = self._clock()
        await store_levels(
            self._engine,
            [(key, level, self.expiry.get(key, now + 86_400)) for key, level in changed.items()],
            now,
        )
        self._saved.update(changed)
        for key in [k for k in self._saved if k not in self.counters]:
            del self._saved[key]
