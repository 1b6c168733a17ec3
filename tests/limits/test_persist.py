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
