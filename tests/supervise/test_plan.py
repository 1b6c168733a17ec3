"""The pure parts of the process model: what a reload changes, when a crash is restarted,
how many workers, and the cached health check."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest

from keyguard.cli.serve import worker_count
from keyguard.cli.support import CommandFailed
from keyguard.config import Settings
from keyguard.core.health import CachedCheck, CheckResult
from keyguard.supervise.reload import plan_reload
from keyguard.supervise.supervisor import CRASH_WINDOW_S, MAX_CRASHES, restart_delay
from tests.support.settings import keyguard_settings, upstream


def test_a_reload_keeps_what_needs_a_restart_and_names_it(tmp_path: Path) -> None:
    old = keyguard_settings(tmp_path, upstreams=[upstream("http://127.0.0.1:1")])
    new = keyguard_settings(
        tmp_path,
        upstreams=[upstream("https://elsewhere.example"), upstream("http://b", name="b")],
        listen={"proxy": "0.0.0.0:9", "admin": "127.0.0.1:0", "drain_timeout_s": 5},
        store="sqlite:///other.db",
        workers=3,
    )
    plan = plan_reload(old, new)
    assert plan.restart_required == ("listen.proxy", "store", "workers")
    assert plan.changed == ("listen.drain_timeout_s", "upstreams")
    assert plan.upstream_endpoints == {"emulator": "https://elsewhere.example", "b": "http://b"}
    kept = plan.settings
    assert (kept.listen.proxy, kept.store, kept.workers) == (
        old.listen.proxy,
        old.store,
        old.workers,
    )
    assert kept.listen.drain_timeout_s == 5 and len(kept.upstreams) == 2
    assert plan.answer("reloading")["restart_required"] == ["listen.proxy", "store", "workers"]


def test_an_unchanged_file_changes_nothing(tmp_path: Path) -> None:
    s = keyguard_settings(tmp_path)
    plan = plan_reload(s, s)
    assert plan.changed == () and plan.restart_required == () and plan.upstream_endpoints == {}


def test_crash_restarts_back_off_and_give_up() -> None:
    now = 1000.0
    crashes: list[float] = []
    delays = []
    for i in range(MAX_CRASHES):
        crashes.append(now + i)
        delays.append(restart_delay(crashes, now + i))
    assert delays[:-1] == [0.5, 1.0, 2.0, 4.0] and delays[-1] is None
    # old crashes age out of the window
    assert restart_delay(crashes, now + CRASH_WINDOW_S + MAX_CRASHES) == 0.5
    assert restart_delay([float(i) for i in range(4)], 3.0) == 4.0
    assert max(restart_delay([0.0] * k, 0.0) or 0 for k in range(1, 5)) <= 30


def test_worker_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 1, 2})
    redis = {"backend": "redis://127.0.0.1:6379/0", "rules": [{"scope": "key", "tpm": 10}]}
    memory = {"rules": [{"scope": "key", "tpm": 10}]}

    def settings(limits: Mapping[str, object], workers: int | None = None) -> Settings:
        return keyguard_settings(tmp_path, limits=limits, workers=workers)

    assert worker_count(settings(redis), None) == 3  # shared counters: every available CPU
    assert worker_count(settings(memory), None) == 1
    assert worker_count(settings({}), None) == 1  # no limits: one unless asked for more
    assert worker_count(settings({}), 4) == 4  # nothing to count: more is fine
    assert worker_count(settings(redis, 2), None) == 2 and worker_count(settings(redis, 2), 5) == 5
    with pytest.raises(CommandFailed, match=r"limits.backend: redis://.* or set workers: 1"):
        worker_count(settings(memory), 2)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_probe_flood_costs_one_probe_per_ttl() -> None:
    calls = 0
    gate = asyncio.Event()

    async def probe() -> CheckResult:
        nonlocal calls
        calls += 1
        await gate.wait()
        return CheckResult(True)

    clock = _Clock()
    check = CachedCheck(probe, ttl_s=1.0, timeout_s=5.0, clock=clock)
    waiting = [asyncio.create_task(check.result()) for _ in range(500)]
    await asyncio.sleep(0)
    gate.set()
    assert all(r.ok for r in await asyncio.gather(*waiting))
    assert calls == 1  # one in flight for all of them
    assert (await check.result()).ok and calls == 1  # cached
    clock.now = 1.5
    assert (await check.result()).ok and calls == 2


async def test_a_hung_or_failing_probe_is_a_failure_with_a_reason() -> None:
    async def hang() -> CheckResult:
        await asyncio.sleep(3600)
        return CheckResult(True)

    async def boom() -> CheckResult:
        raise OSError("postgresql://user:secret@db/x refused")

    hung = await CachedCheck(hang, timeout_s=0.05).result()
    assert not hung.ok and hung.reason == "no answer within 0.05 s"
    failed = await CachedCheck(boom).result()
    assert not failed.ok and failed.reason == "OSError" and "secret" not in failed.reason


async def test_a_caller_that_gives_up_does_not_cancel_the_probe_others_wait_for() -> None:
    gate = asyncio.Event()

    async def probe() -> CheckResult:
        await gate.wait()
        return CheckResult(True)

    check = CachedCheck(probe)
    first = asyncio.create_task(check.result())
    second = asyncio.create_task(check.result())
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert (await second).ok
