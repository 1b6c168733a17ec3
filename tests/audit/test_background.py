"""The whole chain's verification in the background: one run at a time, stopped at its time
bound saying how far it got, a store failure not taken for a verdict, the result cached until
it is stale, and what a report says (a pure function)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from keyguard.audit.background import KEPT_PROBLEMS, BackgroundVerification, status_of
from keyguard.audit.export import Progress
from keyguard.audit.verify import VerifyReport
from keyguard.errors import StorageError

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_what_a_report_says() -> None:
    progress = Progress(chains=2, records=10, chain="w1", seq=7)
    ok = status_of(VerifyReport(records=10, chains=2, checkpoints=3), progress, T0, T0)
    assert ok.state == "verified" and ok.records == 10 and ok.problems == ()
    bad = VerifyReport(records=10, chains=2, first_bad=3, first_bad_chain="w1")
    bad.problems = [f"problem {i} " + "x" * 400 for i in range(KEPT_PROBLEMS + 2)]
    bad.more_problems = 4
    broken = status_of(bad, progress, T0, T0)
    assert broken.state == "broken" and (broken.first_bad, broken.first_bad_chain) == (3, "w1")
    assert len(broken.problems) == KEPT_PROBLEMS and broken.more_problems == 6
    assert all(len(p) <= 300 for p in broken.problems)  # bounded, whatever the store holds
    stopped = status_of(None, progress, T0, T0, "stopped after 5 s")
    assert stopped.state == "incomplete" and stopped.records == 10
    assert stopped.reached == "writer w1, seq 7"
    assert status_of(None, Progress(), T0, T0, "x").reached == "no record read"


async def test_one_run_at_a_time_and_the_result_is_cached() -> None:
    release = asyncio.Event()
    runs = 0

    async def verify(progress: Progress) -> VerifyReport:
        nonlocal runs
        runs += 1
        progress.records, progress.chain, progress.seq = 5, "w1", 5
        await release.wait()
        return VerifyReport(records=5, chains=1)

    now = [T0]
    bg = BackgroundVerification(verify, stale_after_s=60, clock=lambda: now[0])
    try:
        assert bg.to_json()["last"] is None and not bg.running
        assert bg.start_if_stale() is True
        assert bg.start() is False and bg.start_if_stale() is False  # one at a time
        await asyncio.sleep(0)  # let the run begin
        shown = bg.to_json()
        assert shown["running"] and shown["progress"] == {
            "records": 5, "chains": 0, "reached": "writer w1, seq 5"
        }  # fmt: skip
        release.set()
        last = await bg.wait()
        assert last is not None and last.state == "verified" and runs == 1
        assert bg.start_if_stale() is False  # fresh: the cached result stands
        now[0] = T0 + timedelta(seconds=61)
        assert bg.start_if_stale() is True
        await bg.wait()
        assert runs == 2
    finally:
        await bg.close()


async def test_a_run_is_bounded_in_time_and_says_how_far_it_got() -> None:
    never = asyncio.Event()

    async def verify(progress: Progress) -> VerifyReport:
        progress.records, progress.chains, progress.chain, progress.seq = 1234, 1, "w2", 99
        await never.wait()  # a log too long to walk in the time given
        raise AssertionError("unreachable")

    bg = BackgroundVerification(verify, timeout_s=0.05)
    try:
        bg.start()
        last = await bg.wait()
    finally:
        await bg.close()
    assert last is not None and last.state == "incomplete"
    assert last.reason == "stopped after 0.05 s" and last.records == 1234
    assert last.reached == "writer w2, seq 99" and not bg.running


async def test_a_store_failure_is_no_verdict() -> None:
    broken: list[object] = []

    async def verify(progress: Progress) -> VerifyReport:
        raise StorageError("database is locked")

    bg = BackgroundVerification(verify, on_broken=broken.append)
    bg.start()
    last = await bg.wait()
    await bg.close()
    assert last is not None and last.state == "incomplete" and "StorageError" in last.reason
    assert "locked" not in last.reason and broken == []


async def test_a_broken_chain_is_reported_once_per_run() -> None:
    seen: list[object] = []

    async def verify(progress: Progress) -> VerifyReport:
        report = VerifyReport(records=3, first_bad=2, first_bad_chain="w1")
        report.problems = ["seq 2: its content does not give its hash (edited)"]
        return report

    bg = BackgroundVerification(verify, on_broken=seen.append)
    bg.start()
    last = await bg.wait()
    await bg.close()
    assert last is not None and last.state == "broken" and seen == [last]


def test_bounds_must_be_positive() -> None:
    async def verify(progress: Progress) -> VerifyReport:
        return VerifyReport()

    with pytest.raises(ValueError):
        BackgroundVerification(verify, timeout_s=0)
