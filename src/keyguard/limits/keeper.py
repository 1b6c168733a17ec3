"""The shared Redis counters, kept in the store too, so that a Redis restart without
persistence never grants a second allowance.

:class:`KeptRedisBackend` is the Redis backend plus two duties, over the store's
``limit_counters`` table (the one :mod:`.persist` keeps for the in-process backend):

* **save**: every ``interval_s`` it reads the current level of every counter this replica
  charged since the last save (one ``MGET`` per 500) and upserts them, with their expiry.
  Every replica saves what it charged, so the table holds each counter as some replica last
  read it: minute windows (TPM, RPM) as well as hour, day and month quotas and budgets.
* **restore**: when Redis comes back empty (no state marker, see :mod:`.redis_backend`),
  nothing is reserved until the saved levels are written back (a counter is only ever
  raised, never lowered) and the marker is set again. The replica that notices first
  restores; the others find the marker, or restore the same levels harmlessly.

The remaining exposure, stated in ``docs/limits.md``: the charges made in the last
``interval_s`` before Redis lost its data (by every replica) and the settlements of requests in
flight at that moment (their reservations were counted and possibly saved; the correction to
the real usage is not applied) are not in the restored levels.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from ..core.tasks import PeriodicTask
from .persist import load_levels, store_levels
from .redis_backend import RedisBackend
from .settings import LimitSettings

__all__ = ["KeptRedisBackend"]

log = logging.getLogger("keyguard.limits")


class KeptRedisBackend(RedisBackend):
    def __init__(
        self,
        settings: LimitSettings,
        engine: AsyncEngine,
        *,
        password: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            settings.backend,
            prefix=settings.redis_key_prefix,
            timeout_s=settings.redis_timeout_s,
            lease_s=settings.concurrency_lease_s,
            journal_max_len=settings.journal_max_len,
            password=password,
        )
        self._engine = engine
        self._clock = clock
        self.restore = self._saved_levels
        self._task = PeriodicTask(
            "saving the shared limits counters", self._save, interval=settings.persist_interval_s
        )

    async def start(self) -> None:
        await super().start()
        self._task.start()

    async def close(self) -> None:
        await self._task.close()
        await self._save()
        await super().close()

    async def _saved_levels(self) -> list[tuple[str, int, float]]:
        return await load_levels(self._engine, self._clock())

    async def save(self) -> int:
        """Save the levels of the counters charged here since the last save; how many."""
        now = self._clock()
        levels = await self.touched_levels(now)
        await store_levels(self._engine, levels, now)
        return len(levels)

    async def _save(self) -> None:
        try:
            await self.save()
        except Exception as exc:  # Redis or the store down: noted again, saved next time
            log.warning("could not save the shared limits counters: %s", type(exc).__name__)
