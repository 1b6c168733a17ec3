"""The store's contracts: small interfaces the rest of Keyguard is written against.

Records are frozen dataclasses (values, no behaviour). A backend is picked by URL
(``keyguard.store.open_store("sqlite:///...")`` or ``"postgresql://..."``) and implements every
protocol here; driver errors are translated into :class:`keyguard.errors.StorageError`.
Timestamps are timezone-aware UTC ``datetime`` values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["KeyRecord", "SealedSecret", "SecretInfo", "KeyStore", "VaultStore", "Store"]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A Keyguard key as stored: the secret itself is never here, only its HMAC digest."""

    key_id: str
    app: str
    digest: str  # hex HMAC-SHA256(pepper, full key)
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    description: str = ""
    # After a rotation the previous secret keeps working until ``previous_valid_until``.
    previous_digest: str | None = None
    previous_valid_until: datetime | None = None
    suspended_at: datetime | None = None  # reversible, unlike revocation
    # Keyed fingerprint of the current secret (the vault's HMAC), for matching leaked keys.
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class SealedSecret:
    """One version of a vault secret, envelope-encrypted (AES-256-GCM).

    ``ciphertext`` is the value encrypted under a per-version data key; ``wrapped_dek`` is that
    data key encrypted under the master key identified by ``kek_id``.
    """

    name: str
    version: int
    kek_id: str
    wrapped_dek: bytes
    dek_nonce: bytes
    value_nonce: bytes
    ciphertext: bytes
    fingerprint: str  # keyed hash of the plaintext, for leak matching; never the value
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """What may be shown about a secret: no ciphertext, no value."""

    name: str
    version: int
    kek_id: str
    created_at: datetime


class KeyStore(Protocol):
    async def create_key(self, record: KeyRecord) -> None: ...

    async def get_key(self, key_id: str) -> KeyRecord | None: ...

    async def list_keys(
        self, *, app: str | None = None, include_revoked: bool = False
    ) -> list[KeyRecord]: ...

    async def revoke_key(self, key_id: str, at: datetime) -> KeyRecord | None:
        """Mark revoked (idempotent); return the record, or ``None`` if no such key."""
        ...

    async def keys_changed_since(self, since: datetime) -> list[KeyRecord]:
        """Records whose ``updated_at`` is later than ``since`` (cache invalidation)."""
        ...

    async def replace_key(self, record: KeyRecord, *, expected_updated_at: datetime) -> bool:
        """Write ``record`` over the stored one if its ``updated_at`` is still
        ``expected_updated_at`` (compare-and-set); ``False`` when it changed meanwhile or is gone.
        The ``key_id``, ``app`` and ``created_at`` never change."""
        ...


class VaultStore(Protocol):
    async def put_secret(self, secret: SealedSecret) -> None:
        """Insert a new version; ``secret.version`` must be the next one for that name."""
        ...

    async def get_secret(self, name: str, version: int | None = None) -> SealedSecret | None:
        """The given version, or the latest when ``version`` is ``None``."""
        ...

    async def list_secrets(self) -> list[SecretInfo]:
        """The latest version of every secret."""
        ...

    async def sealed_versions(self, kek_id: str) -> list[SealedSecret]:
        """Every version of every secret whose data key is wrapped under ``kek_id``."""
        ...

    async def replace_wrapping(self, secret: SealedSecret, *, expected_kek_id: str) -> bool:
        """Store ``secret``'s new data-key wrapping (``kek_id``, ``wrapped_dek``,
        ``dek_nonce``) if the stored version is still under ``expected_kek_id``
        (compare-and-set); the value's ciphertext never changes."""
        ...


class Store(KeyStore, VaultStore, Protocol):
    """Everything a backend provides, plus its lifecycle."""

    async def close(self) -> None: ...
