"""Master-key rotation: every secret version re-wrapped online, values untouched, resumable."""

from __future__ import annotations

from dataclasses import replace

import pytest

from keyguard.errors import VaultError
from keyguard.store import Store
from keyguard.vault.crypto import MasterKey
from keyguard.vault.vault import PEPPER, Vault


async def test_rekey_rewraps_every_version_and_can_be_repeated(store: Store) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    vault = await Vault.open(store, old)
    pepper = await vault.get_or_create_random(PEPPER)
    await vault.put("upstream/east", "v1")
    await vault.put("upstream/east", "v2")
    await vault.put("upstream/west", "w1")

    report = await vault.rekey(new)
    assert (report.rewrapped, report.remaining) == (5, 0)  # 3 values + pepper + fingerprint key
    assert report.under_new_key == 5
    reopened = await Vault.open(store, new)
    assert [await reopened.get("upstream/east", v) for v in (1, 2)] == ["v1", "v2"]
    assert await reopened.get("upstream/west") == "w1"
    assert await reopened.get_or_create_random(PEPPER) == pepper
    assert reopened.fingerprint("v2") == vault.fingerprint("v2")  # leak matching carries on
    with pytest.raises(VaultError, match="wrong master key"):
        await vault.get("upstream/east")

    # a version written meanwhile by a process still on the old key is picked up by a re-run
    await vault.put("upstream/east", "v3")
    again = await vault.rekey(new)
    assert (again.rewrapped, again.remaining, again.under_new_key) == (1, 0, 6)
    assert await reopened.get("upstream/east") == "v3"
    with pytest.raises(VaultError, match="current one"):
        await reopened.rekey(new)


async def test_rewrapping_is_compare_and_set(store: Store) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    vault = await Vault.open(store, old)
    await vault.put("upstream/east", "v1")
    sealed = await store.get_secret("upstream/east")
    assert sealed is not None
    moved = replace(sealed, kek_id=new.kek_id)
    assert not await store.replace_wrapping(moved, expected_kek_id="0" * 16)
    assert await store.replace_wrapping(moved, expected_kek_id=old.kek_id)
    assert not await store.replace_wrapping(moved, expected_kek_id=old.kek_id)
    assert [s.name for s in await store.sealed_versions(new.kek_id)] == ["upstream/east"]
