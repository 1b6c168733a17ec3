"""The local vault: named, versioned secrets, envelope-encrypted in the store.

Every ``put`` adds a version; ``get`` returns the latest (or a given) version. Values are sealed
by :mod:`keyguard.vault.crypto` under the master key and stored with a keyed fingerprint (HMAC
with the internal ``keyguard/fingerprint-key``) so a scanner can recognise a leaked value without
the vault ever storing or showing it. Names under ``keyguard/`` are reserved for Keyguard's own
random secrets (the key-digest pepper, the fingerprint key), created by
:meth:`Vault.get_or_create_random`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..errors import StorageError, VaultError
from ..store.base import SealedSecret, SecretInfo, VaultStore
from .crypto import MasterKey, rewrap, seal, unseal
from .keyring import Keyring, KeyringFile

__all__ = ["Vault", "RekeyReport", "validate_name", "NAME_PATTERN", "PEPPER", "FINGERPRINT_KEY"]

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")
RESERVED_PREFIX = "keyguard/"
PEPPER = "keyguard/pepper"
FINGERPRINT_KEY = "keyguard/fingerprint-key"
MAX_VALUE_BYTES = 64 * 1024
_PUT_ATTEMPTS = 5


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid secret name, else raise :class:`VaultError`."""
    if not NAME_PATTERN.fullmatch(name) or ".." in name or name.endswith("/"):
        raise VaultError(
            f"invalid secret name {name[:140]!r}: use 1-128 letters, digits, '.', '_', '/' "
            "or '-', starting with a letter or digit, without '..'"
        )
    return name


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RekeyReport:
    """What :meth:`Vault.rekey` did: versions re-wrapped now, versions under the new key in
    total, and versions still under the old key (0 when the rekey is complete)."""

    rewrapped: int
    under_new_key: int
    remaining: int


