"""The upstream rotation runner against the emulator's ARM endpoints, with the real
``azure-mgmt-cognitiveservices`` client over TLS: the flip, crashes at every step, verification
failure, stalled replicas, the lease, managed-identity (burn) and Key Vault upstreams."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.identity.aio import ManagedIdentityCredential
from azure.keyvault.secrets.aio import SecretClient

from keyguard.errors import ConfigurationError
from keyguard.events import AdminAction, Event, SecurityEvent
from keyguard.rotation.machine import Action
from keyguard.rotation.runner import RotationBusy, RotationStalled
from keyguard.rotation.service import RotationService
from keyguard.rotation.store import ReplicaAck
from keyguard.upstream.settings import ManagementSettings
from keyguard.wiring.rotation import rotate_upstream_for_secret, rotation_service
from keyguard.wiring.runtime import Runtime, open_runtime
from tests.support.emulators import AzureEmulator, data_plane_status

from .rotation_helpers import CountingKeys, rotation_settings

FLIP: list[Action] = [
    "inspect",
    "regenerate_standby",
    "verify",
    "store",
    "switch",
    "drain",
    "retire",
    "finish",
]


class Crash(Exception):
    """Stands for the process dying at that point."""


async def _runtime(
    tmp_path: Path,
    emulator: AzureEmulator,
    credential: dict[str, Any],
    management: dict[str, Any] | None = None,
    **rot: Any,
) -> Runtime:
    return await open_runtime(
        rotation_settings(tmp_path, emulator, credential, management, **rot), {}
    )


def _events(runtime: Runtime) -> list[Event]:
    seen: list[Event] = []
    runtime.events.subscribe(seen.append)
    return seen


def _service(runtime: Runtime, managers: list[CountingKeys], **kwargs: Any) -> RotationService:
    def make(settings: ManagementSettings) -> CountingKeys:
        managers.append(CountingKeys(settings))
        return managers[-1]

    return rotation_service(runtime, key_managers=make, **kwargs)


def _regenerations(managers: list[CountingKeys]) -> dict[str, int]:
    total: dict[str, int] = {"key1": 0, "key2": 0}
    for m in managers:
        for slot, n in m.regenerated.items():
            total[slot] += n
    return total


async def _versions(runtime: Runtime, name: str) -> list[str]:
    latest = (await runtime.vault.get_with_info(name))[1].version
    return [await runtime.vault.get(name, v) for v in range(1, latest + 1)]


async def test_a_rotation_flips_to_the_standby_key_and_kills_the_old_one(
    rt: Runtime, azure_emulator: AzureEmulator
) -> None:
    old1, old2 = azure_emulator.keys()
    events = _events(rt)
    managers: list[CountingKeys] = []
    service = _service(rt, managers)
    try:
        rotation = await service.rotate_upstream("east")
        assert rotation.state == "done" and rotation.mode == "flip"
        assert (rotation.active_slot, rotation.standby_slot) == ("key1", "key2")
        new1, new2 = azure_emulator.keys()
        assert new1 != old1 and new2 != old2
        assert await _versions(rt, "upstream/east") == [old1, new2]  # nothing lost
        assert rotation.new_version == "2"
        assert await data_plane_status(azure_emulator.http_url, old1) == 401
        assert await data_plane_status(azure_emulator.http_url, old2) == 401
        assert await data_plane_status(azure_emulator.http_url, new2) == 200
        assert _regenerations(managers) == {"key1": 1, "key2": 1}

        again = await service.rotate_upstream("east")  # key2 in service now: flips back
        assert (again.active_slot, again.standby_slot) == ("key2", "key1")
        assert (await rt.vault.get("upstream/east")) == azure_emulator.keys()[0]
        assert [r.id for r in await service.status("east")] == [again.id, rotation.id]
    finally:
        await service.close()
    done = [e for e in events if isinstance(e, AdminAction) and e.action == "upstream.rotate"]
    assert len(done) == 2 and done[0].target == "upstream:east"


@pytest.mark.parametrize("point", ["effect", "persisted"])
@pytest.mark.parametrize("step", FLIP)
async def test_a_crash_at_any_step_resumes_without_a_second_regeneration(
    rt: Runtime, azure_emulator: AzureEmulator, step: Action, point: str
) -> None:
    old1, old2 = azure_emulator.keys()
    managers: list[CountingKeys] = []
    fired: list[bool] = []

    async def crash(where: str, action: Action) -> None:
        if (where, action) == (point, step) and not fired:
            fired.append(True)
            raise Crash(f"{where} {action}")

    first = _service(rt, managers, fault=crash)
    with pytest.raises(Crash):
        await first.rotate_upstream("east")
    await first.close()

    restarted = _service(rt, managers)  # a new process: another lease owner
    try:
        resumed = await restarted.resume("east")
        if resumed is None:  # it had finished before the crash
            assert (step, point) == ("finish", "persisted")
        rotation = (await restarted.status("east"))[0]
    finally:
        await restarted.close()
    assert rotation.state == "done"
    assert _regenerations(managers) == {"key1": 1, "key2": 1}
    new1, new2 = azure_emulator.keys()
    assert new1 != old1 and new2 != old2
    # exactly one live key in service, stored once, and the old version still readable
    assert await _versions(rt, "upstream/east") == [old1, new2]
    assert await data_plane_status(azure_emulator.http_url, new2) == 200
    assert await data_plane_status(azure_emulator.http_url, old1) == 401
    assert len(await restarted.status("east")) == 1


async def test_a_killed_rotation_resumes_once_its_lease_expires(
    rt: Runtime, azure_emulator: AzureEmulator
) -> None:
    now = [datetime.now(UTC)]

    def clock() -> datetime:
        return now[0]

    async def crash(where: str, action: Action) -> None:
        if (where, action) == ("persisted", "store"):
            raise Crash

    managers: list[CountingKeys] = []
    dead = _service(rt, managers, fault=crash, owner="dead-process", clock=clock)
    with pytest.raises(Crash):
        await dead.rotate_upstream("east")
    await dead.close()
    # a killed process never releases its lease: take it again in its name
    assert await dead.store.acquire_lease("rotation:east", "dead-process", now[0], timedelta(60))
    other = _service(rt, managers, clock=clock)
    try:
        with pytest.raises(RotationBusy):
            await other.rotate_upstream("east")
        now[0] += timedelta(days=61)
        assert (await other.rotate_upstream("east")).state == "done"
    finally:
        await other.close()
    assert _regenerations(managers) == {"key1": 1, "key2": 1}


async def test_a_failed_verification_aborts_alerts_and_keeps_the_old_key(
    rt: Runtime, azure_emulator: AzureEmulator
) -> None:
    old1, _ = azure_emulator.keys()
    events = _events(rt)
    calls: list[str] = []

    async def refuse(endpoint: str, key: str) -> str | None:
        calls.append(endpoint)
        return "HTTP 401"

    managers: list[CountingKeys] = []
    service = _service(rt, managers, verifier=refuse)
    try:
        rotation = await service.rotate_upstream("east")
    finally:
        await service.close()
    assert rotation.state == "aborted" and "failed verification" in (rotation.error or "")
    assert len(calls) == 5  # rotation.verify_attempts
    assert _regenerations(managers) == {"key1": 0, "key2": 1}
    assert await _versions(rt, "upstream/east") == [old1]
    assert await data_plane_status(azure_emulator.http_url, old1) == 200
    alerts = [e for e in events if isinstance(e, SecurityEvent)]
    assert [(a.kind, a.severity, a.upstream) for a in alerts] == [
        ("rotation_aborted", "high", "east")
    ]
    assert old1 not in repr(alerts) and azure_emulator.keys()[1] not in repr(alerts)


async def test_a_stored_key_the_resource_does_not_know_aborts(
    rt: Runtime, azure_emulator: AzureEmulator
) -> None:
    await rt.vault.put("upstream/east", "0" * 84)
    service = _service(rt, [])
    try:
        rotation = await service.rotate_upstream("east")
    finally:
        await service.close()
    assert rotation.state == "aborted" and "neither key1 nor key2" in (rotation.error or "")


async def test_a_replica_that_does_not_switch_stalls_the_rotation_safely(
    tmp_path: Path, azure_emulator: AzureEmulator
) -> None:
    runtime = await _runtime(
        tmp_path, azure_emulator, {"vault": "upstream/east"}, switch_timeout=0.3
    )
    old1, _ = azure_emulator.keys()
    await runtime.vault.put("upstream/east", old1)
    events = _events(runtime)
    service = _service(runtime, [])
    lagging = ReplicaAck("replica-b", "east", "1", None, datetime.now(UTC))
    try:
        await service.store.ack(lagging)
        with pytest.raises(RotationStalled, match="replica-b"):
            await service.rotate_upstream("east")
        assert (await service.store.open_rotation("east")).state == "stored"  # type: ignore[union-attr]
        assert await data_plane_status(azure_emulator.http_url, old1) == 200  # still valid
        assert [e.kind for e in events if isinstance(e, SecurityEvent)] == ["rotation_stalled"]
        await service.store.ack(
            ReplicaAck("replica-b", "east", "2", datetime.now(UTC), datetime.now(UTC))
        )
        assert (await service.rotate_upstream("east")).state == "done"
        assert await data_plane_status(azure_emulator.http_url, old1) == 401
    finally:
        await service.close()
        await runtime.close()


async def test_one_rotation_per_upstream_at_a_time(
    rt: Runtime, azure_emulator: AzureEmulator
) -> None:
    gate = asyncio.Event()
    release = asyncio.Event()

    async def hold(where: str, action: Action) -> None:
        if (where, action) == ("persisted", "inspect"):
            gate.set()
            await release.wait()

    first = _service(rt, [], fault=hold)
    second = _service(rt, [])
    try:
        running = asyncio.create_task(first.rotate_upstream("east"))
        await gate.wait()
        with pytest.raises(RotationBusy):
            await second.rotate_upstream("east")
        release.set()
        assert (await running).state == "done"
    finally:
        await first.close()
        await second.close()


async def test_managed_identity_upstreams_burn_both_keys(
    tmp_path: Path, azure_emulator: AzureEmulator
) -> None:
    runtime = await _runtime(
        tmp_path,
        azure_emulator,
        {"managed_identity": {"ca_file": azure_emulator.ca_file}},
        {"key_max_age": "30d"},
    )
    old1, old2 = azure_emulator.keys()
    managers: list[CountingKeys] = []
    service = _service(runtime, managers)
    now = datetime.now(UTC)
    try:
        assert await service.due("east", now)  # never rotated by Keyguard: unknown age
        rotation = await service.rotate_upstream("east", trigger="event:leaked_key")
        assert not await service.due("east", now + timedelta(days=29))
        assert await service.due("east", now + timedelta(days=31))
    finally:
        await service.close()
        await runtime.close()
    assert (rotation.state, rotation.mode, rotation.new_version) == ("done", "burn", None)
    assert _regenerations(managers) == {"key1": 1, "key2": 1}
    assert await data_plane_status(azure_emulator.http_url, old1) == 401
    assert await data_plane_status(azure_emulator.http_url, old2) == 401


async def test_key_vault_upstreams_get_a_new_secret_version(
    tmp_path: Path, azure_emulator: AzureEmulator
) -> None:
    ref = {
        "vault_url": azure_emulator.url,
        "secret_name": "aoai-east",
        "identity": {"ca_file": azure_emulator.ca_file},
        "verify_challenge_resource": False,
    }
    runtime = await _runtime(tmp_path, azure_emulator, {"key_vault": ref})
    old1, _ = azure_emulator.keys()
    ca = azure_emulator.ca_file
    async with (
        ManagedIdentityCredential(connection_verify=ca) as credential,
        SecretClient(
            azure_emulator.url, credential, verify_challenge_resource=False, connection_verify=ca
        ) as client,
    ):
        first = await client.set_secret("aoai-east", old1)
        service = _service(runtime, [])
        try:
            rotation = await service.rotate_upstream("east")
        finally:
            await service.close()
            await runtime.close()
        latest = await client.get_secret("aoai-east")
    assert rotation.state == "done"
    assert latest.value == azure_emulator.keys()[1]
    assert rotation.new_version == latest.properties.version != first.properties.version


async def test_the_scanner_rotates_the_upstream_holding_a_leaked_secret(
    rt: Runtime, azure_emulator: AzureEmulator
) -> None:
    old1, _ = azure_emulator.keys()
    with pytest.raises(ConfigurationError, match="upstream/west"):
        await rotate_upstream_for_secret(rt, "upstream/west", reason="leaked_key")
    [rotation] = await rotate_upstream_for_secret(rt, "upstream/east", reason="leaked_key")
    assert (rotation.state, rotation.trigger) == ("done", "event:leaked_key")
    assert await data_plane_status(azure_emulator.http_url, old1) == 401
