"""The embedded default keeps hour/day/month quotas and budgets across a restart."""

from __future__ import annotations

from pathlib import Path

from keyguard.limits.model import Line, plan_of
from keyguard.limits.persist import PersistentMemoryBackend
from keyguard.store import open_store
from keyguard.store.sql import SQLStore

NOW = 1_800_000_000.0


async def test_long_windows_survive_a_restart_and_minutes_do_not(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'k.db'}")
    assert isinstance(store, SQLStore)
    clock = [NOW]
    try:
        lines = [
            Line(f"app:a:tpm:{int(NOW)}", "tokens", 1000, NOW + 60),
            Line(f"app:a:tpd:{int(NOW)}", "tokens", 10_000, NOW + 86_400),
            Line(f"team:t:costmo:{int(NOW)}", "cost", 10**9, NOW + 86_400 * 30),
        ]
        plan, day = plan_of(lines), plan_of(lines[1:2])
        assert plan is not None and day is not None
        first = PersistentMemoryBackend(store.engine, interval_s=3600, clock=lambda: clock[0])
        await first.start()
        assert (await first.reserve("r1", plan, [300, 300, 4000], NOW)).allowed
        await first.settle("r1", plan, [-100, -100, -1000], NOW)
        await first.close()

        second = PersistentMemoryBackend(store.engine, interval_s=3600, clock=lambda: clock[0])
        await second.start()
        assert second.counters == {lines[1].key: 200, lines[2].key: 3000}
        assert not (await second.reserve("r2", day, [9801], NOW)).allowed
        await second.close()

        clock[0] = NOW + 86_400 + 901  # the day window (and its grace) is over
        third = PersistentMemoryBackend(store.engine, interval_s=3600, clock=lambda: clock[0])
        await third.start()
        assert list(third.counters) == [lines[2].key]
        await third.close()
    finally:
        await store.close()


async def test_saved_levels_are_upserted_by_concurrent_savers_on_every_backend(
    store_url: str,
) -> None:
    """Replicas save the same counters at once (the shared Redis counters): no save fails on
    a key another one wrote, the last level wins, expired rows go."""
    import asyncio

    from keyguard.limits.persist import load_levels, store_levels

    store = await open_store(store_url)
    assert isinstance(store, SQLStore)
    try:
        keys = [f"app:a{i}:tpd:{int(NOW)}" for i in range(50)]
        await asyncio.gather(
            *(
                store_levels(store.engine, [(k, level, NOW + 100) for k in reversed(keys)], NOW)
                for level in range(1, 9)
            )
        )
        levels = await load_levels(store.engine, NOW)
        assert {k for k, _, _ in levels} == set(keys)
        assert len({level for _, level, _ in levels}) == 1  # one saver's levels for each key...
        await store_levels(store.engine, [(keys[0], 99, NOW + 100)], NOW)
        assert (keys[0], 99, NOW + 100) in await load_levels(store.engine, NOW)
        await store_levels(store.engine, [], NOW + 101)  # ...and expired rows are forgotten
        assert await load_levels(store.engine, NOW + 101) == []
    finally:
        await store.close()
