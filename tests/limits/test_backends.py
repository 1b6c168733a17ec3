"""One contract, every backend: atomic all-or-nothing reservations, settlement, slots, journal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from keyguard.limits.backend import Backend, MemoryBackend, Outcome
from keyguard.limits.model import Line, Plan, plan_of
from keyguard.limits.redis_backend import RedisBackend

# An aligned minute (2100-01-01) ahead of the real clock: Redis expires each counter at its
# window's end plus the grace (EXPIREAT, on Redis' own clock), so a moment already past would
# see its counters vanish as soon as they are written.
NOW = 4_102_444_800.0

Charge = tuple[Line, int]  # a line and what one request adds to it


def tokens(key: str, limit: int, amount: int, end: float = NOW + 60) -> Charge:
    return Line(key, "tokens", limit, end), amount


def slot(key: str, limit: int) -> Charge:
    return Line(key, "concurrent", limit, 0.0), 1


def plan(charges: list[Charge]) -> Plan:
    compiled = plan_of([c[0] for c in charges])
    assert compiled is not None
    return compiled


async def reserve(backend: Backend, rid: str, charges: list[Charge], now: float) -> Outcome:
    return await backend.reserve(rid, plan(charges), [c[1] for c in charges], now)


async def settle(
    backend: Backend, rid: str, charges: list[Charge], deltas: list[int], now: float
) -> tuple[int, ...]:
    return await backend.settle(rid, plan(charges), deltas, now)


@pytest.fixture
async def redis_backend(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisBackend]:
    """A started Redis backend under this test's own key prefix (30 s leases)."""
    started = RedisBackend(
        redis_url, prefix=redis_prefix, timeout_s=2, lease_s=30, journal_max_len=100
    )
    await started.start()
    try:
        yield started
    finally:
        await started.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return MemoryBackend(journal_max_len=100)
    redis: RedisBackend = request.getfixturevalue("redis_backend")
    return redis


async def journal(backend: Backend) -> list[dict[str, Any]]:
    if isinstance(backend, MemoryBackend):
        assert backend.journal is not None
        return list(backend.journal)
    assert isinstance(backend, RedisBackend)
    raw = await backend._client.call("XRANGE", backend.journal_key, "-", "+")
    return [orjson.loads(dict(zip(f[::2], f[1::2], strict=True))[b"d"]) for _, f in raw]


async def test_reservations_are_all_or_nothing(backend: Backend) -> None:
    lines = [tokens("a", 100, 60), tokens("b", 1000, 60)]
    assert (await reserve(backend, "r1", lines, NOW)).levels == (0, 0)
    refused = await reserve(backend, "r2", lines, NOW + 1)
    assert not refused.allowed and refused.levels == (60, 60)
    # Nothing was charged by the refusal: "b" still has 940 left, "a" 40.
    fits = await reserve(backend, "r3", [tokens("a", 100, 40), tokens("b", 1000, 940)], NOW + 2)
    assert fits.allowed and fits.levels == (60, 60)
    assert not (await reserve(backend, "r4", [tokens("b", 1000, 1)], NOW + 3)).allowed


async def test_settlement_corrects_to_the_real_usage(backend: Backend) -> None:
    line = tokens("a", 100, 80)
    assert (await reserve(backend, "r1", [line], NOW)).allowed
    assert await settle(backend, "r1", [line], [-50], NOW + 1) == (30,)
    assert (await reserve(backend, "r2", [tokens("a", 100, 70)], NOW + 2)).allowed
    # Real usage above the estimate is charged too: the window goes into debt.
    assert await settle(backend, "r2", [line], [25], NOW + 3) == (125,)
    assert not (await reserve(backend, "r3", [tokens("a", 100, 1)], NOW + 4)).allowed
    # Never below zero.
    assert (await reserve(backend, "r4", [tokens("b", 100, 10)], NOW + 5)).allowed
    assert await settle(backend, "r4", [tokens("b", 100, 10)], [-500], NOW + 6) == (0,)


async def test_a_reservation_is_settled_at_most_once(backend: Backend) -> None:
    line = tokens("once", 100, 50)
    assert await settle(backend, "ghost", [line], [7], NOW) == (-1,)
    assert (await reserve(backend, "r1", [line], NOW)).allowed
    assert await settle(backend, "r1", [line], [-10], NOW) == (40,)
    assert await settle(backend, "r1", [line], [-10], NOW) == (-1,)


async def test_settling_an_expired_window_changes_nothing(backend: Backend) -> None:
    line = tokens("old", 100, 50, end=NOW + 60)
    assert (await reserve(backend, "r1", [line], NOW)).allowed
    if isinstance(backend, MemoryBackend):
        backend._sweep(NOW + 60 + 901)
    else:
        assert isinstance(backend, RedisBackend)
        await backend._client.call("DEL", backend._prefix + "old")
    assert await settle(backend, "r1", [line], [-10], NOW + 2000) == (-1,)


async def test_concurrency_slots_are_taken_and_freed(backend: Backend) -> None:
    lines = [slot("c", 2)]
    assert (await reserve(backend, "r1", lines, NOW)).allowed
    assert (await reserve(backend, "r2", lines, NOW)).allowed
    refused = await reserve(backend, "r3", lines, NOW)
    assert not refused.allowed and refused.levels == (2,)
    assert await settle(backend, "r1", lines, [-1], NOW) == (1,)
    assert (await reserve(backend, "r3", lines, NOW)).allowed


