"""Which key ids exist, known without a store lookup per request.

A Keyguard key carries its id, and anybody can make key-shaped strings with fresh random ids
(the checksum is public). Without this index every such string costs a store lookup, so a
flood of them is an amplification: a few bytes from the caller, a database round trip from
Keyguard. The index holds every key id in the store (read at start, then every
``refresh_s`` the keys changed since); an id it does not know is looked up only within a small
budget (a token bucket, ``lookups_per_s``), which covers keys created on another replica since
the last refresh. Past the budget such an id is refused as unknown without a lookup, until the
bucket refills: a flood cannot reach the store, and keys the index knows are never affected.

The index is bounded (``max_ids``); a store with more keys than that turns it off (every miss
is looked up, as without it) with a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from ..core.tasks import PeriodicTask
from ..store.base import KeyStore

__all__ = ["KeyIdIndex"]

log = logging.getLogger("keyguard.identity")

_OVERLAP = timedelta(seconds=2)  # re-read changes this far back (commit order is not time order)


class KeyIdIndex:
    def __init__(
        self,
        store: KeyStore,
        *,
        refresh_s: float,
        lookups_per_s: float,
        max_ids: int = 2_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ids: set[str] = set()
        self._since: datetime | None = None
        self._max = max_ids
        self._enabled = False
        self._rate = lookups_per_s
        self._burst = max(1.0, lookups_per_s * 2)
        self._tokens = self._burst
        self._filled = clock()
        self._clock = clock
        self.skipped = 0  # lookups refused for want of budget (a metric)
        self._task = PeriodicTask("key id index refresh", self.refresh, interval=refresh_s)

    def __len__(self) -> int:
        return len(self._ids)

    async def start(self) -> None:
        records = await self._store.list_keys(include_revoked=True)
        self._since = max((r.updated_at for r in records), default=None)
        self._ids = {r.key_id for r in records}
        self._enabled = len(self._ids) <= self._max
        if not self._enabled:
            log.warning(
                "identity: %d keys exceed the key id index (%d); every unknown id is looked up",
                len(self._ids),
                self._max,
            )
            self._ids.clear()
        self._task.start()

    async def close(self) -> None:
        await self._task.close()

    async def refresh(self) -> None:
        if not self._enabled:
            return
        if self._since is None:
            changed = await self._store.list_keys(include_revoked=True)
        else:
            changed = await self._store.keys_changed_since(self._since - _OVERLAP)
        for record in changed:
            self.add(record.key_id)
            if self._since is None or record.updated_at > self._since:
                self._since = record.updated_at

    def add(self, key_id: str) -> None:
        if self._enabled:
            if len(self._ids) >= self._max:
                self._enabled = False
                self._ids.clear()
                log.warning("identity: the key id index is full; every unknown id is looked up")
            else:
                self._ids.add(key_id)

    def may_look_up(self, key_id: str) -> bool:
        """Whether ``key_id`` may be looked up in the store now: known ids always; others
        while the budget lasts."""
        if not self._enabled or key_id in self._ids:
            return True
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._filled) * self._rate)
        self._filled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.skipped += 1
        return False
