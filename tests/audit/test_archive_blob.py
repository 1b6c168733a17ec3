"""The audit archive in Azure Blob Storage, against Azurite (over TLS, OAuth on): the hostile
writer of the container first (a blob replaced or truncated, a manifest line removed or forged,
a partial upload left behind, two archivers racing), the careless operator (a SAS in the URL,
plain HTTP), no secret in any log or error; then archive, verify and restore with an account
key, a SAS and Keyguard's managed identity."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from azure.storage.blob.aio import ContainerClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keyguard.audit.archive import MANIFESTS, archive_chains
from keyguard.audit.archive_settings import ArchiveSettings
from keyguard.audit.archive_verify import restore_file, verify_archive
from keyguard.audit.destination import ArchiveConflict, Destination, open_destination
from keyguard.audit.export import verify_store
from keyguard.audit.manifest import Manifest
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.config import settings_from_mapping
from keyguard.errors import ConfigurationError, GatewayError, StorageError
from keyguard.store import Store
from keyguard.upstream.settings import AzureIdentityRef
from tests.support.azurite import ACCOUNT, Azurite
from tests.support.emulators import AzureEmulator
from tests.support.logs import LogCapture

SIGNER = Signer(Ed25519PrivateKey.generate())
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))
DAY = 86_400.0
KEY_SECRET = "storage/audit-archive"


async def _chain(store: AuditStore, at: float, n: int) -> str:
    writer = AuditWriter(store, AuditSettings(), signer=SIGNER, clock=lambda: at)
    for i in range(n):
        writer.append("request", {"i": i, "status": 200})
    await writer.close()
    return writer.id


def _reader(secrets: dict[str, str]) -> Callable[[str], Awaitable[str]]:
    async def read(name: str) -> str:
        return secrets[name]

    return read


def _sas(azurite: Azurite, url: str, *, key: str | None = None) -> str:
    return generate_container_sas(
        ACCOUNT,
        url.rsplit("/", 1)[1],
        account_key=key or azurite.account_key,
        permission=ContainerSasPermissions(
            read=True, add=True, create=True, write=True, list=True
        ),  # fmt: skip
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )


async def _by_key(azurite: Azurite, url: str, key: str | None = None) -> Destination:
    settings = ArchiveSettings(credential="account_key", vault=KEY_SECRET, ca_file=azurite.ca_file)
    return await open_destination(url, settings, _reader({KEY_SECRET: key or azurite.account_key}))


async def _admin(azurite: Azurite, url: str) -> ContainerClient:
    """The hostile writer: anyone with write access to the container."""
    return ContainerClient.from_container_url(
        url,
        credential=AzureNamedKeyCredential(ACCOUNT, azurite.account_key),
        connection_verify=azurite.ca_file,
    )


@pytest.fixture
async def archived(
    store: Store, azurite: Azurite, blob_container: str
) -> AsyncIterator[tuple[AuditStore, Destination, str, str]]:
    """Two old chains archived to the container (one recent chain stays in the store)."""
    audit = AuditStore(store.engine)  # type: ignore[attr-defined]
    now = time.time()
    first = await _chain(audit, now - 41 * DAY, 5)
    await _chain(audit, now - 40 * DAY, 2)
    await _chain(audit, now, 3)
    dest = await _by_key(azurite, blob_container)
    at = datetime.fromtimestamp(now, UTC)
    done = await archive_chains(audit, SIGNER, dest, at - timedelta(days=30), at)
    assert [m.chain for m in done][0] == first and len(done) == 2
    try:
        yield audit, dest, blob_container, first
    finally:
        await dest.close()


async def test_a_replaced_or_truncated_blob_is_named(
    archived: tuple[AuditStore, Destination, str, str], azurite: Azurite
) -> None:
    audit, dest, url, first = archived
    name = f"{first}.jsonl.gz"
    async with await _admin(azurite, url) as admin:
        blob = admin.get_blob_client(name)
        original = await (await blob.download_blob()).readall()
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 1
        await blob.upload_blob(bytes(flipped), overwrite=True)  # same length, other bytes
        report = await verify_archive(dest, CHECK)
        assert f"{name}: its SHA-256 is not the manifest's (changed)" in report.problems
        with pytest.raises(ConfigurationError, match="does not verify"):
            await restore_file(audit, dest, name, CHECK)
        await blob.upload_blob(original[: len(original) // 2], overwrite=True)  # truncated
        report = await verify_archive(dest, CHECK)
        assert report.problems == [
            f"{name}: its length is not the manifest's (replaced or truncated)"
        ]
        await blob.delete_blob()
        report = await verify_archive(dest, CHECK)
        assert report.problems == [f"{MANIFESTS}:1: its file {name} is missing"]


async def test_a_removed_or_forged_manifest_line_is_named(
    archived: tuple[AuditStore, Destination, str, str], azurite: Azurite
) -> None:
    _, dest, url, first = archived
    async with await _admin(azurite, url) as admin:
        blob = admin.get_blob_client(MANIFESTS)
        lines = (await (await blob.download_blob()).readall()).decode().splitlines()
        assert len(lines) == 2
        await blob.upload_blob((lines[1] + "\n").encode(), overwrite=True)  # the first removed
        report = await verify_archive(dest, CHECK)
        assert report.problems == [
            f"{MANIFESTS}:1: does not follow the manifest before it (one was removed, inserted "
            "or reordered)"
        ]
        assert any(f"{first}.jsonl.gz" in note for note in report.notes)  # now unnamed

        forger = Signer(Ed25519PrivateKey.generate())
        forged = Manifest.from_line(lines[0])
        forged = forged.__class__(**{**_fields(forged), "records": 1})
        forged_line = forged.__class__(
            **{**_fields(forged), "signature": forger.signature(forged.payload())}
        ).line()
        await blob.upload_blob((forged_line + "\n" + lines[1] + "\n").encode(), overwrite=True)
        report = await verify_archive(dest, CHECK)
        assert f"{MANIFESTS}:1: its signature is not valid (forged or edited)" in report.problems


def _fields(manifest: Manifest) -> dict[str, Any]:
    return {f: getattr(manifest, f) for f in Manifest.__dataclass_fields__}


async def test_a_partial_upload_is_never_taken_for_an_archive(
    store: Store, azurite: Azurite, blob_container: str
) -> None:
    """A run cut short after its upload, before its manifest: the file is noted, never
    counted or restored; a foreign file under the chain's name stops the run (the chain stays
    in the store); the next run over the intact upload finishes the job with one manifest."""
    audit = AuditStore(store.engine)  # type: ignore[attr-defined]
    now = time.time()
    chain = await _chain(audit, now - 40 * DAY, 4)
    name = f"{chain}.jsonl.gz"
    at = datetime.fromtimestamp(now, UTC)
    dest = await _by_key(azurite, blob_container)
    try:
        async with await _admin(azurite, blob_container) as admin:
            await admin.upload_blob(name, b"\x1f\x8b truncated")
        with pytest.raises(StorageError, match=f"{name} exists with other content"):
            await archive_chains(audit, SIGNER, dest, at - timedelta(days=30), at)
        assert chain in await audit.chains()
        report = await verify_archive(dest, CHECK)
        assert report.ok and report.chains == 0 and report.records == 0
        assert any(name in note and "no manifest names" in note for note in report.notes)
        with pytest.raises(ConfigurationError, match="no manifest names it"):
            await restore_file(audit, dest, name, CHECK)

        async with await _admin(azurite, blob_container) as admin:
            await admin.delete_blob(name)
        cut = _CutBeforeManifest(dest)
        with pytest.raises(StorageError, match="cut"):
            await archive_chains(audit, SIGNER, cut, at - timedelta(days=30), at)
        assert chain in await audit.chains()  # uploaded, not yet in a manifest: still here
        assert any(name in note for note in (await verify_archive(dest, CHECK)).notes)
        [manifest] = await archive_chains(audit, SIGNER, dest, at - timedelta(days=30), at)
        assert manifest.chain == chain and chain not in await audit.chains()
        report = await verify_archive(dest, CHECK)
        assert report.ok and report.records == 6 and not report.notes, report  # + open, close
    finally:
        await dest.close()


class _CutBeforeManifest:
    """A destination whose process dies between the upload and the manifest."""

    def __init__(self, inner: Destination) -> None:
        self._inner = inner
        self.where = inner.where

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def append_manifest(self, line: str, version: str) -> str:
        raise StorageError("cut")


async def test_two_archivers_racing_append_one_manifest_per_chain(
    store: Store, azurite: Azurite, blob_container: str
) -> None:
    audit = AuditStore(store.engine)  # type: ignore[attr-defined]
    now = time.time()
    chains = {await _chain(audit, now - (40 - i) * DAY, 3) for i in range(3)}
    at = datetime.fromtimestamp(now, UTC)
    one, two = await _by_key(azurite, blob_container), await _by_key(azurite, blob_container)
    try:
        results = await asyncio.gather(
            archive_chains(audit, SIGNER, one, at - timedelta(days=30), at),
            archive_chains(audit, SIGNER, two, at - timedelta(days=30), at),
            return_exceptions=True,
        )
        for result in results:
            assert isinstance(result, list | ArchiveConflict | GatewayError), result
        await archive_chains(audit, SIGNER, one, at - timedelta(days=30), at)  # what is left
        lines, _ = await one.manifests()
        assert sorted(Manifest.from_line(x).chain for x in lines) == sorted(chains)
        report = await verify_archive(one, CHECK)
        assert report.ok and report.chains == 3 and report.records == 15, report  # 3 + 2 each
        assert not set(await audit.chains()) & chains
        assert (await verify_store(audit, CHECK)).ok
    finally:
        await one.close()
        await two.close()


async def test_a_careless_destination_is_refused_without_echoing_a_secret(
    azurite: Azurite, blob_container: str
) -> None:
    sas = _sas(azurite, blob_container)
    with pytest.raises(ConfigurationError, match="keyguard vault put") as refused:
        await open_destination(f"{blob_container}?{sas}", ArchiveSettings())
    assert sas not in str(refused.value) and "sig=" not in str(refused.value)
    with pytest.raises(ConfigurationError, match="SAS or a key is a secret") as refused:
        settings_from_mapping(
            {"monitor": {"audit": {"archive": {"to": f"{blob_container}?{sas}"}}}}
        )
    assert sas not in str(refused.value) and "sig=" not in str(refused.value)
    with pytest.raises(ConfigurationError, match="only to an emulator on this machine"):
        await open_destination("http://acct.blob.core.windows.net/audit", ArchiveSettings())
    with pytest.raises(ConfigurationError, match="unknown scheme"):
        await open_destination("ftp://host/audit", ArchiveSettings())
    with pytest.raises(ValueError, match="name the vault secret"):
        ArchiveSettings(credential="sas")
    with pytest.raises(ValueError, match="at least 2d"):
        ArchiveSettings(older_than="1h")


async def test_no_secret_in_logs_or_errors(
    store: Store, azurite: Azurite, blob_container: str, logs: LogCapture
) -> None:
    """A wrong account key and a SAS signed with it fail with one line naming the fix and
    neither secret; the right ones work, and appear nowhere either."""
    import base64
    import secrets

    audit = AuditStore(store.engine)  # type: ignore[attr-defined]
    now = time.time()
    await _chain(audit, now - 40 * DAY, 2)
    at = datetime.fromtimestamp(now, UTC)
    canary = base64.b64encode(b"CANARY-archive-" + secrets.token_bytes(49)).decode()
    bad_sas = _sas(azurite, blob_container, key=canary)
    sas_settings = ArchiveSettings(credential="sas", vault="s", ca_file=azurite.ca_file)
    errors = []
    for dest in (
        await _by_key(azurite, blob_container, canary),
        await open_destination(blob_container, sas_settings, _reader({"s": bad_sas})),
    ):
        try:
            with pytest.raises(StorageError) as failed:
                await archive_chains(audit, SIGNER, dest, at - timedelta(days=30), at)
            errors.append(str(failed.value))
        finally:
            await dest.close()
    assert len(errors) == 2 and all("keyguard vault put s" in e for e in errors[1:]), errors
    assert f"keyguard vault put {KEY_SECRET}" in errors[0], errors
    good_sas = _sas(azurite, blob_container)
    dest = await open_destination(blob_container, sas_settings, _reader({"s": good_sas}))
    try:
        assert len(await archive_chains(audit, SIGNER, dest, at - timedelta(days=30), at)) == 1
        assert (await verify_archive(dest, CHECK)).ok
    finally:
        await dest.close()
    signature = bad_sas.split("sig=")[1].split("&")[0]
    planted = (canary, bad_sas, signature, azurite.account_key, good_sas)
    for text in [*errors, *logs.lines]:
        for secret in planted:
            assert secret not in text


async def test_keyguard_s_managed_identity_archives_verifies_and_restores(
    store: Store, azurite: Azurite, blob_container: str, azure_emulator: AzureEmulator
) -> None:
    """No secret at all: a token from Keyguard's identity (the emulator's managed-identity
    endpoint) for https://storage.azure.com, which Azurite checks."""
    audit = AuditStore(store.engine)  # type: ignore[attr-defined]
    now = time.time()
    chain = await _chain(audit, now - 40 * DAY, 6)
    at = datetime.fromtimestamp(now, UTC)
    identity = AzureIdentityRef(ca_file=azure_emulator.ca_file)
    settings = ArchiveSettings(identity=identity, ca_file=azurite.ca_file)
    dest = await open_destination(blob_container, settings)
    try:
        [manifest] = await archive_chains(audit, SIGNER, dest, at - timedelta(days=30), at)
        assert manifest.chain == chain and manifest.records == 8  # + open, close
        report = await verify_archive(dest, CHECK)
        assert report.ok and report.records == 8, report
        assert (await verify_store(audit, CHECK)).ok
        assert await restore_file(audit, dest, manifest.file, CHECK) == 8
        assert chain in await audit.chains() and (await verify_store(audit, CHECK)).ok
    finally:
        await dest.close()


