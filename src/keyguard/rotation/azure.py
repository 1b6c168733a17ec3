"""The Azure Resource Manager calls a rotation needs: list and regenerate an account's keys.

:class:`ArmKeyManager` drives ``azure-mgmt-cognitiveservices`` (``accounts.list_keys`` and
``accounts.regenerate_key``) with Keyguard's own Entra identity; the emulator serves the same
endpoints (``arm_endpoint`` in the upstream's ``management`` settings). Errors become
:class:`~keyguard.errors.UpstreamError` naming the operation and Azure's status and code,
never a response body (a ``listKeys`` body is the keys).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..errors import UpstreamError
from ..upstream.azure_credentials import identity_credential
from ..upstream.settings import ManagementSettings
from .machine import Slot

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.mgmt.cognitiveservices.aio import CognitiveServicesManagementClient

__all__ = ["KeyManager", "ArmKeyManager"]


class KeyManager(Protocol):
    """An Azure OpenAI resource's two keys."""

    async def list_keys(self) -> tuple[str, str]: ...

    async def regenerate(self, slot: Slot) -> tuple[str, str]: ...

    async def close(self) -> None: ...


class ArmKeyManager:
    def __init__(self, settings: ManagementSettings) -> None:
        self._settings = settings
        self._client: CognitiveServicesManagementClient | None = None
        self._credential: AsyncTokenCredential | None = None

    def __repr__(self) -> str:
        s = self._settings
        return f"ArmKeyManager({s.resource_group}/{s.account_name})"

    def _open(self) -> CognitiveServicesManagementClient:
        if self._client is None:
            from azure.mgmt.cognitiveservices.aio import CognitiveServicesManagementClient

            s = self._settings
            kwargs: dict[str, Any] = (
                {"connection_verify": s.identity.ca_file} if s.identity.ca_file else {}
            )
            self._credential = identity_credential(s.identity)
            self._client = CognitiveServicesManagementClient(
                self._credential,
                s.subscription_id,
                base_url=s.arm_endpoint,
                credential_scopes=[s.arm_scope],
                **kwargs,
            )
        return self._client

    async def list_keys(self) -> tuple[str, str]:
        s = self._settings
        try:
            keys = await self._open().accounts.list_keys(s.resource_group, s.account_name)
        except Exception as exc:
            raise _arm_error("listKeys", s, exc) from None
        return _pair(keys.key1, keys.key2)

    async def regenerate(self, slot: Slot) -> tuple[str, str]:
        s = self._settings
        name = "Key1" if slot == "key1" else "Key2"
        try:
            keys = await self._open().accounts.regenerate_key(
                s.resource_group, s.account_name, name
            )
        except Exception as exc:
            raise _arm_error(f"regenerateKey {name}", s, exc) from None
        return _pair(keys.key1, keys.key2)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._credential is not None:
            await self._credential.close()
            self._credential = None


def _pair(key1: str | None, key2: str | None) -> tuple[str, str]:
    if not key1 or not key2:
        raise UpstreamError("Azure answered without both keys", reason="arm_no_keys")
    return key1, key2


def _arm_error(operation: str, s: ManagementSettings, exc: Exception) -> UpstreamError:
    status = getattr(exc, "status_code", None)
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    detail = " ".join(str(p) for p in (status, code) if p) or type(exc).__name__
    return UpstreamError(
        f"Azure Resource Manager {operation} on {s.resource_group}/{s.account_name} failed "
        f"({detail})",
        reason="arm_failed",
    )
