"""A flood of made-up key ids cannot reach the store, and costs what a wrong secret costs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from keyguard.errors import AuthenticationFailed
from keyguard.identity.key_index import KeyIdIndex
from keyguard.identity.keys import KeyAuthenticator
from keyguard.keys.format import generate_key, parse_key
from keyguard.store.base import KeyRecord
from keyguard.wiring.runtime import Runtime


class Counting:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lookups = 0

    async def get_key(self, key_id: str) -> KeyRecord | None:
        self.lookups += 1
        record: KeyRecord | None = await self.inner.get_key(key_id)
        return record

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rt(sqlite_runtime: Runtime) -> Runtime:
    return sqlite_runtime


async def check(auth: KeyAuthenticator, key: str) -> bool:
    parsed = parse_key(key)
    assert parsed is not None
    try:
        await auth.authenticate(parsed, datetime.now(UTC))
    except AuthenticationFailed:
        return False
    return True


async def test_a_flood_of_unknown_ids_stays_within_the_lookup_budget(rt: Runtime) -> None:
    _, known = await rt.keys.create("billing", now=datetime.now(UTC))
    store, clock = Counting(rt.store), Clock()
    index = KeyIdIndex(store, refresh_s=3600, lookups_per_s=10, clock=clock)
    await index.start()
    auth = KeyAuthenticator(store, rt.keys, ttl=2.0, index=index, clock=clock)
    try:
        for _ in range(1000):
            assert not await check(auth, generate_key().full)
        assert store.lookups <= 20  # the burst, then nothing until the bucket refills
        assert index.skipped >= 980
        assert await check(auth, known)  # a key the index knows is never held back
        clock.now += 1.0  # one second refills ten lookups
        before = store.lookups
        for _ in range(100):
            await check(auth, generate_key().full)
        assert store.lookups - before <= 10
    finally:
        await auth.close()
        await index.close()


async def test_a_key_created_elsewhere_is_found_and_then_known(rt: Runtime) -> None:
    store = Counting(rt.store)
    index = KeyIdIndex(store, refresh_s=3600, lookups_per_s=10)
    await index.start()
    auth = KeyAuthenticator(store, rt.keys, ttl=2.0, index=index)
    try:
        record, key = await rt.keys.create("billing", now=datetime.now(UTC))  # "another replica"
        assert await check(auth, key)  # not in the index yet: looked up within the budget
        assert record.key_id in index._ids
        _, later = await rt.keys.create("billing", now=datetime.now(UTC))
        await index.refresh()  # the periodic refresh reads the keys changed since
        assert parse_key(later).key_id in index._ids  # type: ignore[union-attr]
    finally:
        await auth.close()
        await index.close()


async def test_unknown_ids_cannot_evict_the_records_of_real_keys(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keyguard.identity.keys as module

    monkeypatch.setattr(module, "_MAX_ABSENT", 100)
    monkeypatch.setattr(module, "_MAX_ENTRIES", 100)
    _, known = await rt.keys.create("billing", now=datetime.now(UTC))
    store = Counting(rt.store)
    auth = KeyAuthenticator(store, rt.keys, ttl=3600)
    try:
        assert await check(auth, known)
        for _ in range(150):  # more made-up ids than either cache holds
            assert not await check(auth, generate_key().full)
        assert len(auth._absent) <= 100
        lookups = store.lookups
        assert await check(auth, known)
        assert store.lookups == lookups  # the real key's record was still cached
    finally:
        await auth.close()


async def test_an_unknown_id_computes_the_digest_a_wrong_secret_does(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    record, key = await rt.keys.create("billing", now=datetime.now(UTC))
    auth = KeyAuthenticator(rt.store, rt.keys, ttl=3600)
    calls: list[str] = []
    real = rt.keys.digest

    def counted(full: str) -> str:
        calls.append(full)
        return real(full)

    monkeypatch.setattr(rt.keys, "digest", counted)
    try:
        wrong_secret = generate_key(record.key_id).full
        assert not await check(auth, wrong_secret)
        assert not await check(auth, generate_key().full)
        assert len(calls) == 2  # one digest each: the same work
    finally:
        await auth.close()


async def test_a_burst_of_first_uses_of_a_new_key_costs_one_lookup(rt: Runtime) -> None:
    """Requests that arrive together with a key the index does not know yet wait for one
    lookup: they do not each spend the budget (and get refused past it)."""
    store = Counting(rt.store)
    index = KeyIdIndex(store, refresh_s=3600, lookups_per_s=1)
    await index.start()
    auth = KeyAuthenticator(store, rt.keys, ttl=2.0, index=index)
    try:
        _, key = await rt.keys.create("billing", now=datetime.now(UTC))
        results = await asyncio.gather(*(check(auth, key) for _ in range(50)))
        assert all(results) and store.lookups == 1
    finally:
        await auth.close()
        await index.close()
