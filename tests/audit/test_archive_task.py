"""The gateway's archive task: one replica at a time (the store lease), a failure logged once
and counted, never with a secret; and a gateway that moves an old chain to Azurite on its
own, with its metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import generate_latest

from keyguard.audit.archive_settings import ArchiveSettings
from keyguard.audit.archive_verify import verify_archive
from keyguard.audit.archiver import LEASE, Archiver
from keyguard.audit.destination import Destination, open_destination
from keyguard.audit.folder import FolderDestination
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer, load_public_keys, load_signer, signature_checker
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.store import Store, open_store
from keyguard.store.leases import acquire_lease, release_lease
from keyguard.wiring.runtime import open_runtime
from tests.support.azurite import ACCOUNT, Azurite
from tests.support.gateway import running_gateway
from tests.support.logs import LogCapture
from tests.support.settings import keyguard_settings

SIGNER = Signer(Ed25519PrivateKey.generate())
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))
DAY = 86_400.0


async def _chain(store: AuditStore, at: float, n: int, signer: Signer = SIGNER) -> str:
    writer = AuditWriter(store, AuditSettings(), signer=signer, clock=lambda: at)
    for i in range(n):
        writer.append("request", {"i": i, "status": 200})
    await writer.close()
    return writer.id


def _archiver(store: Store, folder: Path, owner: str) -> Archiver:
    settings = ArchiveSettings(to=str(folder))

    async def destination() -> Destination:
        return await open_destination(str(folder), settings)

    return Archiver(store.engine, SIGNER, settings, destination, owner=owner)  # type: ignore[attr-defined]


async def test_only_the_lease_holder_archives(store: Store, tmp_path: Path) -> None:
    audit = AuditStore(store.engine)  # type: ignore[attr-defined]
    chains = {await _chain(audit, time.time() - (40 - i) * DAY, 2) for i in range(2)}
    folder = tmp_path / "archive"
    folder.mkdir()
    one, two = _archiver(store, folder, "replica-1"), _archiver(store, folder, "replica-2")
    engine = store.engine  # type: ignore[attr-defined]
    assert await acquire_lease(engine, LEASE, "replica-2", datetime.now(UTC), timedelta(hours=1))
    await one.step()
    assert (one.busy, one.runs, one.chains) == (1, 0, 0)
    assert chains <= set(await audit.chains())  # nothing moved while another holds the lease
    await release_lease(engine, LEASE, "replica-2")

    await asyncio.gather(one.step(), two.step())  # both at once: whoever runs, once per chain
    await one.step()
    assert one.failures == two.failures == 0
    assert one.chains + two.chains == 2 and not chains & set(await audit.chains())
    report = await verify_archive(FolderDestination(folder), CHECK)
    assert report.ok and report.chains == 2, report
    # the lease is free again: the next round of either replica runs
    runs = two.runs
    await two.step()
    assert two.runs == runs + 1


async def test_an_expired_lease_is_taken_over(store: Store, tmp_path: Path) -> None:
    engine = store.engine  # type: ignore[attr-defined]
    long_ago = datetime.now(UTC) - timedelta(days=1)
    assert await acquire_lease(engine, LEASE, "crashed", long_ago, timedelta(minutes=30))
    folder = tmp_path / "archive"
    folder.mkdir()
    archiver = _archiver(store, folder, "replica-1")
    await archiver.step()
    assert (archiver.runs, archiver.busy, archiver.failures) == (1, 0, 0)


async def test_a_failure_is_logged_once_and_counted(
    store: Store, tmp_path: Path, logs: LogCapture
) -> None:
    audit = AuditStore(store.engine)  # type: ignore[attr-defined]
    await _chain(audit, time.time() - 40 * DAY, 2)
    folder = tmp_path / "not-yet"
    archiver = _archiver(store, folder, "replica-1")
    for _ in range(3):
        await archiver.step()
    assert archiver.failures == 3 and archiver.last_success == 0
    failed = [line for line in logs.lines if "audit archive to" in line and "failed" in line]
    assert len(failed) == 1 and "does not exist" in failed[0], failed
    folder.mkdir()
    await archiver.step()
    assert archiver.failures == 3 and archiver.chains == 1 and archiver.last_success > 0
    assert any("works again" in line for line in logs.lines)


async def test_the_gateway_archives_old_chains_to_blob_storage(
    tmp_path: Path, azurite: Azurite, blob_container: str, logs: LogCapture
) -> None:
    """A gateway with monitor.audit.archive.to a container (a SAS in the vault) moves an old
    chain there on its own; its metrics count it; the SAS appears in no log line."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    sas = generate_container_sas(
        ACCOUNT,
        blob_container.rsplit("/", 1)[1],
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(
            read=True, add=True, create=True, write=True, list=True
        ),  # fmt: skip
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    archive = {"to": blob_container, "interval_s": 1, "credential": "sas",
               "vault": "storage/audit-sas", "ca_file": azurite.ca_file}  # fmt: skip
    settings = keyguard_settings(tmp_path, monitor={"audit": {"archive": archive}})
    rt = await open_runtime(settings, {})
    try:
        await rt.vault.put("storage/audit-sas", sas)
        signer = await load_signer(rt.vault)
    finally:
        await rt.close()
    store = await open_store(settings.store)
    try:
        old = await _chain(AuditStore(store.engine), time.time() - 40 * DAY, 3, signer)  # type: ignore[attr-defined]
    finally:
        await store.close()

    async with running_gateway(tmp_path, settings=settings) as gw:
        assert gw.monitoring is not None and gw.monitoring.archiver is not None
        archiver = gw.monitoring.archiver
        assert archiver.task is not None
        async with asyncio.timeout(60):
            while archiver.chains == 0 and archiver.failures == 0:
                await archiver.task.next_cycle()
        assert archiver.failures == 0 and archiver.chains == 1 and archiver.records == 5
        assert gw.monitoring.metrics is not None
        exposed = generate_latest(gw.monitoring.metrics.registry).decode()
        assert "keyguard_audit_archived_records 5.0" in exposed
        assert "keyguard_audit_archive_failures 0.0" in exposed
        assert old not in await AuditStore(gw.runtime.engine).chains()  # type: ignore[union-attr, arg-type]

    check = signature_checker(load_public_keys([signer.public_pem().encode()]))
    dest = await open_destination(
        blob_container,
        ArchiveSettings(credential="sas", vault="s", ca_file=azurite.ca_file),
        _secret(sas),
    )
    try:
        report = await verify_archive(dest, check)
        assert report.ok and report.chains == 1 and report.records == 5, report
    finally:
        await dest.close()
    signature = sas.split("sig=")[1].split("&")[0]
    assert not [line for line in logs.lines if signature in line or sas in line]


def _secret(value: str) -> Callable[[str], Awaitable[str]]:
    async def read(name: str) -> str:
        return value

    return read


async def test_a_long_round_keeps_its_lease(store: Store, tmp_path: Path) -> None:
    """A round renews the lease while it works, so another replica does not start meanwhile."""
    engine = store.engine  # type: ignore[attr-defined]
    folder = tmp_path / "archive"
    folder.mkdir()
    settings = ArchiveSettings(to=str(folder))
    seen: list[bool] = []

    async def slow_destination() -> Destination:
        assert archiver.renewer is not None
        await archiver.renewer.next_cycle()  # the round goes on past a renewal
        other = datetime.now(UTC)
        seen.append(await acquire_lease(engine, LEASE, "replica-2", other, timedelta(minutes=1)))
        return FolderDestination(folder)

    archiver = Archiver(engine, SIGNER, settings, slow_destination, owner="replica-1",
                        renew_s=0.05)  # fmt: skip
    await archiver.step()
    assert archiver.failures == 0 and archiver.renewals >= 1 and seen == [False]
    assert await acquire_lease(engine, LEASE, "replica-2", datetime.now(UTC), timedelta(1))