async def test_archive_verify_restore_from_the_command_line(
    azurite: Azurite, blob_container: str, tmp_path: Path
) -> None:
    """``keyguard audit archive --to URL``, ``verify --archive URL``, ``restore URL/FILE``
    with the account key in the vault; a tampered blob fails verify with exit 1."""
    from click.testing import CliRunner

    from keyguard.audit.signing import load_signer
    from keyguard.cli.main import cli
    from keyguard.config import load_settings
    from keyguard.store import open_store
    from keyguard.wiring.runtime import open_runtime
    from tests.support.settings import keyguard_config, write_config

    archive = {"credential": "account_key", "vault": KEY_SECRET, "ca_file": azurite.ca_file}
    config = write_config(
        tmp_path, keyguard_config(tmp_path, monitor={"audit": {"archive": archive}})
    )
    settings = load_settings(str(config))
    rt = await open_runtime(settings, {})
    try:
        await rt.vault.put(KEY_SECRET, azurite.account_key)
        signer = await load_signer(rt.vault)
    finally:
        await rt.close()
    opened = await open_store(settings.store)
    old = time.time() - 40 * DAY
    writer = AuditWriter(AuditStore(opened.engine), AuditSettings(), signer=signer,  # type: ignore[attr-defined]
                         clock=lambda: old)  # fmt: skip
    writer.append("admin", {"action": "keys.create", "target": "key:old"})
    await writer.close()
    await opened.close()

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(cli, [*args, "-c", str(config)])

    moved = await asyncio.to_thread(invoke, "audit", "archive", "--to", blob_container)
    assert moved.exit_code == 0 and "archived 3 records" in moved.output, moved.output
    checked = await asyncio.to_thread(invoke, "audit", "verify", "--archive", blob_container)
    assert checked.exit_code == 0 and "ok:" in checked.output, checked.output
    name = f"{writer.id}.jsonl.gz"
    back = await asyncio.to_thread(invoke, "audit", "restore", f"{blob_container}/{name}")
    assert back.exit_code == 0 and "restored 3 records" in back.output, back.output
    async with await _admin(azurite, blob_container) as admin:
        await admin.upload_blob(name, b"replaced", overwrite=True)
    bad = await asyncio.to_thread(invoke, "audit", "verify", "--archive", blob_container)
    assert bad.exit_code == 1 and "is not the manifest's" in bad.output, bad.output
    async with await _admin(azurite, blob_container) as admin:
        await admin.delete_blob(MANIFESTS)  # the last (here: the only) manifest removed
    alone = await asyncio.to_thread(invoke, "audit", "verify", "--archive", blob_container)
    assert alone.exit_code == 0 and "no manifest names" in alone.output, alone.output
    both = await asyncio.to_thread(
        invoke, "audit", "verify", "--archive", blob_container, "--with-store"
    )
    assert both.exit_code == 1 and "removed from the archive" in both.output, both.output
    for result in (moved, checked, back, bad, alone, both):
        assert azurite.account_key not in result.output


async def test_a_missing_container_is_named_with_the_fix(
    store: Store, azurite: Azurite, blob_container: str
) -> None:
    audit = AuditStore(store.engine)  # type: ignore[attr-defined]
    now = time.time()
    chain = await _chain(audit, now - 40 * DAY, 1)
    at = datetime.fromtimestamp(now, UTC)
    dest = await _by_key(azurite, blob_container + "-missing")
    try:
        with pytest.raises(StorageError, match=r"ContainerNotFound.*create the container first"):
            await archive_chains(audit, SIGNER, dest, at - timedelta(days=30), at)
        with pytest.raises(StorageError, match="create the container first"):
            await verify_archive(dest, CHECK)
    finally:
        await dest.close()
    assert chain in await audit.chains()
