"""Background loops: a step's failure never ends the loop, and close() always stops it, even
when it lands as the loop wakes (Python 3.11's wait_for could swallow such a cancellation and
leave the loop running: a gateway whose start failed then hung)."""

from __future__ import annotations

import asyncio

from keyguard.core.tasks import PeriodicTask
from keyguard.errors import GatewayError


async def test_close_right_after_a_wake_stops_the_loop() -> None:
    async def step() -> None:
        return None

    for _ in range(50):
        task = PeriodicTask("check", step, interval=3600)
        task.start()
        await asyncio.sleep(0)  # the loop is waiting
        task.wake()  # the first check at once (as the rotation scheduler does) ...
        await asyncio.wait_for(task.close(), 5)  # ... and a failed start closes it at once
        assert not task.running


async def test_a_failing_step_is_logged_and_the_loop_goes_on() -> None:
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise GatewayError("the store is down")
        if calls == 2:
            raise RuntimeError("a bug")

    task = PeriodicTask("flaky", step, interval=3600)
    task.start()
    for _ in range(3):
        cycled = asyncio.ensure_future(task.next_cycle())
        await asyncio.sleep(0)  # waiting for the next cycle before it is woken
        task.wake()
        await asyncio.wait_for(cycled, 5)
    assert calls == 3 and task.cycles == 3
    await task.close()
