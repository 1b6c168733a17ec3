"""The rotation tables on SQLite and PostgreSQL: leases, compare-and-set, acks, key records."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from keyguard.rotation.machine import Rotation, advance
from keyguard.rotation.replicas import ReplicaReporter
from keyguard.rotation.store import KeyRotationRecord, ReplicaAck, RotationStore

T0 = datetime(2030, 1, 1, tzinfo=UTC)
TTL = timedelta(seconds=60)


async def test_a_lease_has_one_holder_until_it_expires(rotation_store: RotationStore) -> None:
    assert await rotation_store.acquire_lease("rotation:east", "a", T0, TTL)
    assert not await rotation_store.acquire_lease("rotation:east", "b", T0, TTL)
    assert await rotation_store.acquire_lease("rotation:west", "b", T0, TTL)
    assert await rotation_store.acquire_lease("rotation:east", "a", T0 + timedelta(seconds=30), TTL)
    assert not await rotation_store.acquire_lease(
        "rotation:east", "b", T0 + timedelta(seconds=89), TTL
    )
    assert await rotation_store.acquire_lease("rotation:east", "b", T0 + timedelta(seconds=90), TTL)
    assert await rotation_store.lease_holder("rotation:east") == (
        "b",
        T0 + timedelta(seconds=150),
    )
    await rotation_store.release_lease("rotation:east", "a")  # not a's any more: no effect
    assert (await rotation_store.lease_holder("rotation:east") or ("",))[0] == "b"
    await rotation_store.release_lease("rotation:east", "b")
    assert await rotation_store.lease_holder("rotation:east") is None


async def test_concurrent_takers_get_the_lease_exactly_once(
    rotation_store: RotationStore,
) -> None:
    results = await asyncio.gather(
        *(rotation_store.acquire_lease("rotation:east", f"r{i}", T0, TTL) for i in range(8))
    )
    assert sum(results) == 1


async def test_rotations_are_compare_and_set(rotation_store: RotationStore) -> None:
    r = Rotation("id-1", "east", "flip", "planned", "manual", T0, T0)
    await rotation_store.create_rotation(r)
    assert await rotation_store.open_rotation("east") == r
    nxt = advance(r, "inspect", T0 + timedelta(seconds=1), active_slot="key1", active_fp="f")
    assert await rotation_store.update_rotation(nxt, expected_updated_at=r.updated_at)
    assert not await rotation_store.update_rotation(nxt, expected_updated_at=r.updated_at)
    assert await rotation_store.get_rotation("id-1") == nxt
    done = replace(nxt, state="done", updated_at=T0 + timedelta(seconds=2), finished_at=T0)
    assert await rotation_store.update_rotation(done, expected_updated_at=nxt.updated_at)
    assert await rotation_store.open_rotation("east") is None
    assert [x.id for x in await rotation_store.rotations("east")] == ["id-1"]
    assert await rotation_store.rotations("west") == []


async def test_acks_are_upserted_and_forgotten(rotation_store: RotationStore) -> None:
    first = ReplicaAck("r1", "east", "3", T0, T0)
    await rotation_store.ack(first)
    later = replace(first, version="4", seen_at=T0 + timedelta(seconds=5))
    await rotation_store.ack(later)
    await rotation_store.ack(ReplicaAck("r2", "east", "4", T0, T0))
    assert sorted(await rotation_store.acks("east"), key=lambda a: a.replica) == [
        later,
        ReplicaAck("r2", "east", "4", T0, T0),
    ]
    await rotation_store.forget_replica("r1")
    assert [a.replica for a in await rotation_store.acks("east")] == ["r2"]


async def test_key_rotation_records(rotation_store: RotationStore) -> None:
    rec = KeyRotationRecord("k" * 12, "t1", "a" * 64, "b" * 64, T0, T0 + TTL, None)
    assert await rotation_store.record_key_rotation(rec)
    assert not await rotation_store.record_key_rotation(rec)
    assert await rotation_store.key_rotation("k" * 12, "t1") == rec
    newer = replace(rec, token_digest="t2", rotated_at=T0 + timedelta(days=10))
    assert await rotation_store.record_key_rotation(newer)
    assert await rotation_store.last_key_rotation("k" * 12) == newer
    assert await rotation_store.last_key_rotations() == {"k" * 12: newer.rotated_at}
    await rotation_store.prune_key_rotations(T0 + timedelta(days=20))
    assert await rotation_store.key_rotation("k" * 12, "t1") is None
    assert await rotation_store.key_rotation("k" * 12, "t2") == newer  # the newest is kept
    await rotation_store.forget_key_rotation("k" * 12, "t2")
    assert await rotation_store.last_key_rotation("k" * 12) is None


class _Provider:
    """A versioned provider double: what a replica serves."""

    def __init__(self) -> None:
        self.version: str | None = "1"
        self.switched_at: float | None = 1_900_000_000.0
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    async def refresh(self) -> None:
        self.version = "2"
        self.switched_at = 1_900_000_100.0
        for listener in self._listeners:
            listener()


async def test_a_replica_reports_what_it_serves_and_forgets_it_on_stop(
    rotation_store: RotationStore,
) -> None:
    provider = _Provider()
    reporter = ReplicaReporter(rotation_store, "replica-a", {"east": provider}, interval_s=3600)
    await reporter.start()
    try:
        [ack] = await rotation_store.acks("east")
        assert (ack.replica, ack.version) == ("replica-a", "1")
        reported = asyncio.Event()
        original = rotation_store.ack

        async def spy(a: ReplicaAck) -> None:
            await original(a)
            reported.set()

        rotation_store.ack = spy  # type: ignore[method-assign,assignment]
        await provider.refresh()  # a switch is reported at once, not at the next heartbeat
        await asyncio.wait_for(reported.wait(), 30)
        [ack] = await rotation_store.acks("east")
        assert ack.version == "2"
        assert ack.switched_at == datetime.fromtimestamp(1_900_000_100.0, UTC)
    finally:
        await reporter.close()
    assert await rotation_store.acks("east") == []
