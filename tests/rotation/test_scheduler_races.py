"""The scheduler's check racing its own worker (a check reading the store while the worker
starts, or finishes, the rotation it reads)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from keyguard.events import EventBus
from keyguard.rotation.scheduler import RotationScheduler
from keyguard.rotation.settings import RotationSettings


class _SlowStoreService:
    """A rotation service whose ``open_rotation`` read is answered only after the worker has
    started (and finished) a rotation of the same upstream: the read sees it open."""

    def __init__(self) -> None:
        self.open = False
        self.rotated = asyncio.Event()
        self.read_started = asyncio.Event()
        self.resumes = 0
        self.store = SimpleNamespace(open_rotation=self._open_rotation)

    def rotatable(self) -> list[str]:
        return ["east"]

    async def _open_rotation(self, name: str) -> object | None:
        self.read_started.set()
        await self.rotated.wait()
        return object()  # the row as read while the rotation was under way

    async def due(self, name: str, now: datetime) -> bool:
        return False

    async def rotate_upstream(self, name: str, *, trigger: str) -> Any:
        self.open = True
        await asyncio.sleep(0)
        self.open = False
        self.rotated.set()
        return SimpleNamespace(state="done")

    async def resume(self, name: str) -> Any:
        self.resumes += 1
        return None


async def test_a_check_reading_a_rotation_the_worker_ran_meanwhile_queues_no_resume() -> None:
    service = _SlowStoreService()
    scheduler = RotationScheduler(
        service,  # type: ignore[arg-type]
        None,
        RotationSettings(on_security_event=True),
        events=EventBus(),
    )
    check = asyncio.create_task(scheduler.check())
    await asyncio.wait_for(service.read_started.wait(), 10)
    await scheduler.start()
    try:
        scheduler.request("east", "event:leaked_key")
        await asyncio.wait_for(check, 10)
        await asyncio.wait_for(scheduler.idle(), 10)
    finally:
        await scheduler.close()
    assert scheduler.completed == [("east", "event:leaked_key", "done")]
    assert service.resumes == 0