class Vault:
    """Secrets sealed under one master key, in a :class:`~keyguard.store.base.VaultStore`.

    Build it with ``await Vault.open(store, master)``, which also loads the fingerprint key that
    :meth:`fingerprint` needs.
    """

    def __init__(
        self,
        store: VaultStore,
        master: MasterKey | Keyring,
        *,
        clock: Callable[[], datetime] = _utcnow,
        source: KeyringFile | None = None,
    ) -> None:
        self._store = store
        self._keyring = master if isinstance(master, Keyring) else Keyring(master)
        self._source = source  # the key file, re-read when a rekey changes it
        self._clock = clock
        self._fingerprint_key: bytes | None = None

    @classmethod
    async def open(
        cls,
        store: VaultStore,
        master: MasterKey | Keyring,
        *,
        clock: Callable[[], datetime] = _utcnow,
        source: KeyringFile | None = None,
    ) -> Vault:
        vault = cls(store, master, clock=clock, source=source)
        vault._fingerprint_key = await vault.get_or_create_random(FINGERPRINT_KEY)
        return vault

    @property
    def _master(self) -> MasterKey:
        """The key new versions are sealed under."""
        return self._keyring.current

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    def _reload(self, *, force: bool = False) -> None:
        if self._source is not None:
            changed = self._source.changed(force=force)
            if changed is not None:
                self._keyring = changed

    def _key_for(self, sealed: SealedSecret) -> MasterKey:
        """The key that opens ``sealed``: the current one, a previous one during a rekey (the
        file looked at again first: a closed window is never used), or the current one, whose
        failure says which key it was sealed under."""
        self._reload()
        key = self._keyring.for_kek(sealed.kek_id)
        if key is not self._keyring.current:  # unknown, or an old key: is it (still) there?
            self._reload(force=True)
            key = self._keyring.for_kek(sealed.kek_id)
        return key or self._keyring.current

    @property
    def kek_id(self) -> str:
        """The public id of the master key this vault seals new versions under."""
        return self._master.kek_id

    def fingerprint(self, value: str) -> str:
        """Hex HMAC-SHA256 of ``value`` under the vault's fingerprint key (for leak matching)."""
        if self._fingerprint_key is None:
            raise VaultError("the vault is not open: build it with 'await Vault.open(...)'")
        return hmac.new(self._fingerprint_key, value.encode(), hashlib.sha256).hexdigest()

    async def put(self, name: str, value: str) -> SecretInfo:
        """Store ``value`` as a new version of ``name`` and describe it (never the value)."""
        validate_name(name)
        if name.startswith(RESERVED_PREFIX):
            raise VaultError(f"secret names under {RESERVED_PREFIX!r} are reserved for Keyguard")
        if not value:
            raise VaultError(f"refusing to store an empty value for {name}")
        plaintext = value.encode()
        if len(plaintext) > MAX_VALUE_BYTES:
            raise VaultError(f"the value for {name} is larger than {MAX_VALUE_BYTES} bytes")
        if self._fingerprint_key is None:
            self._fingerprint_key = await self.get_or_create_random(FINGERPRINT_KEY)
        return await self._put(name, plaintext, self.fingerprint(value))

    async def _put(self, name: str, plaintext: bytes, fingerprint: str) -> SecretInfo:
        # Versions are allocated optimistically: the (name, version) primary key makes a
        # concurrent writer fail, and we retry with the next number.
        self._reload()  # a rekey may have made another key current
        for _ in range(_PUT_ATTEMPTS):
            latest = await self._store.get_secret(name)
            version = 1 if latest is None else latest.version + 1
            sealed = seal(
                self._master,
                name=name,
                version=version,
                plaintext=plaintext,
                fingerprint=fingerprint,
                created_at=self._clock(),
            )
            try:
                await self._store.put_secret(sealed)
            except StorageError:
                if await self._store.get_secret(name, version) is None:
                    raise  # not a lost race: a real storage failure
                continue
            return SecretInfo(name, version, sealed.kek_id, sealed.created_at)
        raise VaultError(f"cannot store {name}: too many concurrent writers")

    async def get(self, name: str, version: int | None = None) -> str:
        """The value of ``name`` (latest version unless ``version`` is given)."""
        validate_name(name)
        sealed = await self._store.get_secret(name, version)
        if sealed is None:
            which = "" if version is None else f" version {version}"
            raise VaultError(f"no secret named {name}{which}")
        try:
            return unseal(self._key_for(sealed), sealed).decode()
        except UnicodeDecodeError:
            raise VaultError(f"cannot decrypt {name}: the value is not text") from None

    async def get_with_info(self, name: str) -> tuple[str, SecretInfo]:
        """The latest value of ``name`` and which version it is (for providers that report
        the version they serve, and for key-age checks)."""
        validate_name(name)
        sealed = await self._store.get_secret(name)
        if sealed is None:
            raise VaultError(f"no secret named {name}")
        try:
            value = unseal(self._key_for(sealed), sealed).decode()
        except UnicodeDecodeError:
            raise VaultError(f"cannot decrypt {name}: the value is not text") from None
        return value, SecretInfo(name, sealed.version, sealed.kek_id, sealed.created_at)

    async def rekey(self, new: MasterKey) -> RekeyReport:
        """Re-wrap every secret version's data key under ``new`` (values untouched).

        Online and resumable: each version under the current or a previous key is re-wrapped
        with a compare-and-set on its master key id, versions already under ``new`` are
        skipped, and a version written meanwhile under an old key is picked up by running it
        again. ``new`` may be the current key (a rekey window left open: the rest is moved).
        """
        olds = [k for k in (self._keyring.current, *self._keyring.previous) if k != new]
        if not olds:
            raise VaultError("the new master key is the current one; nothing to re-wrap")
        rewrapped = 0
        for old in olds:
            for sealed in await self._store.sealed_versions(old.kek_id):
                moved = rewrap(old, new, sealed)
                unseal(new, moved)  # prove the new wrapping opens before it replaces the old
                if await self._store.replace_wrapping(moved, expected_kek_id=old.kek_id):
                    rewrapped += 1
        already = len(await self._store.sealed_versions(new.kek_id))
        remaining = sum([len(await self._store.sealed_versions(k.kek_id)) for k in olds])
        return RekeyReport(rewrapped=rewrapped, under_new_key=already, remaining=remaining)

    async def list(self) -> list[SecretInfo]:
        """The latest version of every secret, internal ones included (names and ids only)."""
        return await self._store.list_secrets()

    async def get_or_create_random(self, name: str, nbytes: int = 32) -> bytes:
        """An internal random secret, created on first use.

        Race-safe: when two processes create it at once, one insert wins and both return the
        winner's value (version 1 is the only version ever written).
        """
        validate_name(name)
        if not name.startswith(RESERVED_PREFIX):
            raise VaultError(f"internal secrets live under {RESERVED_PREFIX!r}, not {name!r}")
        if not 16 <= nbytes <= 1024:
            raise VaultError("internal random secrets are 16 to 1024 bytes")
        sealed = await self._store.get_secret(name, 1)
        if sealed is None:
            value = base64.urlsafe_b64encode(os.urandom(nbytes))
            candidate = seal(
                self._master,
                name=name,
                version=1,
                plaintext=value,
                fingerprint="",
                created_at=self._clock(),
            )
            try:
                await self._store.put_secret(candidate)
                return base64.urlsafe_b64decode(value)
            except StorageError:
                sealed = await self._store.get_secret(name, 1)
                if sealed is None:
                    raise
        try:
            raw = base64.urlsafe_b64decode(unseal(self._key_for(sealed), sealed))
        except (binascii.Error, ValueError):
            raise VaultError(f"cannot decode {name}: the stored value is malformed") from None
        if len(raw) != nbytes:
            raise VaultError(f"{name} holds {len(raw)} bytes, expected {nbytes}")
        return raw
