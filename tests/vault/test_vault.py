"""The vault over a real (SQLite) store: versions, names, fingerprints, internal secrets."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from pathlib import Path

import pytest
from sqlalchemy import select

from keyguard.errors import StorageError, VaultError
from keyguard.store import Store, open_store
from keyguard.store.base import SealedSecret
from keyguard.store.schema import vault_secrets
from keyguard.store.sql import SQLStore
from keyguard.vault.crypto import MasterKey
from keyguard.vault.vault import FINGERPRINT_KEY, PEPPER, Vault

from .conftest import MASTER

VALUE = "azure-key-0123456789abcdef"


async def test_put_and_get_versions(vault: Vault) -> None:
    first = await vault.put("upstream/east", VALUE)
    second = await vault.put("upstream/east", "rotated")
    assert (first.name, first.version, first.kek_id) == ("upstream/east", 1, MASTER.kek_id)
    assert second.version == 2
    assert await vault.get("upstream/east") == "rotated"
    assert await vault.get("upstream/east", 1) == VALUE


async def test_unicode_and_multiline_values(vault: Vault) -> None:
    value = "-----BEGIN KEY-----\nzażółć\n-----END KEY-----"
    await vault.put("certs/client", value)
    assert await vault.get("certs/client") == value


async def test_missing_secret(vault: Vault) -> None:
    with pytest.raises(VaultError, match="no secret named upstream/none$"):
        await vault.get("upstream/none")
    await vault.put("upstream/east", VALUE)
    with pytest.raises(VaultError, match="no secret named upstream/east version 9"):
        await vault.get("upstream/east", 9)


async def test_wrong_master_key(store: Store, vault: Vault) -> None:
    await vault.put("upstream/east", VALUE)
    other = Vault(store, MasterKey(bytes(32)))
    with pytest.raises(VaultError, match="cannot decrypt upstream/east .*wrong master key"):
        await other.get("upstream/east")
    with pytest.raises(VaultError, match="wrong master key"):
        await Vault.open(store, MasterKey(bytes(32)))


async def test_list_shows_latest_versions_and_no_values(vault: Vault) -> None:
    await vault.put("upstream/east", VALUE)
    await vault.put("upstream/east", "v2")
    await vault.put("upstream/west", "w")
    listed = {i.name: i.version for i in await vault.list()}
    assert listed == {FINGERPRINT_KEY: 1, "upstream/east": 2, "upstream/west": 1}


@pytest.mark.parametrize(
    "name",
    ["", "/lead", ".hidden", "a..b", "x" * 129, "sp ace", "new\nline", "trailing/", "ü"],
)
async def test_invalid_names(vault: Vault, name: str) -> None:
    with pytest.raises(VaultError, match="invalid secret name"):
        await vault.put(name, VALUE)
    with pytest.raises(VaultError, match="invalid secret name"):
        await vault.get(name)


@pytest.mark.parametrize("name", ["a", "upstream/prod-eastus", "A.b_c-d/e", "x" * 128])
async def test_valid_names(vault: Vault, name: str) -> None:
    await vault.put(name, VALUE)
    assert await vault.get(name) == VALUE


async def test_reserved_names_and_empty_values_are_refused(vault: Vault) -> None:
    with pytest.raises(VaultError, match="reserved"):
        await vault.put(PEPPER, VALUE)
    with pytest.raises(VaultError, match="empty"):
        await vault.put("upstream/east", "")
    with pytest.raises(VaultError, match="larger than"):
        await vault.put("upstream/east", "x" * 70_000)


async def test_fingerprint_is_stored_and_is_a_keyed_hash(store: Store, vault: Vault) -> None:
    await vault.put("upstream/east", VALUE)
    sealed = await store.get_secret("upstream/east")
    assert sealed is not None
    fp_key = await vault.get_or_create_random(FINGERPRINT_KEY)
    expected = hmac.new(fp_key, VALUE.encode(), hashlib.sha256).hexdigest()
    assert sealed.fingerprint == vault.fingerprint(VALUE) == expected
    assert sealed.fingerprint != hashlib.sha256(VALUE.encode()).hexdigest()  # keyed, not plain


async def test_fingerprint_needs_an_opened_vault_but_put_does_not(store: Store) -> None:
    with pytest.raises(VaultError, match="not open"):
        Vault(store, MASTER).fingerprint(VALUE)
    info = await Vault(store, MASTER).put("upstream/east", VALUE)
    sealed = await store.get_secret("upstream/east")
    assert sealed is not None and info.version == 1
    assert sealed.fingerprint == (await Vault.open(store, MASTER)).fingerprint(VALUE)


async def test_values_never_reach_the_database(tmp_path: Path, sqlite_url: str) -> None:
    store = await open_store(sqlite_url)
    vault = await Vault.open(store, MASTER)
    await vault.put("upstream/east", VALUE)
    assert isinstance(store, SQLStore)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(vault_secrets))).all()
    await store.close()
    assert VALUE not in repr(rows)
    for path in tmp_path.iterdir():
        assert VALUE.encode() not in path.read_bytes()


async def test_internal_random_secrets_persist(store: Store, vault: Vault) -> None:
    pepper = await vault.get_or_create_random(PEPPER)
    assert len(pepper) == 32
    assert await vault.get_or_create_random(PEPPER) == pepper
    assert await Vault(store, MASTER).get_or_create_random(PEPPER) == pepper
    with pytest.raises(VaultError, match="internal secrets"):
        await vault.get_or_create_random("upstream/east")
    with pytest.raises(VaultError, match="expected 16"):
        await vault.get_or_create_random(PEPPER, nbytes=16)


async def test_concurrent_creation_of_a_random_secret_agrees(sqlite_url: str) -> None:
    stores = [await open_store(sqlite_url) for _ in range(4)]
    try:
        vaults = [Vault(s, MASTER) for s in stores]
        values = await asyncio.gather(*(v.get_or_create_random(PEPPER) for v in vaults))
        assert len(set(values)) == 1
    finally:
        for s in stores:
            await s.close()


class LateStore:
    """A store on which another writer always wins the race just before our insert."""

    def __init__(self, inner: Store, rival: Vault) -> None:
        self.inner = inner
        self.rival = rival
        self.raced = False

    async def put_secret(self, secret: SealedSecret) -> None:
        if not self.raced:
            self.raced = True
            if secret.name == PEPPER:
                await self.rival.get_or_create_random(PEPPER)
            else:
                await self.rival.put(secret.name, "rival")
        await self.inner.put_secret(secret)

    async def get_secret(self, name: str, version: int | None = None) -> SealedSecret | None:
        return await self.inner.get_secret(name, version)

    async def list_secrets(self) -> list[object]:
        return await self.inner.list_secrets()  # type: ignore[return-value]


async def test_losing_the_creation_race_returns_the_winners_value(store: Store) -> None:
    rival = await Vault.open(store, MASTER)
    late = Vault(LateStore(store, rival), MASTER)  # type: ignore[arg-type]
    mine = await late.get_or_create_random(PEPPER)
    assert mine == await rival.get_or_create_random(PEPPER)


async def test_losing_a_put_race_takes_the_next_version(store: Store) -> None:
    rival = await Vault.open(store, MASTER)
    late = await Vault.open(LateStore(store, rival), MASTER)  # type: ignore[arg-type]
    info = await late.put("upstream/east", VALUE)
    assert info.version == 2
    assert await rival.get("upstream/east", 1) == "rival"
    assert await rival.get("upstream/east") == VALUE


class BrokenStore(LateStore):
    async def put_secret(self, secret: SealedSecret) -> None:
        raise StorageError("store: put secret failed (OperationalError: disk I/O error)")


async def test_real_storage_failures_are_not_mistaken_for_races(store: Store) -> None:
    rival = await Vault.open(store, MASTER)
    broken = Vault(BrokenStore(store, rival), MASTER)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="disk I/O"):
        await broken.get_or_create_random("keyguard/other")
    broken = await Vault.open(BrokenStore(store, rival), MASTER)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="disk I/O"):
        await broken.put("upstream/east", VALUE)
