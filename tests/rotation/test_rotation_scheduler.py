"""Rotation triggers inside the gateway: security events, the schedule, unfinished rotations,
and Keyguard key expiry alerts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from keyguard.events import AdminAction, Event, SecurityEvent
from keyguard.rotation.machine import Action
from keyguard.rotation.scheduler import RotationScheduler
from keyguard.rotation.service import RotationService
from keyguard.upstream.settings import ManagementSettings
from keyguard.wiring.rotation import key_rotation_service, rotation_service
from keyguard.wiring.runtime import Runtime
from tests.support.emulators import AzureEmulator, data_plane_status

from .rotation_helpers import CountingKeys

WAIT_S = 60


class Rotated:
    """Counts finished upstream rotations seen on the event bus."""

    def __init__(self, runtime: Runtime) -> None:
        self.count = 0
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        runtime.events.subscribe(self._on)

    def _on(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, AdminAction) and event.action == "upstream.rotate":
            self.count += 1
            self._changed.set()

    async def wait_for(self, count: int) -> None:
        async def reached() -> None:
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(reached(), WAIT_S)


def _scheduler(
    rt: Runtime, managers: list[CountingKeys], now: datetime | None = None, **kw: Any
) -> tuple[RotationScheduler, RotationService]:
    def make(settings: ManagementSettings) -> CountingKeys:
        managers.append(CountingKeys(settings))
        return managers[-1]

    service = rotation_service(rt, key_managers=make, **kw)
    clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
    return RotationScheduler(
        service, None, rt.settings.rotation, events=rt.events, clock=clock
    ), service


@pytest.mark.parametrize("kind", ["leaked_key", "rotate_upstream_requested"])
async def test_a_leak_event_naming_an_upstream_rotates_it(
    rt: Runtime, azure_emulator: AzureEmulator, kind: str
) -> None:
    rotated = Rotated(rt)
    old1, _ = azure_emulator.keys()
    scheduler, service = _scheduler(rt, [])
    await scheduler.start()
    try:
        rt.events.emit(
            SecurityEvent(
                created=datetime.now(UTC),
                kind=kind,
                severity="critical",
                summary="key found in a public repository",
                upstream="east",
            )
        )
        rt.events.emit(  # not rotatable / unknown: ignored
            SecurityEvent(datetime.now(UTC), "leaked_key", "high", "?", upstream="west")
        )
        await rotated.wait_for(1)
        await asyncio.wait_for(scheduler.idle(), WAIT_S)
    finally:
        await scheduler.close()
        await service.close()
    assert await data_plane_status(azure_emulator.http_url, old1) == 401
    assert scheduler.completed == [("east", f"event:{kind}", "done")]


async def test_a_presented_key_matched_by_fingerprint_rotates_its_upstream(
    rt: Runtime, azure_emulator: AzureEmulator
) -> None:
    rotated = Rotated(rt)
    old1, _ = azure_emulator.keys()
    scheduler, service = _scheduler(rt, [])
    await scheduler.start()
    try:
        for value in ("not-a-managed-key", old1):
            rt.events.emit(
                SecurityEvent(
                    created=datetime.now(UTC),
                    kind="raw_azure_key_presented",
                    severity="high",
                    summary="a raw Azure key was presented",
                    evidence={"fingerprint": rt.vault.fingerprint(value)},
                )
            )
        await rotated.wait_for(1)
        await asyncio.wait_for(scheduler.idle(), WAIT_S)
    finally:
        await scheduler.close()
        await service.close()
    assert scheduler.completed == [("east", "event:raw_azure_key_presented", "done")]


async def test_the_schedule_rotates_keys_older_than_their_max_age(
    rt: Runtime, azure_emulator: AzureEmulator
) -> None:
    rotated = Rotated(rt)
    scheduler, service = _scheduler(rt, [], now=datetime.now(UTC) + timedelta(days=31))
    try:
        young, _ = _scheduler(rt, [], now=datetime.now(UTC) + timedelta(days=29))
        await young.check()
        assert young._queue.empty()
        await service.close()
        await scheduler.start()  # its first check finds the key due
        await rotated.wait_for(1)
        await asyncio.wait_for(scheduler.idle(), WAIT_S)
    finally:
        await scheduler.close()
        await service.close()
    assert scheduler.completed[0] == ("east", "schedule", "done")


async def test_an_unfinished_rotation_is_resumed_not_restarted(
    rt: Runtime, azure_emulator: AzureEmulator
) -> None:
    rotated = Rotated(rt)
    managers: list[CountingKeys] = []

    async def crash(where: str, action: Action) -> None:
        if (where, action) == ("persisted", "regenerate_standby"):
            raise RuntimeError("killed")

    _, crashed = _scheduler(rt, managers, fault=crash)
    with pytest.raises(RuntimeError):
        await crashed.rotate_upstream("east")
    await crashed.close()
    scheduler, service = _scheduler(rt, managers)
    await scheduler.start()
    try:
        await rotated.wait_for(1)
        await asyncio.wait_for(scheduler.idle(), WAIT_S)
    finally:
        await scheduler.close()
        await service.close()
    assert scheduler.completed == [("east", "resume", "done")]
    assert sum(m.regenerated["key2"] for m in managers) == 1


async def test_expiring_keyguard_keys_raise_one_alert_each(rt: Runtime) -> None:
    now = datetime.now(UTC)
    soon, _ = await rt.keys.create("billing", now=now, expires_in=timedelta(days=3))
    await rt.keys.create("later", now=now, expires_in=timedelta(days=30))
    alerts: list[SecurityEvent] = []
    rt.events.subscribe(lambda e: alerts.append(e) if isinstance(e, SecurityEvent) else None)
    keys = await key_rotation_service(rt, accept_delay_s=0)
    service = rotation_service(rt)
    scheduler = RotationScheduler(
        service, keys, rt.settings.rotation, events=rt.events, clock=lambda: now
    )
    try:
        await scheduler.check()
        await scheduler.check()
    finally:
        await service.close()
    assert [(a.kind, a.key_id, a.app) for a in alerts] == [("key_expiring", soon.key_id, "billing")]
    assert f"keyguard keys rotate {soon.key_id}" in alerts[0].summary
