"""Envelope encryption for vault secrets: AES-256-GCM, a fresh data key per secret version.

::

    value ──AES-GCM(dek, value_nonce, aad = name + version)──────────► ciphertext
    dek   ──AES-GCM(master, dek_nonce, aad = name + version + kek_id)─► wrapped_dek

The additional authenticated data binds each ciphertext to its place: a row copied to another
name or version, or a data key moved between rows, fails to decrypt. ``kek_id`` is a short public
id of the master key (an HMAC of it, never the key), so a wrong master key is reported as such
instead of as corruption. Pure functions over values; every failure is a :class:`VaultError`
whose message names the secret, never its value.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field, replace
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import VaultError
from ..store.base import SealedSecret

__all__ = ["MASTER_KEY_BYTES", "MasterKey", "derive_kek_id", "seal", "unseal", "rewrap"]

MASTER_KEY_BYTES = 32
NONCE_BYTES = 12
_KEK_ID_LABEL = b"keyguard kek id"


def derive_kek_id(key: bytes) -> str:
    """The public id of a master key: 16 hex characters of HMAC-SHA256(key, label)."""
    return hmac.new(key, _KEK_ID_LABEL, hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class MasterKey:
    """The 256-bit key-encryption key. Its ``repr`` shows the public ``kek_id`` only."""

    key: bytes = field(repr=False)
    kek_id: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.key) != MASTER_KEY_BYTES:
            raise ValueError(f"a master key is exactly {MASTER_KEY_BYTES} bytes")
        object.__setattr__(self, "kek_id", derive_kek_id(self.key))

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(MASTER_KEY_BYTES))


def _value_aad(name: str, version: int) -> bytes:
    return b"keyguard/v1/value\x00" + name.encode() + b"\x00" + str(version).encode()


def _dek_aad(name: str, version: int, kek_id: str) -> bytes:
    return (
        b"keyguard/v1/dek\x00"
        + name.encode()
        + b"\x00"
        + str(version).encode()
        + b"\x00"
        + kek_id.encode()
    )


def seal(
    master: MasterKey,
    *,
    name: str,
    version: int,
    plaintext: bytes,
    fingerprint: str,
    created_at: datetime,
) -> SealedSecret:
    """Encrypt one secret version under a fresh data key wrapped by ``master``."""
    dek = AESGCM.generate_key(bit_length=256)
    value_nonce = os.urandom(NONCE_BYTES)
    dek_nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(dek).encrypt(value_nonce, plaintext, _value_aad(name, version))
    wrapped = AESGCM(master.key).encrypt(dek_nonce, dek, _dek_aad(name, version, master.kek_id))
    return SealedSecret(
        name=name,
        version=version,
        kek_id=master.kek_id,
        wrapped_dek=wrapped,
        dek_nonce=dek_nonce,
        value_nonce=value_nonce,
        ciphertext=ciphertext,
        fingerprint=fingerprint,
        created_at=created_at,
    )


def _unwrap_dek(master: MasterKey, secret: SealedSecret) -> bytes:
    where = f"{secret.name} version {secret.version}"
    if secret.kek_id != master.kek_id:
        raise VaultError(
            f"cannot decrypt {where}: wrong master key? (sealed under kek id {secret.kek_id}, "
            f"the current master key has kek id {master.kek_id}); point master_key_file or "
            f"KEYGUARD_MASTER_KEY at the key with kek id {secret.kek_id}"
        )
    try:
        dek = AESGCM(master.key).decrypt(
            secret.dek_nonce,
            secret.wrapped_dek,
            _dek_aad(secret.name, secret.version, secret.kek_id),
        )
    except (InvalidTag, ValueError):
        raise VaultError(
            f"cannot decrypt {where}: wrong master key? (or the stored data key was altered)"
        ) from None
    if len(dek) != 32:
        raise VaultError(f"cannot decrypt {where}: the stored data key is malformed")
    return dek


def unseal(master: MasterKey, secret: SealedSecret) -> bytes:
    """Decrypt one secret version; any mismatch or tampering raises :class:`VaultError`."""
    dek = _unwrap_dek(master, secret)
    try:
        return AESGCM(dek).decrypt(
            secret.value_nonce, secret.ciphertext, _value_aad(secret.name, secret.version)
        )
    except (InvalidTag, ValueError):
        raise VaultError(
            f"cannot decrypt {secret.name} version {secret.version}: "
            "the stored ciphertext was altered or moved"
        ) from None


def rewrap(old: MasterKey, new: MasterKey, secret: SealedSecret) -> SealedSecret:
    """The same secret version with its data key re-wrapped under ``new`` (value untouched)."""
    dek = _unwrap_dek(old, secret)
    dek_nonce = os.urandom(NONCE_BYTES)
    wrapped = AESGCM(new.key).encrypt(
        dek_nonce, dek, _dek_aad(secret.name, secret.version, new.kek_id)
    )
    return replace(secret, kek_id=new.kek_id, wrapped_dek=wrapped, dek_nonce=dek_nonce)
