"""Retention and archive, on SQLite and PostgreSQL: an old chain moves to a signed, compressed
file and out of the store, which still verifies (the manifest stands for it); the archive
verifies alone and names a changed file, a removed or forged manifest; a restored chain
verifies in the store again; a careless operator's folder or cutoff is refused."""

from __future__ import annotations

import gzip
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keyguard.audit.archive import MANIFESTS, archive_chains
from keyguard.audit.archive_verify import restore_file, verify_archive
from keyguard.audit.destination import ArchiveConflict
from keyguard.audit.export import verify_store
from keyguard.audit.folder import FolderDestination
from keyguard.audit.manifest import Manifest
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.errors import ConfigurationError
from keyguard.store import Store

SIGNER = Signer(Ed25519PrivateKey.generate())
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))
DAY = 86_400.0


async def _chain(store: AuditStore, at: float, n: int) -> str:
    writer = AuditWriter(store, AuditSettings(), signer=SIGNER, clock=lambda: at)
    for i in range(n):
        writer.append("request", {"i": i, "status": 200})
    await writer.close()
    return writer.id


@pytest.fixture
async def archived(store: Store, tmp_path: Path) -> tuple[AuditStore, Path, str, str]:
    audit = AuditStore(store.engine)  # type: ignore[attr-defined]
    now = time.time()
    old = await _chain(audit, now - 40 * DAY, 5)
    recent = await _chain(audit, now, 3)
    folder = tmp_path / "archive"
    folder.mkdir()
    at = datetime.fromtimestamp(now, UTC)
    dest = FolderDestination(folder)
    [manifest] = await archive_chains(audit, SIGNER, dest, at - timedelta(days=30), at)
    assert manifest.chain == old and manifest.records == 7 and manifest.last_seq == 7
    return audit, folder, old, recent


async def test_an_old_chain_moves_to_a_signed_file_and_both_verify(
    archived: tuple[AuditStore, Path, str, str],
) -> None:
    audit, folder, old, recent = archived
    assert set(await audit.chains()) == {recent}
    report = await verify_store(audit, CHECK)
    assert report.ok and report.chains == 1, report.problems
    assert any("1 chain(s) archived" in note for note in report.notes)
    alone = await verify_archive(FolderDestination(folder), CHECK)
    assert alone.ok and alone.records == 7 and alone.chains == 1, alone.problems
    with gzip.open(folder / f"{old}.jsonl.gz", "rt") as fh:
        assert f'"chain":"{old}"' in fh.readline()


async def test_a_restored_chain_verifies_in_the_store(
    archived: tuple[AuditStore, Path, str, str],
) -> None:
    audit, folder, old, recent = archived
    name = f"{old}.jsonl.gz"
    assert await restore_file(audit, FolderDestination(folder), name, CHECK) == 7
    assert set(await audit.chains()) == {old, recent}
    assert (await verify_store(audit, CHECK)).ok
    with pytest.raises(ConfigurationError, match="in the store already"):
        await restore_file(audit, FolderDestination(folder), name, CHECK)


async def test_a_changed_file_or_manifest_is_named(
    archived: tuple[AuditStore, Path, str, str],
) -> None:
    audit, folder, old, _ = archived
    path = folder / f"{old}.jsonl.gz"
    original = path.read_bytes()
    lines = gzip.decompress(original).decode().splitlines()
    lines[2] = lines[2].replace('"status":200', '"status":500')
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    report = await verify_archive(FolderDestination(folder), CHECK)
    assert not report.ok and "its length is not the manifest's" in report.problems[0]
    raw = bytearray(original)
    raw[len(raw) // 2] ^= 1  # the same length, other bytes
    path.write_bytes(bytes(raw))
    report = await verify_archive(FolderDestination(folder), CHECK)
    assert not report.ok and "its SHA-256 is not the manifest's (changed)" in report.problems[0]
    with pytest.raises(ConfigurationError, match="does not verify"):
        await restore_file(audit, FolderDestination(folder), path.name, CHECK)

    manifests = folder / MANIFESTS
    line = manifests.read_text().splitlines()[0]
    forger = Signer(Ed25519PrivateKey.generate())
    forged = Manifest.from_line(line)
    forged = replace(forged, signature=forger.signature(forged.payload()))
    manifests.write_text(forged.line() + "\n")
    report = await verify_archive(FolderDestination(folder), CHECK)
    assert "its signature is not valid (forged or edited)" in "\n".join(report.problems)
    manifests.write_text(line + "\n" + line + "\n")  # a manifest repeated (or one removed)
    report = await verify_archive(FolderDestination(folder), CHECK)
    assert "does not follow the manifest before it" in "\n".join(report.problems)


async def test_a_manifest_forged_into_the_store_does_not_hide_a_deletion(
    store: Store, tmp_path: Path
) -> None:
    audit = AuditStore(store.engine)  # type: ignore[attr-defined]
    deleted = await _chain(audit, time.time(), 4)
    await _chain(audit, time.time(), 1)  # a later writer's head set names the first chain
    await audit.delete_chain(deleted)
    forger = Signer(Ed25519PrivateKey.generate())
    fake = Manifest(deleted, "x.jsonl.gz", "0" * 64, 6, 6, "f" * 64, "t", "0" * 64, SIGNER.key_id)
    fake = replace(fake, signature=forger.signature(fake.payload()))
    await audit.add_archive(deleted, datetime.now(UTC), fake.line())
    report = await verify_store(audit, CHECK)
    problems = "\n".join(report.problems)
    assert "archive manifest of writer" in problems and "the whole chain was deleted" in problems


async def test_a_careless_archive_is_refused(store: Store, tmp_path: Path) -> None:
    audit = AuditStore(store.engine)  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    with pytest.raises(ConfigurationError, match="does not exist"):
        await archive_chains(audit, SIGNER, FolderDestination(tmp_path / "missing"), now, now)


async def test_a_stale_manifest_append_is_refused(tmp_path: Path) -> None:
    """Two archivers that read the same manifests: the second append is refused."""
    dest = FolderDestination(tmp_path)
    _, read = await dest.manifests()
    await dest.append_manifest('{"first": 1}', read)
    with pytest.raises(ArchiveConflict, match="changed since it was read"):
        await dest.append_manifest('{"second": 2}', read)
    assert (tmp_path / MANIFESTS).read_text() == '{"first": 1}\n'


async def test_a_manifest_naming_a_path_outside_the_archive_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    outside = tmp_path / "elsewhere.jsonl.gz"
    outside.write_bytes(gzip.compress(b"{}\n"))
    unsigned = Manifest("c", "../elsewhere.jsonl.gz", "0" * 64, 1, 1, "0" * 64, "t", "0" * 64,
                        SIGNER.key_id)  # fmt: skip
    line = replace(unsigned, signature=SIGNER.signature(unsigned.payload())).line()
    (folder / MANIFESTS).write_text(line + "\n")
    report = await verify_archive(FolderDestination(folder), CHECK)
    assert report.problems == [f"{MANIFESTS}:1: not an archive manifest"]
    with pytest.raises(ConfigurationError, match="not the name of an archive file"):
        await FolderDestination(folder).create("../x", outside)
