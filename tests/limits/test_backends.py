"""One contract, every backend: atomic all-or-nothing reservations, settlement, slots, journal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from keyguard.limits.backend import Backend, MemoryBackend
from keyguard.limits.model import Line
from keyguard.limits.redis_backend import RedisBackend

NOW = 1_800_000_000.0  # an aligned minute


def tokens(key: str, limit: int, amount: int, end: float = NOW + 60) -> Line:
    return Line(key, "tokens", limit, amount, end)


def slot(key: str, limit: int) -> Line:
    return Line(key, "concurrent", limit, 1, 0.0)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield MemoryBackend(journal_max_len=100)
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    redis_backend = RedisBackend(url, prefix=prefix, timeout_s=2, lease_s=30, journal_max_len=100)
    await redis_backend.start()
    try:
        yield redis_backend
    finally:
        await redis_backend.close()


async def journal(backend: Backend) -> list[dict[str, Any]]:
    if isinstance(backend, MemoryBackend):
        assert backend.journal is not None
        return list(backend.journal)
    assert isinstance(backend, RedisBackend)
    raw = await backend._client.call("XRANGE", backend.journal_key, "-", "+")
    return [orjson.loads(dict(zip(f[::2], f[1::2], strict=True))[b"d"]) for _, f in raw]


async def test_reservations_are_all_or_nothing(backend: Backend) -> None:
    lines = [tokens("a", 100, 60), tokens("b", 1000, 60)]
    assert (await backend.reserve("r1", lines, NOW)).levels == (0, 0)
    refused = await backend.reserve("r2", lines, NOW + 1)
    assert not refused.allowed and refused.levels == (60, 60)
    # Nothing was charged by the refusal: "b" still has 940 left, "a" 40.
    fits = await backend.reserve("r3", [tokens("a", 100, 40), tokens("b", 1000, 940)], NOW + 2)
    assert fits.allowed and fits.levels == (60, 60)
    assert not (await backend.reserve("r4", [tokens("b", 1000, 1)], NOW + 3)).allowed


async def test_settlement_corrects_to_the_real_usage(backend: Backend) -> None:
    line = tokens("a", 100, 80)
    assert (await backend.reserve("r1", [line], NOW)).allowed
    assert await backend.settle("r1", [line], [-50], NOW + 1) == (30,)
    assert (await backend.reserve("r2", [tokens("a", 100, 70)], NOW + 2)).allowed
    # Real usage above the estimate is charged too: the window goes into debt.
    assert await backend.settle("r2", [line], [25], NOW + 3) == (125,)
    assert not (await backend.reserve("r3", [tokens("a", 100, 1)], NOW + 4)).allowed
    # Never below zero.
    assert (await backend.reserve("r4", [tokens("b", 100, 10)], NOW + 5)).allowed
    assert await backend.settle("r4", [tokens("b", 100, 10)], [-500], NOW + 6) == (0,)


async def test_a_reservation_is_settled_at_most_once(backend: Backend) -> None:
    line = tokens("once", 100, 50)
    assert await backend.settle("ghost", [line], [7], NOW) == (-1,)
    assert (await backend.reserve("r1", [line], NOW)).allowed
    assert await backend.settle("r1", [line], [-10], NOW) == (40,)
    assert await backend.settle("r1", [line], [-10], NOW) == (-1,)


async def test_settling_an_expired_window_changes_nothing(backend: Backend) -> None:
    line = tokens("old", 100, 50, end=NOW + 60)
    assert (await backend.reserve("r1", [line], NOW)).allowed
    if isinstance(backend, MemoryBackend):
        backend._sweep(NOW + 60 + 901)
    else:
        assert isinstance(backend, RedisBackend)
        await backend._client.call("DEL", backend._prefix + "old")
    assert await backend.settle("r1", [line], [-10], NOW + 2000) == (-1,)


async def test_concurrency_slots_are_taken_and_freed(backend: Backend) -> None:
    lines = [slot("c", 2)]
    assert (await backend.reserve("r1", lines, NOW)).allowed
    assert (await backend.reserve("r2", lines, NOW)).allowed
    refused = await backend.reserve("r3", lines, NOW)
    assert not refused.allowed and refused.levels == (2,)
    assert await backend.settle("r1", lines, [-1], NOW) == (1,)
    assert (await backend.reserve("r3", lines, NOW)).allowed


@pytest.mark.redis
async def test_a_dead_replicas_slots_expire_with_their_lease(
    redis_url: str, redis_prefix: str
) -> None:
    backend = RedisBackend(redis_url, prefix=redis_prefix, timeout_s=2, lease_s=30)
    await backend.start()
    try:
        assert (await backend.reserve("r1", [slot("c", 1)], NOW)).allowed
        assert not (await backend.reserve("r2", [slot("c", 1)], NOW + 29)).allowed
        assert (await backend.reserve("r2", [slot("c", 1)], NOW + 31)).allowed
    finally:
        await backend.close()


async def test_the_journal_replays_every_change_in_order(backend: Backend) -> None:
    line = tokens("j", 100, 70)
    await backend.reserve("r1", [line], NOW)
    await backend.reserve("r2", [line], NOW + 1)
    await backend.settle("r1", [line], [-20], NOW + 2)
    entries = await journal(backend)
    assert [(e["op"], e["rid"], e["amounts"], e["levels"]) for e in entries] == [
        ("reserve", "r1", [70], [0]),
        ("refuse", "r2", [70], [70]),
        ("settle", "r1", [-20], [50]),
    ]
    assert entries[0]["keys"][0].endswith("j") and entries[0]["limits"] == [100]
