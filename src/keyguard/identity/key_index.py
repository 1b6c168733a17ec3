"""Which credential ids exist, known without a store lookup per request.

A Keyguard key (``kgk_``) and an admin token (``kga_``) carry their id, and anybody can make
credential-shaped strings with fresh random ids (the checksum is public). Without this index
every such string costs a store lookup, so a flood of them is an amplification: a few bytes
from the caller, a database round trip from Keyguard. An :class:`IdIndex` holds every id of one
kind in the store (read at start, then every ``refresh_s`` the ids changed since); an id it does
not know is looked up only within a small budget (a token bucket, ``lookups_per_s``), which
covers credentials created on another replica (or by the CLI) since the last refresh. Past the
budget such an id is refused as unknown without a lookup, until the bucket refills: a flood
cannot reach the store, and ids the index knows are never affected.

The index is bounded (``max_ids``); a store with more ids than that turns it off (every miss
is looked up, as without it) with a warning. :class:`KeyIdIndex` is the index of Keyguard key
ids; the admin port builds one over its tokens (:mod:`keyguard.admin.tokens`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from ..core.bucket import TokenBucket
from ..core.tasks import PeriodicTask
from ..store.base import KeyStore

__all__ = ["IdChanges", "IdIndex", "KeyIdIndex"]

log = logging.getLogger("keyguard.identity")

_OVERLAP = timedelta(seconds=2)  # re-read changes this far back (commit order is not time order)

#: ``(id, changed_at)`` of every id changed after ``since``; every id when ``since`` is ``None``
IdChanges = Callable[[datetime | None], Awaitable[list[tuple[str, datetime]]]]


class IdIndex:
    def __init__(
        self,
        changes: IdChanges,
        *,
        what: str,
        refresh_s: float,
        lookups_per_s: float,
        max_ids: int = 2_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._changes = changes
        self._what = what  # "key", "admin token": for the log lines
        self._ids: set[str] = set()
        self._since: datetime | None = None
        self._max = max_ids
        self._enabled = False
        self._budget = TokenBucket(max(1.0, lookups_per_s * 2), lookups_per_s, clock())
        self._clock = clock
        self.skipped = 0  # lookups refused for want of budget (a metric)
        self._task = PeriodicTask(f"{what} id index refresh", self.refresh, interval=refresh_s)

    def __len__(self) -> int:
        return len(self._ids)

    async def start(self) -> None:
        rows = await self._changes(None)
        self._since = max((changed for _, changed in rows), default=None)
        self._ids = {id_ for id_, _ in rows}
        self._enabled = len(self._ids) <= self._max
        if not self._enabled:
            log.warning(
                "identity: %d %ss exceed the %s id index (%d); every unknown id is looked up",
                len(self._ids),
                self._what,
                self._what,
                self._max,
            )
            self._ids.clear()
        self._task.start()

    async def close(self) -> None:
        await self._task.close()

    async def refresh(self) -> None:
        if not self._enabled:
            return
        since = self._since
        for id_, changed in await self._changes(None if since is None else since - _OVERLAP):
            self.add(id_)
            if self._since is None or changed > self._since:
                self._since = changed

    def add(self, id_: str) -> None:
        if self._enabled:
            if len(self._ids) >= self._max:
                self._enabled = False
                self._ids.clear()
                log.warning(
                    "identity: the %s id index is full; every unknown id is looked up", self._what
                )
            else:
                self._ids.add(id_)

    def may_look_up(self, id_: str) -> bool:
        """Whether ``id_`` may be looked up in the store now: known ids always; others
        while the budget lasts."""
        if not self._enabled or id_ in self._ids:
            return True
        if self._budget.take(self._clock()):
            return True
        self.skipped += 1
        return False


class KeyIdIndex(IdIndex):
    """The index of Keyguard key ids (revoked keys included: their ids exist)."""

    def __init__(
        self,
        store: KeyStore,
        *,
        refresh_s: float,
        lookups_per_s: float,
        max_ids: int = 2_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        async def changes(since: datetime | None) -> list[tuple[str, datetime]]:
            if since is None:
                records = await store.list_keys(include_revoked=True)
            else:
                records = await store.keys_changed_since(since)
            return [(r.key_id, r.updated_at) for r in records]

        super().__init__(
            changes,
            what="key",
            refresh_s=refresh_s,
            lookups_per_s=lookups_per_s,
            max_ids=max_ids,
            clock=clock,
        )
