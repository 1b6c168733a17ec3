"""Authenticate a Keyguard key, with a bounded in-process cache of key records.

The store is the truth; the cache keeps each looked-up record (or its absence) for at most
``ttl`` seconds, so a key revoked in the store stops working on every replica within ``ttl``
(``proxy.key_cache_ttl_s``, default 2 s). Past half its life an entry is refreshed in the
background while it is still served, so a busy key never waits for the store on the hot path.

A change made through this process (revoke, suspend, resume, rotate; an automatic response)
is in force when the call that made it returns: the change is written to the store first,
then :meth:`invalidate` drops the cached record. A read of the store that was already under
way (a background refresh, or a request waiting for one) may have read the record before the
change: it is marked stale by :meth:`invalidate` and read again before anything is cached or
answered, so an invalidation can never be undone by a read that started before it.

The secret is checked on every request: HMAC-SHA256 with the server-side pepper, compared in
constant time with the stored digest. Only after the secret matches does the caller learn that
the key is revoked or expired; an unknown id and a wrong secret get the same answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..core.principal import Principal
from ..errors import AuthenticationFailed, StorageError, UpstreamError
from ..keys.format import ParsedKey
from ..keys.service import KeyService, key_state
from ..store.base import KeyRecord, KeyStore
from .key_index import KeyIdIndex

__all__ = ["KeyAuthenticator"]

_MAX_ENTRIES = 65_536  # records of keys that exist
_MAX_ABSENT = 16_384  # ids found not to exist: a flood of them cannot evict the real ones
_MAX_READS = 4  # reads of one record overtaken by invalidations before giving up


@dataclass(slots=True)
class _Entry:
    record: KeyRecord | None
    fetched: float
    principal: Principal | None


_NOBODY = _Entry(None, 0.0, None)
# compared against when there is no record, so that the work is a wrong secret's
_DUMMY = KeyRecord(
    "", "", "0" * 64, datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 1, tzinfo=UTC)
)


class KeyAuthenticator:
    def __init__(
        self,
        store: KeyStore,
        keys: KeyService,
        *,
        ttl: float,
        index: KeyIdIndex | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._keys = keys
        self._ttl = ttl
        self._index = index
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._absent: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[_Entry]] = {}
        self._stale: set[str] = set()  # in-flight reads that an invalidation overtook
        self._tasks: set[asyncio.Task[_Entry]] = set()

    @property
    def ttl(self) -> float:
        return self._ttl

    def invalidate(self, key_id: str) -> None:
        """Forget ``key_id``'s record, after a change to it was written to the store."""
        self._cache.pop(key_id, None)
        self._absent.pop(key_id, None)
        if key_id in self._inflight:
            self._stale.add(key_id)

    async def close(self) -> None:
        """Stop background refreshes (before the store is closed)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def authenticate(self, key: ParsedKey, now: datetime) -> Principal:
        key_id = key.key_id
        entry = self._cache.get(key_id) or self._absent.get(key_id)
        mono = self._clock()
        if entry is None or mono - entry.fetched >= self._ttl:
            index = self._index
            if index is None or key_id in self._inflight or index.may_look_up(key_id):
                entry = await self._fetch(key_id)
            else:
                entry = _NOBODY  # an unknown id past the lookup budget: no store round trip
        elif mono - entry.fetched >= self._ttl / 2 and key_id not in self._inflight:
            self._refresh_in_background(key_id)
        record = entry.record
        # An unknown id costs the digest a wrong secret costs: no timing tells them apart.
        if not self._keys.verify(record or _DUMMY, key.full, now) or record is None:
            raise AuthenticationFailed(
                "Access denied: this Keyguard key is not valid. Check that you copied the whole "
                "key and that it was created on this gateway.",
                reason="unknown_key",
            )
        state = key_state(record, now)
        if state == "revoked":
            raise AuthenticationFailed(
                f"Access denied: Keyguard key {record.key_id} has been revoked. Ask for a new key.",
                reason="revoked_key",
            )
        if state == "suspended":
            raise AuthenticationFailed(
                f"Access denied: Keyguard key {record.key_id} is suspended. Contact the "
                "gateway's operators.",
                reason="suspended_key",
            )
        if state == "expired":
            raise AuthenticationFailed(
                f"Access denied: Keyguard key {record.key_id} expired. Ask for a new key.",
                reason="expired_key",
            )
        assert entry.principal is not None
        return entry.principal

    def _refresh_in_background(self, key_id: str) -> None:
        task = asyncio.ensure_future(self._fetch(key_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_swallow)

    async def _fetch(self, key_id: str) -> _Entry:
        pending = self._inflight.get(key_id)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[_Entry] = asyncio.get_running_loop().create_future()
        self._inflight[key_id] = fut
        try:
            fetched, record = await self._read(key_id)
            principal = (
                Principal("key", f"key:{record.key_id}", record.app, record.key_id)
                if record is not None
                else None
            )
            entry = _Entry(record, fetched, principal)
            table, bound = (self._cache, _MAX_ENTRIES) if record else (self._absent, _MAX_ABSENT)
            if len(table) >= bound and key_id not in table:
                table.pop(next(iter(table)))
            table[key_id] = entry
            (self._absent if record else self._cache).pop(key_id, None)
            if record is not None and self._index is not None:
                self._index.add(key_id)
            fut.set_result(entry)
            return entry
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except Exception as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[key_id]
            self._stale.discard(key_id)

    async def _read(self, key_id: str) -> tuple[float, KeyRecord | None]:
        """The record as the store has it now: read again while an invalidation overtakes
        the read (a bounded number of times, then 503 rather than a stale answer)."""
        for _ in range(_MAX_READS):
            self._stale.discard(key_id)
            fetched = self._clock()
            try:
                record = await self._store.get_key(key_id)
            except StorageError as exc:
                raise _store_unavailable() from exc
            if key_id not in self._stale:
                return fetched, record
        raise _store_unavailable()


def _store_unavailable() -> UpstreamError:
    return UpstreamError(
        "Keyguard cannot check credentials right now (its store is unavailable); retry shortly.",
        status=503,
        code="ServiceUnavailable",
        reason="store_unavailable",
    )


def _swallow(task: asyncio.Task[_Entry]) -> None:
    if not task.cancelled():
        task.exception()
