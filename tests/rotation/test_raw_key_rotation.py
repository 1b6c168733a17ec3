"""Raw key -> rotation, end to end: an app presents the upstream's own Azure key to the gateway;
the security event names the upstream, the scheduler rotates it, and the emulator refuses the
old key afterwards while the gateway keeps serving with the new one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from keyguard.cli.support import cli_actor
from keyguard.events import AdminAction, Event, SecurityEvent
from keyguard.monitor.store import MonitorStore
from keyguard.rotation.azure import ArmKeyManager, KeyManager
from keyguard.rotation.machine import Action, Slot
from keyguard.server import Gateway
from keyguard.upstream.settings import ManagementSettings
from keyguard.wiring.access import open_admin_service
from keyguard.wiring.rotation import rotation_service
from keyguard.wiring.runtime import Runtime, open_runtime
from tests.support.emulators import data_plane_status
from tests.support.settings import keyguard_settings, managed_upstream

from .rotation_helpers import FAST_ROTATION, VAULT

WAIT_S = 60


async def test_presenting_the_upstream_key_rotates_that_upstream(
    tmp_path: Path, azure_emulator: Any
) -> None:
    settings = keyguard_settings(
        tmp_path,
        upstreams=[managed_upstream(azure_emulator, VAULT, name="east")],
        rotation=FAST_ROTATION,
    )
    in_service, _ = azure_emulator.keys()
    rt = await open_runtime(settings, {})
    try:
        await rt.vault.put("upstream/east", in_service)
    finally:
        await rt.close()
    gateway = Gateway(settings, {})
    await gateway.start()
    events: list[Event] = []
    rotated = asyncio.Event()

    def seen(event: Event) -> None:
        events.append(event)
        if isinstance(event, AdminAction) and event.action == "upstream.rotate":
            rotated.set()

    assert gateway.runtime is not None
    gateway.runtime.events.subscribe(seen)
    try:
        _, app_key = await gateway.runtime.keys.create("billing", now=datetime.now(UTC))
        stolen = openai.AsyncAzureOpenAI(
            azure_endpoint=gateway.proxy_url, api_key=in_service, api_version="2024-10-21",
            max_retries=0,
        )  # fmt: skip
        async with stolen:
            with pytest.raises(openai.AuthenticationError):
                await stolen.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=1
                )
        raw = "raw_azure_key_presented"
        [event] = [e for e in events if isinstance(e, SecurityEvent) and e.kind == raw]
        assert event.upstream == "east"  # the upstream, not the vault secret
        assert event.evidence["vault_secret"] == "upstream/east"
        await asyncio.wait_for(rotated.wait(), WAIT_S)
        assert gateway.rotation is not None and gateway.rotation.scheduler is not None
        await asyncio.wait_for(gateway.rotation.scheduler.idle(), WAIT_S)
        assert gateway.rotation.scheduler.completed == [("east", f"event:{raw}", "done")]
        assert (
            await data_plane_status(azure_emulator.http_url, in_service) == 401
        )  # the old key is dead
        app = openai.AsyncAzureOpenAI(
            azure_endpoint=gateway.proxy_url, api_key=app_key, api_version="2024-10-21",
            max_retries=0,
        )  # fmt: skip
        async with app:  # and the gateway serves with the new one
            reply = await app.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=1
            )
        assert reply.choices
    finally:
        await gateway.stop()


async def _open_alerts(http: aiohttp.ClientSession, gateway: Gateway) -> list[dict[str, Any]]:
    async with http.get(gateway.admin_url + "/admin/alerts?status=open") as resp:
        assert resp.status == 200, await resp.text()
        incidents: list[dict[str, Any]] = (await resp.json())["incidents"]
        return incidents


async def test_the_raw_key_incident_resolves_while_the_rotation_it_started_runs(
    tmp_path: Path, azure_emulator: Any
) -> None:
    """An operator resolves the incident again and again from the first moment until the
    rotation is done: every resolve (which lifts the incident's throttles) waits its turn
    behind the rotation's, the audit's and the replica reports' writes, none fails with
    "database is locked"."""
    settings = keyguard_settings(
        tmp_path,
        upstreams=[managed_upstream(azure_emulator, VAULT, name="east")],
        rotation=FAST_ROTATION,
        monitor={},
    )
    in_service, _ = azure_emulator.keys()
    rt = await open_runtime(settings, {})
    try:
        await rt.vault.put("upstream/east", in_service)
        admin = await open_admin_service(rt)
        _, token = await admin.create_admin_token(cli_actor(), name="ops", role="operator")
    finally:
        await rt.close()
    gateway = Gateway(settings, {})
    await gateway.start()
    rotated = asyncio.Event()

    def seen(event: Event) -> None:
        if isinstance(event, AdminAction) and event.action == "upstream.rotate":
            rotated.set()

    assert gateway.runtime is not None
    gateway.runtime.events.subscribe(seen)
    resolves = 0
    try:
        stolen = openai.AsyncAzureOpenAI(
            azure_endpoint=gateway.proxy_url, api_key=in_service, api_version="2024-10-21",
            max_retries=0,
        )  # fmt: skip
        async with stolen:
            with pytest.raises(openai.AuthenticationError):
                await stolen.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=1
                )
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            deadline = asyncio.get_running_loop().time() + WAIT_S
            while not (
                raised := [
                    i for i in await _open_alerts(http, gateway) if i["rule"] == "raw_azure_key"
                ]
            ):  # the monitor records it right after the refusal
                assert asyncio.get_running_loop().time() < deadline, "no incident"
            [incident] = raised
            while not rotated.is_set():
                assert asyncio.get_running_loop().time() < deadline, "no rotation"
                url = f"{gateway.admin_url}/admin/alerts/{incident['id']}/resolve"
                async with http.post(url) as resp:
                    assert resp.status == 200, await resp.text()
                    assert (await resp.json())["status"] == "resolved"
                resolves += 1
            assert resolves > 0
            assert await _open_alerts(http, gateway) == []
        assert gateway.rotation is not None and gateway.rotation.scheduler is not None
        await asyncio.wait_for(gateway.rotation.scheduler.idle(), WAIT_S)
        raw = "raw_azure_key_presented"
        assert gateway.rotation.scheduler.completed == [("east", f"event:{raw}", "done")]
    finally:
        await gateway.stop()


class _HeldKeys:
    """The emulator's ARM keys, each call held open until the test lets it go."""

    def __init__(self, settings: ManagementSettings, holds: asyncio.Queue[asyncio.Event]) -> None:
        self.inner: KeyManager = ArmKeyManager(settings)
        self._holds = holds

    async def _held(self) -> None:
        go = asyncio.Event()
        self._holds.put_nowait(go)
        await go.wait()

    async def list_keys(self) -> tuple[str, str]:
        await self._held()
        return await self.inner.list_keys()

    async def regenerate(self, slot: Slot) -> tuple[str, str]:
        await self._held()
        return await self.inner.regenerate(slot)

    async def close(self) -> None:
        await self.inner.close()


async def test_no_store_write_waits_on_a_rotation_held_in_an_azure_call(rt: Runtime) -> None:
    """Every call of a rotation to Azure, and every step's end, is held open while the
    monitor writes to the same store: none of those writes waits for the rotation, so no
    write transaction spans a call to another service or a step."""
    holds: asyncio.Queue[asyncio.Event] = asyncio.Queue()

    async def between_steps(_where: str, _action: Action) -> None:
        go = asyncio.Event()
        holds.put_nowait(go)
        await go.wait()

    service = rotation_service(rt, key_managers=lambda s: _HeldKeys(s, holds), fault=between_steps)
    assert rt.engine is not None
    monitor = MonitorStore(rt.engine)
    now = datetime.now(UTC).timestamp()
    incident = "0" * 16
    held = 0
    try:
        running = asyncio.create_task(service.rotate_upstream("east"))
        while True:
            hold = asyncio.create_task(holds.get())
            await asyncio.wait({hold, running}, return_when=asyncio.FIRST_COMPLETED)
            if not hold.done():  # the rotation ended
                hold.cancel()
                break
            subject = f"key:k{held}"
            await asyncio.wait_for(
                monitor.add_block(subject, now + 60, "raw_azure_key", incident, now), WAIT_S
            )
            lifted = await asyncio.wait_for(monitor.remove_blocks(incident_id=incident), WAIT_S)
            assert lifted == [subject]
            held += 1
            hold.result().set()
        assert (await running).state == "done"
    finally:
        await service.close()
    assert held >= 10  # the Azure calls and the step ends of a whole rotation
