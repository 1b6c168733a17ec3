"""Counters shared by every replica, in Redis: one Lua call per reservation and per settlement.

The scripts (``lua/reserve.lua``, ``lua/settle.lua``, shipped in this package; called by
``EVALSHA`` over :mod:`.resp`'s single pipelined connection) run the same arithmetic as
:class:`~.backend.MemoryBackend` atomically inside Redis, over every line of the request at
once, so any number of replicas share one exact count. Keys carry the ``redis_key_prefix``
(default ``keyguard:{limits}:``; the braces keep every key in one Redis Cluster slot, which a
multi-key script needs).

Concurrency slots are leases (a sorted set of reservation ids scored by expiry): a replica
renews the leases of its requests in flight every third of ``concurrency_lease_s``, so a
replica that dies frees its slots within that time.

When Redis cannot be reached, :meth:`reserve` raises :class:`~.backend.BackendUnavailable`
at once (the caller refuses with 503, or uses its local fallback) and a probe reconnects in
the background; settlements that could not be written are kept (bounded) and replayed when
Redis is back. No restart is ever needed. A reservation whose answer never came (a timeout)
may or may not have been applied: it is cancelled afterwards, and every reservation carries a
marker key so that a settlement or cancellation applies at most once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from importlib import resources
from typing import Any

from .backend import EXPIRY_GRACE_S, BackendUnavailable, Outcome
from .model import Line, Plan
from .resp import RespClient, RespError

__all__ = ["RedisBackend"]

log = logging.getLogger("keyguard.limits")

_KIND = {"tokens": "t", "requests": "r", "cost": "m", "concurrent": "c"}
_MAX_PENDING = 100_000
_PROBE_S = 0.5
_MAX_TIMEOUTS = 3


def _refunds(amounts: Sequence[int]) -> list[int]:
    """Corrections that undo a reservation entirely."""
    return [-amount for amount in amounts]


def _script(name: str) -> str:
    return (resources.files(__package__) / "lua" / name).read_text(encoding="utf-8")


class RedisBackend:
    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        timeout_s: float,
        lease_s: float,
        journal_max_len: int = 0,
        password: str | None = None,
    ) -> None:
        self._client = RespClient(url, timeout=timeout_s, password=password)
        self._prefix = prefix
        self._lease_s = lease_s
        self._journal = prefix + "journal" if journal_max_len else ""
        self._journal_len = str(journal_max_len)
        self._scripts = {name: _script(name) for name in ("reserve.lua", "settle.lua")}
        self._shas = {
            name: hashlib.sha1(text.encode()).hexdigest() for name, text in self._scripts.items()
        }
        self._leases: dict[str, list[str]] = {}  # rid -> lease keys of requests in flight
        self._pending: deque[tuple[str, Sequence[Line], Sequence[int], float, str]] = deque(
            maxlen=_MAX_PENDING
        )
        self.healthy = True
        self._timeouts = 0
        self._probe: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._errors: tuple[type[BaseException], ...] = (
            RespError,
            ConnectionError,
            OSError,
            TimeoutError,
        )

    async def _eval(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """One script call (``EVALSHA``; on ``NOSCRIPT`` the script is loaded once, then
        called again)."""
        try:
            return await self._client.call("EVALSHA", self._shas[name], len(keys), *keys, *args)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self._client.call("SCRIPT", "LOAD", self._scripts[name])
        return await self._client.call("EVALSHA", self._shas[name], len(keys), *keys, *args)

    @property
    def journal_key(self) -> str:
        return self._journal

    async def start(self) -> None:
        try:
            await self._client.call("PING")
        except self._errors as exc:
            self._down(exc)
        self._renewer = asyncio.create_task(self._renew_leases())

    async def close(self) -> None:
        for task in (self._probe, self._renewer, self._flusher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._client.close()

    async def reserve(self, rid: str, plan: Plan, amounts: Sequence[int], now: float) -> Outcome:
        if not self.healthy:
            raise BackendUnavailable("redis is unreachable")
        prefix, lines = self._prefix, plan.lines
        keys = [prefix + key for key in plan.keys]
        keys.append(prefix + "r:" + rid)
        args: list[Any] = [repr(now), rid, repr(now + self._lease_s), self._journal]
        args.append(self._journal_len)
        for line, amount in zip(lines, amounts, strict=True):
            args += (
                _KIND[line.kind],
                line.limit,
                amount,
                math.ceil(line.window_end + EXPIRY_GRACE_S),
            )
        try:
            result = await self._eval("reserve.lua", keys, args)
        except self._errors as exc:
            # Unknown outcome: the script may have run. Cancel it (a no-op if it did not).
            self._pending.append((rid, lines, _refunds(amounts), now, "cancel"))
            self._failed(exc)
            raise BackendUnavailable("redis did not answer") from exc
        self._timeouts = 0
        allowed = result[0] == 1
        if allowed:
            leases = [k for k, line in zip(keys, lines, strict=False) if line.kind == "concurrent"]
            if leases:
                self._leases[rid] = leases
        return Outcome(allowed, tuple(int(v) for v in result[1:]))

    async def settle(
        self, rid: str, plan: Plan, deltas: Sequence[int], now: float
    ) -> tuple[int, ...]:
        self._leases.pop(rid, None)
        lines = plan.settled
        if not self.healthy:
            self._pending.append((rid, lines, deltas, now, "settle"))
            return tuple(-1 for _ in lines)
        try:
            return await self._apply(rid, lines, deltas, now, "settle")
        except self._errors as exc:
            self._pending.append((rid, lines, deltas, now, "settle"))
            self._failed(exc)
            return tuple(-1 for _ in lines)

    async def _apply(
        self, rid: str, lines: Sequence[Line], deltas: Sequence[int], now: float, op: str
    ) -> tuple[int, ...]:
        keys = [self._prefix + line.key for line in lines]
        keys.append(self._prefix + "r:" + rid)
        args: list[Any] = [repr(now), rid, self._journal, self._journal_len, op]
        for line, delta in zip(lines, deltas, strict=True):
            args += (_KIND[line.kind], delta)
        result = await self._eval("settle.lua", keys, args)
        if result == [-2]:  # already settled, or never reserved
            return tuple(-1 for _ in lines)
        return tuple(int(v) for v in result)

    async def first_alert(self, key: str, expires_at: float) -> bool:
        if not self.healthy:
            return True  # a duplicate alert rather than a missed one
        try:
            first = await self._client.call(
                "SET", self._prefix + key + ":alerted", 1, "NX", "EXAT", math.ceil(expires_at)
            )
        except self._errors as exc:
            self._down(exc)
            return True
        return bool(first)

    def _failed(self, exc: BaseException) -> None:
        """A refused connection means Redis is down; a timeout may be a busy moment: down
        after :data:`_MAX_TIMEOUTS` in a row. Either way pending work is flushed soon."""
        if isinstance(exc, TimeoutError):
            self._timeouts += 1
            if self._timeouts < _MAX_TIMEOUTS:
                if self._flusher is None or self._flusher.done():
                    self._flusher = asyncio.create_task(self._flush_soon())
                return
        self._down(exc)

    def _down(self, exc: BaseException) -> None:
        if self.healthy:
            log.error("limits backend redis is unreachable (%s); probing", type(exc).__name__)
        self.healthy = False
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._reconnect())

    async def _flush(self) -> None:
        """Apply the settlements and cancellations that could not be written."""
        while self._pending:
            await self._apply(*self._pending[0])
            self._pending.popleft()

    async def _flush_soon(self) -> None:
        try:
            await self._flush()
        except self._errors as exc:
            self._down(exc)

    async def _reconnect(self) -> None:
        while True:
            await asyncio.sleep(_PROBE_S)
            try:
                await self._client.call("PING")
                await self._flush()
            except self._errors:
                continue
            self._timeouts = 0
            self.healthy = True
            log.warning("limits backend redis is reachable again")
            return

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            if not self._leases or not self.healthy:
                continue
            until = time.time() + self._lease_s
            calls = [
                self._client.call("ZADD", key, "XX", repr(until), rid)
                for rid, keys in list(self._leases.items())
                for key in keys
            ]
            try:
                await asyncio.gather(*calls)  # pipelined on the one connection
            except self._errors as exc:
                self._down(exc)
