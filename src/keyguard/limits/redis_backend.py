"""Counters shared by every replica, in Redis: one Lua call per reservation and per settlement.

The scripts (``lua/reserve.lua``, ``lua/settle.lua``, shipped in this package; called by
``EVALSHA`` over :mod:`.resp`'s single pipelined connection) run the same arithmetic as
:class:`~.backend.MemoryBackend` atomically inside Redis, over every line of the request at
once, so any number of replicas share one exact count. A call's arguments put what changes
per request (time, id, amounts) between the keys and what a plan's lines share (kinds,
limits, expiries): the shared head and tail are encoded once per plan, only the middle per
request. Keys carry the ``redis_key_prefix`` (default ``keyguard:{limits}:``; the braces keep
every key in one Redis Cluster slot, which a multi-key script needs).

Concurrency slots are leases (a sorted set of reservation ids scored by expiry): a replica
renews the leases of its requests in flight every third of ``concurrency_lease_s``, so a
replica that dies frees its slots within that time.

When Redis cannot be reached, :meth:`reserve` raises :class:`~.backend.BackendUnavailable`
at once (the caller refuses with 503, or uses its local fallback) and a probe reconnects in
the background; settlements that could not be written are kept (bounded) and replayed when
Redis is back. No restart is ever needed. A reservation whose answer never came (a timeout)
may or may not have been applied: it is cancelled afterwards, and every reservation carries a
marker key so that a settlement or cancellation applies at most once.

A Redis that restarts without persistence comes back empty. A state marker (``state`` under
the prefix) tells: every reservation checks it inside the script, and while it is missing
nothing is reserved (:class:`~.backend.BackendUnavailable`: 503, or the local fallback) until
a replica has raised the counters back to the levels the store keeps (:mod:`.keeper`, through
the ``restore`` hook) and set the marker again. The counters this replica charged are noted
(:meth:`touched_levels`) so that the keeper can save their levels.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, NamedTuple

from .backend import EXPIRY_GRACE_S, BackendUnavailable, Outcome
from .model import Line, Plan
from .resp import RespClient, RespError, bulks

__all__ = ["RedisBackend"]

log = logging.getLogger("keyguard.limits")

_KIND = {"tokens": "t", "requests": "r", "cost": "m", "concurrent": "c"}
_MAX_PENDING = 100_000
_MAX_FRAMES = 16_384
_PROBE_S = 0.5
_MAX_TIMEOUTS = 3
_MAX_TOUCHED = 200_000  # counters noted for the next save; past it, new ones are not noted
_RESTORE_BATCH = 500

#: The hook that gives the saved counters: (key without the prefix, level, expiry).
Restore = Callable[[], Awaitable[list[tuple[str, int, float]]]]


def _refunds(amounts: Sequence[int]) -> list[int]:
    """Corrections that undo a reservation entirely."""
    return [-amount for amount in amounts]


def _script(name: str) -> str:
    return (resources.files(__package__) / "lua" / name).read_text(encoding="utf-8")


class _Frame(NamedTuple):
    """A script call's encoded parts shared by every request of one tuple of lines."""

    lines: tuple[Line, ...]  # what it was built for (the cache is keyed by its id)
    shared: int  # how many arguments head and tail hold together
    head: bytes  # EVALSHA, the script's digest, the key count, the keys
    tail: bytes  # the per-line arguments that do not change, the journal's key and length


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
        self._scripts = {
            name: _script(name)
            for name in ("reserve.lua", "settle.lua", "restore.lua", "levels.lua")
        }
        self._shas = {
            name: hashlib.sha1(text.encode()).hexdigest() for name, text in self._scripts.items()
        }
        self._frames: dict[tuple[str, int], _Frame] = {}
        self._leases: dict[str, list[str]] = {}  # rid -> lease keys of requests in flight
        self._pending: deque[tuple[str, tuple[Line, ...], Sequence[int], float, str]] = deque(
            maxlen=_MAX_PENDING
        )
        self.healthy = True
        self.restore: Restore | None = None  # set by the keeper (:mod:`.keeper`)
        self._state_key = prefix + "state"
        self._touched: dict[str, float] = {}  # counter key (no prefix) -> its expiry
        self.restores = 0  # times the counters were found lost and restored (a metric)
        self._timeouts = 0
        self._probe: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._read_only = "EVALSHA_RO"  # Redis 7; EVALSHA on an older server
        self._errors: tuple[type[BaseException], ...] = (
            RespError,
            ConnectionError,
            OSError,
            TimeoutError,
        )

    def _frame(self, name: str, lines: tuple[Line, ...]) -> _Frame:
        """The shared parts of a ``name`` call over ``lines`` (encoded once, then cached)."""
        frame = self._frames.get((name, id(lines)))
        if frame is not None and frame.lines is lines:
            return frame
        tail: list[str] = []
        if name == "reserve.lua":
            for line in lines:
                expires = math.ceil(line.window_end + EXPIRY_GRACE_S)
                tail += (_KIND[line.kind], str(line.limit), str(expires))
        else:
            tail += [_KIND[line.kind] for line in lines]
        tail += (self._journal, self._journal_len)
        extra = 2 if name == "reserve.lua" else 1  # the reservation's marker (and the state's)
        head = ["EVALSHA", self._shas[name], str(len(lines) + extra)]
        head += [self._prefix + line.key for line in lines]
        frames = self._frames
        if len(frames) >= _MAX_FRAMES:  # drop the oldest quarter (windows turn: they are stale)
            for stale in list(itertools.islice(frames, _MAX_FRAMES // 4)):
                del frames[stale]
        frame = frames[(name, id(lines))] = _Frame(
            lines, len(head) + len(tail), bulks(head), bulks(tail)
        )
        return frame

    async def _eval(self, name: str, lines: tuple[Line, ...], middle: list[str]) -> Any:
        """One script call over ``lines``; ``middle``: the reservation's marker key (and the
        state marker's, to reserve), then the arguments of this request (one per line, after
        4). On ``NOSCRIPT`` the script is loaded, then called again."""
        frame = self._frame(name, lines)
        keys = 2 if name == "reserve.lua" else 1
        if len(middle) != 3 + keys + len(lines):  # never send a call the script would misread
            raise ValueError(f"{len(middle) - 4} values for {len(lines)} lines")
        size = frame.shared + len(middle)
        command = b"*%d\r\n" % size + frame.head + bulks(middle) + frame.tail
        try:
            return await self._client.call_encoded(command)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self._client.call("SCRIPT", "LOAD", self._scripts[name])
        return await self._client.call_encoded(command)

    @property
    def journal_key(self) -> str:
        return self._journal

    async def start(self) -> None:
        try:
            await self._client.call("PING")
            await self._ensure_state()
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
        middle = [self._prefix + "r:" + rid, self._state_key, repr(now), rid]
        middle += (repr(now + self._lease_s), *map(str, amounts))
        try:
            result = await self._eval("reserve.lua", plan.lines, middle)
        except self._errors as exc:
            # Unknown outcome: the script may have run. Cancel it (a no-op if it did not).
            self._pending.append((rid, plan.lines, _refunds(amounts), now, "cancel"))
            self._failed(exc)
            raise BackendUnavailable("redis did not answer") from exc
        self._timeouts = 0
        if result[0] == -1:  # Redis restarted empty: restore before anything is reserved
            self._down(RespError("the counters are lost"))
            raise BackendUnavailable("redis lost its counters; restoring them")
        allowed = result[0] == 1
        if allowed:
            if plan.slots:
                self._leases[rid] = [self._prefix + key for key in plan.slots]
            self._note(plan.lines)
        return Outcome(allowed, tuple(result[1:]))

    def _note(self, lines: tuple[Line, ...]) -> None:
        touched = self._touched
        for line in lines:
            if line.kind != "concurrent" and (line.key in touched or len(touched) < _MAX_TOUCHED):
                touched[line.key] = line.window_end + EXPIRY_GRACE_S

    async def touched_levels(self, now: float) -> list[tuple[str, int, float]]:
        """The current level of every counter charged here since the last call (key without
        the prefix, level, expiry); counters whose window has passed are left out."""
        touched = {k: e for k, e in self._touched.items() if e > now}
        self._touched = {}
        keys = list(touched)
        found: list[tuple[str, int, float]] = []
        try:
            for i in range(0, len(keys), _RESTORE_BATCH):
                batch = keys[i : i + _RESTORE_BATCH]
                values = await self._client.call("MGET", *(self._prefix + k for k in batch))
                for key, value in zip(batch, values, strict=True):
                    if value is not None:
                        found.append((key, int(value), touched[key]))
        except BaseException:
            for key, expiry in touched.items():  # noted again for the next save
                self._touched.setdefault(key, expiry)
            raise
        return found

    async def _ensure_state(self) -> None:
        """Restore the counters if Redis lost them (no state marker), then mark the state."""
        if await self._client.call("EXISTS", self._state_key):
            return
        try:
            saved = await self.restore() if self.restore is not None else []
        except Exception as exc:  # the store: keep refusing, the probe tries again
            log.error("could not read the saved limits counters: %s", type(exc).__name__)
            raise ConnectionError("the saved counters could not be read") from exc
        for i in range(0, len(saved), _RESTORE_BATCH):
            batch = saved[i : i + _RESTORE_BATCH]
            args: list[Any] = ["EVAL", self._scripts["restore.lua"], len(batch)]
            args += [self._prefix + key for key, _, _ in batch]
            for _, level, expiry in batch:
                args += (level, math.ceil(expiry))
            await self._client.call(*args)
        await self._client.call("SET", self._state_key, 1)
        self.restores += 1
        if saved or self.restores > 1:
            log.warning("limits backend redis had lost its counters: %d restored", len(saved))

    async def settle(
        self, rid: str, plan: Plan, deltas: Sequence[int], now: float
    ) -> tuple[int, ...]:
        self._leases.pop(rid, None)
        lines = plan.settled
        if not self.healthy:
            self._pending.append((rid, lines, deltas, now, "settle"))
            return (-1,) * len(lines)
        try:
            levels = await self._apply(rid, lines, deltas, now, "settle")
        except self._errors as exc:
            self._pending.append((rid, lines, deltas, now, "settle"))
            self._failed(exc)
            return (-1,) * len(lines)
        self._note(lines)  # the settled level is the one to save
        return levels

    async def _apply(
        self, rid: str, lines: tuple[Line, ...], deltas: Sequence[int], now: float, op: str
    ) -> tuple[int, ...]:
        middle = [self._prefix + "r:" + rid, repr(now), rid, op]
        middle += map(str, deltas)
        result = await self._eval("settle.lua", lines, middle)
        if result == [-2]:  # already settled, or never reserved
            return (-1,) * len(lines)
        return tuple(result)

    async def levels(self, lines: Sequence[Line], now: float) -> tuple[int, ...]:
        """The lines' levels in one read-only script call (``levels.lua``): nothing changes,
        not even an expired concurrency lease."""
        if not self.healthy:
            raise BackendUnavailable("redis is unreachable")
        if not lines:
            return ()
        keys = [self._prefix + line.key for line in lines] + [self._state_key]
        args = [repr(now), *(_KIND[line.kind] for line in lines)]
        try:
            result = await self._call_read_only("levels.lua", keys, args)
        except self._errors as exc:
            raise BackendUnavailable("redis did not answer") from exc
        if result == [-1]:
            raise BackendUnavailable("redis lost its counters; restoring them")
        return tuple(int(level) for level in result[1:])

    async def _call_read_only(self, name: str, keys: list[str], args: list[str]) -> Any:
        """``EVALSHA_RO`` (the server refuses any write), loading the script on ``NOSCRIPT``;
        plain ``EVALSHA`` on a server older than Redis 7."""
        for _ in range(3):
            try:
                return await self._client.call(
                    self._read_only, self._shas[name], len(keys), *keys, *args
                )
            except RespError as exc:
                text = str(exc)
                if text.startswith("NOSCRIPT"):
                    await self._client.call("SCRIPT", "LOAD", self._scripts[name])
                elif "unknown command" in text.lower() and self._read_only != "EVALSHA":
                    self._read_only = "EVALSHA"
                else:
                    raise
        raise RespError(f"{name} could not be run")

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
                await self._ensure_state()
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
