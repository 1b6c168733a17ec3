"""Ed25519 checkpoint signing: the private key lives in the vault, the public key is exported.

The signing key is a 32-byte seed kept as the internal vault secret ``keyguard/audit-signing-key``
(created on first use). ``keyguard audit public-key`` prints the public key (PEM) so an auditor
can verify an export without the master key: ``keyguard audit verify --public-key audit.pub``.
A checkpoint names its key by ``key_id``: the first 16 hex digits of SHA-256 of the raw public key.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import ConfigurationError
from ..vault.vault import Vault
from .chain import Checkpoint

__all__ = [
    "SIGNING_KEY",
    "Signer",
    "load_signer",
    "key_id_of",
    "load_public_keys",
    "signature_checker",
    "Signed",
]

SIGNING_KEY = "keyguard/audit-signing-key"


def key_id_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class Signer:
    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id_of(self.public)

    def sign(self, seq: int, record_hash: str, created: str, chain: str = "") -> Checkpoint:
        unsigned = Checkpoint(seq, record_hash, created, self.key_id, "", chain)
        return unsigned._replace_signature(self.signature(unsigned.payload()))

    def signature(self, payload: bytes) -> str:
        """Base64 Ed25519 signature over ``payload``."""
        return base64.b64encode(self._private.sign(payload)).decode()

    def public_pem(self) -> str:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


async def load_signer(vault: Vault) -> Signer:
    seed = await vault.get_or_create_random(SIGNING_KEY, 32)
    return Signer(Ed25519PrivateKey.from_private_bytes(seed))


def load_public_keys(pems: Iterable[bytes]) -> dict[str, Ed25519PublicKey]:
    keys: dict[str, Ed25519PublicKey] = {}
    for pem in pems:
        try:
            key = serialization.load_pem_public_key(pem)
        except ValueError:
            raise ConfigurationError("not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigurationError("the public key is not an Ed25519 key")
        keys[key_id_of(key)] = key
    return keys


class Signed(Protocol):
    """Anything signed with the audit key: a checkpoint, a head set."""

    @property
    def key_id(self) -> str: ...

    @property
    def signature(self) -> str: ...

    def payload(self) -> bytes: ...


def signature_checker(keys: dict[str, Ed25519PublicKey]) -> Callable[[Signed], bool]:
    """``check(checkpoint or head set) -> bool`` against the known public keys."""

    def check(signed: Signed) -> bool:
        key = keys.get(signed.key_id)
        if key is None:
            return False
        try:
            key.verify(base64.b64decode(signed.signature, validate=True), signed.payload())
        except (InvalidSignature, ValueError):
            return False
        return True

    return check
