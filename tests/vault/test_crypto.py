"""Envelope encryption: round trips, and every kind of tampering is refused."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from keyguard.errors import VaultError
from keyguard.store.base import SealedSecret
from keyguard.vault.crypto import MasterKey, derive_kek_id, rewrap, seal, unseal

T0 = datetime(2025, 3, 1, tzinfo=UTC)
MASTER = MasterKey(bytes(range(32)))


def sealed(value: bytes = b"azure-key-value", master: MasterKey = MASTER) -> SealedSecret:
    return seal(
        master, name="upstream/east", version=3, plaintext=value, fingerprint="f", created_at=T0
    )


def flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


def test_round_trip() -> None:
    secret = sealed()
    assert unseal(MASTER, secret) == b"azure-key-value"
    assert secret.kek_id == MASTER.kek_id
    assert b"azure-key-value" not in secret.ciphertext + secret.wrapped_dek


def test_every_version_gets_a_fresh_data_key_and_nonces() -> None:
    a, b = sealed(), sealed()
    assert a.ciphertext != b.ciphertext
    assert a.wrapped_dek != b.wrapped_dek
    assert a.value_nonce != b.value_nonce and a.dek_nonce != b.dek_nonce


def test_empty_and_large_values() -> None:
    assert unseal(MASTER, sealed(b"")) == b""
    assert unseal(MASTER, sealed(b"x" * 100_000)) == b"x" * 100_000


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: replace(s, ciphertext=flip(s.ciphertext)),
        lambda s: replace(s, ciphertext=flip(s.ciphertext, -1)),  # the GCM tag
        lambda s: replace(s, value_nonce=flip(s.value_nonce)),
        lambda s: replace(s, dek_nonce=flip(s.dek_nonce)),
        lambda s: replace(s, wrapped_dek=flip(s.wrapped_dek)),
        lambda s: replace(s, wrapped_dek=s.wrapped_dek[:-1]),
        lambda s: replace(s, name="upstream/west"),  # AAD: moved to another name
        lambda s: replace(s, version=4),  # AAD: moved to another version
        lambda s: replace(s, kek_id="0" * 16),
        lambda s: replace(s, value_nonce=b""),
    ],
    ids=[
        "ciphertext",
        "tag",
        "value_nonce",
        "dek_nonce",
        "wrapped_dek",
        "truncated_dek",
        "name",
        "version",
        "kek_id",
        "empty_nonce",
    ],
)
def test_tampering_is_refused(tamper: object) -> None:
    secret = tamper(sealed())  # type: ignore[operator]
    with pytest.raises(VaultError, match="cannot decrypt") as info:
        unseal(MASTER, secret)
    assert "azure-key-value" not in str(info.value)


def test_data_key_swapped_between_versions_is_refused() -> None:
    a, b = sealed(b"one"), sealed(b"two")
    mixed = replace(a, wrapped_dek=b.wrapped_dek, dek_nonce=b.dek_nonce)
    with pytest.raises(VaultError):
        unseal(MASTER, mixed)


def test_wrong_master_key() -> None:
    other = MasterKey(bytes(range(1, 33)))
    with pytest.raises(VaultError, match="wrong master key"):
        unseal(other, sealed())
    # Even when the kek id is forged to match, the unwrap fails.
    with pytest.raises(VaultError, match="wrong master key"):
        unseal(other, replace(sealed(), kek_id=other.kek_id))


def test_rewrap_moves_a_secret_to_a_new_master_key() -> None:
    new = MasterKey.generate()
    moved = rewrap(MASTER, new, sealed())
    assert moved.kek_id == new.kek_id
    assert unseal(new, moved) == b"azure-key-value"
    with pytest.raises(VaultError):
        unseal(MASTER, moved)


def test_master_key_is_never_shown() -> None:
    assert repr(MASTER) == f"MasterKey(kek_id='{MASTER.kek_id}')"
    assert MASTER.key.hex() not in repr(MASTER)
    assert derive_kek_id(MASTER.key) == MASTER.kek_id
    assert len(MASTER.kek_id) == 16 and int(MASTER.kek_id, 16) >= 0
    with pytest.raises(ValueError):
        MasterKey(b"short")
