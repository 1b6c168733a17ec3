"""Where an upstream key is kept, so a rotation can store the new one as a new version.

* :class:`LocalVaultSink`  a local vault secret (``credential: {vault: NAME}``);
* :class:`KeyVaultSink`    an Azure Key Vault secret (``credential: {key_vault: ...}``).

Both only ever add versions: the old key stays readable as an older version (nothing is lost
if a rotation stops half-way), and providers serve the latest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import UpstreamError, VaultError
from ..upstream.azure_credentials import key_vault_client
from ..upstream.settings import KeyVaultRef
from ..vault.vault import Vault

if TYPE_CHECKING:
    from azure.keyvault.secrets.aio import SecretClient

__all__ = ["StoredKey", "KeySink", "LocalVaultSink", "KeyVaultSink"]


@dataclass(frozen=True, slots=True)
class StoredKey:
    value: str = field(repr=False)
    version: str
    created_at: datetime | None


class KeySink(Protocol):
    label: str

    async def latest(self) -> StoredKey | None: ...

    async def put(self, value: str) -> str:
        """Store ``value`` as a new version; return the version id."""
        ...

    async def close(self) -> None: ...


class LocalVaultSink:
    def __init__(self, vault: Vault, name: str) -> None:
        self._vault = vault
        self._name = name
        self.label = f"vault:{name}"

    async def latest(self) -> StoredKey | None:
        try:
            value, info = await self._vault.get_with_info(self._name)
        except VaultError as exc:
            if str(exc).startswith("no secret named"):
                return None
            raise
        return StoredKey(value, str(info.version), info.created_at)

    async def put(self, value: str) -> str:
        info = await self._vault.put(self._name, value)
        return str(info.version)

    async def close(self) -> None:
        return None


class KeyVaultSink:
    def __init__(self, ref: KeyVaultRef) -> None:
        self._ref = ref
        self._client: SecretClient | None = None
        self._credential: Any = None
        self.label = f"key_vault:{ref.secret_name}"

    def _open(self) -> SecretClient:
        if self._client is None:
            self._client, self._credential = key_vault_client(self._ref)
        return self._client

    async def latest(self) -> StoredKey | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            secret = await self._open().get_secret(self._ref.secret_name)
        except ResourceNotFoundError:
            return None
        except Exception as exc:
            raise _kv_error("read", self._ref, exc) from None
        if not secret.value or not secret.properties.version:
            return None
        return StoredKey(secret.value, secret.properties.version, secret.properties.created_on)

    async def put(self, value: str) -> str:
        try:
            secret = await self._open().set_secret(
                self._ref.secret_name, value, content_type="azure-openai-key"
            )
        except Exception as exc:
            raise _kv_error("write", self._ref, exc) from None
        if not secret.properties.version:
            raise UpstreamError("Key Vault answered without a version", reason="key_vault_failed")
        return secret.properties.version

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._credential is not None:
            await self._credential.close()
            self._credential = None


def _kv_error(what: str, ref: KeyVaultRef, exc: Exception) -> UpstreamError:
    status = getattr(exc, "status_code", None)
    detail = str(status) if status else type(exc).__name__
    return UpstreamError(
        f"Key Vault {what} of {ref.secret_name} failed ({detail})", reason="key_vault_failed"
    )