@pytest.mark.redis
async def test_a_dead_replicas_slots_expire_with_their_lease(
    redis_backend: RedisBackend,
) -> None:
    assert (await reserve(redis_backend, "r1", [slot("c", 1)], NOW)).allowed
    assert not (await reserve(redis_backend, "r2", [slot("c", 1)], NOW + 29)).allowed
    assert (await reserve(redis_backend, "r2", [slot("c", 1)], NOW + 31)).allowed


async def test_the_journal_replays_every_change_in_order(backend: Backend) -> None:
    line = tokens("j", 100, 70)
    await reserve(backend, "r1", [line], NOW)
    await reserve(backend, "r2", [line], NOW + 1)
    await settle(backend, "r1", [line], [-20], NOW + 2)
    entries = await journal(backend)
    assert [(e["op"], e["rid"], e["amounts"], e["levels"]) for e in entries] == [
        ("reserve", "r1", [70], [0]),
        ("refuse", "r2", [70], [70]),
        ("settle", "r1", [-20], [50]),
    ]
    assert entries[0]["keys"][0].endswith("j") and entries[0]["limits"] == [100]


@pytest.mark.redis
async def test_redis_calls_share_their_encoded_frame_and_cancel_exactly(
    redis_backend: RedisBackend,
) -> None:
    # Non-ASCII names (an app called "café") and every kind of line.
    compiled = plan(
        [
            tokens("app:café:tpm", 1000, 300),
            (Line("app:café:rpm", "requests", 10, NOW + 60), 1),
            slot("app:café:conc", 2),
            (Line("app:café:costd", "cost", 10**6, NOW + 86_400), 4000),
        ]
    )
    first = await redis_backend.reserve("r1", compiled, [300, 1, 1, 4000], NOW)
    second = await redis_backend.reserve("r2", compiled, [100, 1, 1, 1000], NOW)
    assert first.levels == (0, 0, 0, 0) and second.levels == (300, 1, 1, 4000)
    assert len(redis_backend._frames) == 1  # the second call reused the first one's bytes
    # A reservation whose answer was lost is cancelled: every line refunded, once.
    refunds = [-300, -1, -1, -4000]
    cancel = redis_backend._apply
    assert await cancel("r1", compiled.lines, refunds, NOW, "cancel") == (100, 1, 1, 1000)
    assert await cancel("r1", compiled.lines, refunds, NOW, "cancel") == (-1,) * 4
    assert await redis_backend.settle("r2", compiled, [-50, -1, -500], NOW) == (50, 0, 500)
    with pytest.raises(ValueError):  # never a call the script would misread
        await redis_backend.reserve("r3", compiled, [1, 1], NOW)
    assert (await redis_backend.reserve("r4", compiled, [1, 1, 1, 1], NOW)).allowed  # still up


async def snapshot(backend: Backend) -> Any:
    """Everything the backend holds (to prove a read changed none of it)."""
    if isinstance(backend, MemoryBackend):
        return dict(backend.counters), dict(backend.expiry)
    assert isinstance(backend, RedisBackend)
    client, prefix = backend._client, backend._prefix
    found: dict[bytes, Any] = {}
    for key in await client.call("KEYS", prefix + "*"):
        kind = await client.call("TYPE", key)
        if kind == b"zset" or kind == "zset":
            value = await client.call("ZRANGE", key, 0, -1, "WITHSCORES")
        elif kind in (b"string", "string"):
            value = await client.call("GET", key)
        else:
            value = kind
        found[key] = (value, await client.call("PEXPIRETIME", key))
    return found


async def test_levels_are_read_without_changing_anything(backend: Backend) -> None:
    lines = [tokens("t", 100, 30), slot("c", 5), (Line("m", "cost", 10**6, NOW + 60), 7)]
    await reserve(backend, "r1", lines, NOW)
    await reserve(backend, "r2", [tokens("t", 100, 20), slot("c", 5)], NOW + 1)
    await settle(backend, "r1", lines, [-10, -1, 3], NOW + 2)  # r1: 20 tokens, 10 micro
    before = await snapshot(backend)
    read = [c[0] for c in lines] + [Line("never", "requests", 9, NOW + 60)]
    for _ in range(3):
        assert await backend.levels(read, NOW + 3) == (40, 1, 10, 0)
    assert await backend.levels([], NOW + 3) == ()
    assert await snapshot(backend) == before


@pytest.mark.redis
async def test_levels_of_a_passed_window_or_an_expired_lease_read_zero(
    redis_backend: RedisBackend,
) -> None:
    memory = MemoryBackend()
    for backend in (memory, redis_backend):
        await reserve(backend, "r1", [tokens("w", 100, 30, NOW + 60), slot("s", 5)], NOW)
    assert await memory.levels([Line("w", "tokens", 100, NOW + 60)], NOW + 60 + 900) == (0,)
    # The Redis lease runs 30 s from the reservation: after it, the slot is not counted.
    assert await redis_backend.levels([Line("s", "concurrent", 5, 0.0)], NOW + 10) == (1,)
    assert await redis_backend.levels([Line("s", "concurrent", 5, 0.0)], NOW + 31) == (0,)


@pytest.mark.redis
async def test_levels_refuse_to_guess_when_redis_lost_its_counters(
    redis_backend: RedisBackend,
) -> None:
    from keyguard.limits.backend import BackendUnavailable

    await redis_backend._client.call("DEL", redis_backend._state_key)
    with pytest.raises(BackendUnavailable):
        await redis_backend.levels([Line("x", "tokens", 1, NOW + 60)], NOW)
