"""How Keyguard proves itself to an Azure OpenAI upstream.

A provider hands out the headers to attach to an upstream request, synchronously, from a value
it keeps current in the background, so the hot path never waits for a vault or a token
endpoint. Providers, one per upstream, chosen by the config's ``credential``:

* ``managed_identity`` (:class:`~.azure_credentials.ManagedIdentityProvider`): Entra tokens for
  ``https://cognitiveservices.azure.com/.default`` from Keyguard's own identity, refreshed
  ahead of expiry. No key anywhere. The recommended default.
* ``key_vault`` (:class:`~.azure_credentials.KeyVaultProvider`): the key read from Azure Key
  Vault, re-read every ``refresh_s`` seconds so a new secret version is served without restart.
* ``vault``/``local_vault`` (:class:`VaultKeyProvider`): the key from Keyguard's local
  encrypted vault, re-read the same way (``keyguard vault put`` or a rotation adds versions).
* ``env`` (:class:`EnvKeyProvider`): a key in an environment variable; only with
  ``insecure: true``, and logged as a warning at startup.

Key providers report the version they serve (:attr:`RefreshingKeyProvider.version`), so a
rotation can confirm that every replica switched before it regenerates the old key, and
:meth:`RefreshingKeyProvider.refresh` re-reads at once (the in-process switch). ``refresh_s``
is the switch-over bound: a new version is served by every replica at most that long after
it is stored. On a failed re-read a provider keeps the last good key.

The key or token never appears in a log line, an error or a repr.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from ..core.tasks import PeriodicTask
from ..errors import ConfigurationError, GatewayError
from ..vault.vault import Vault
from .settings import CredentialRef

__all__ = [
    "CredentialProvider",
    "VersionedProvider",
    "RefreshingKeyProvider",
    "VaultKeyProvider",
    "EnvKeyProvider",
    "provider_for",
]

log = logging.getLogger("keyguard.upstream")


class CredentialProvider(Protocol):
    def auth_headers(self) -> dict[str, str]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class VersionedProvider(Protocol):
    """A provider serving a stored key: which version, since when, and re-read on demand."""

    @property
    def version(self) -> str | None: ...

    @property
    def switched_at(self) -> float | None: ...

    def on_change(self, callback: Callable[[], None]) -> None: ...

    async def refresh(self) -> None: ...


class RefreshingKeyProvider:
    """A key read from a store of versions, re-read every ``refresh_s`` seconds.

    Subclasses implement :meth:`_read` returning ``(value, version)``.
    """

    label = "key"

    def __init__(self, *, refresh_s: float, clock: Callable[[], float] = time.time) -> None:
        self._refresh_s = refresh_s
        self._clock = clock
        self._headers: dict[str, str] = {}
        self._version: str | None = None
        self._switched_at: float | None = None
        self._task: PeriodicTask | None = None
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label})"

    def auth_headers(self) -> dict[str, str]:
        return self._headers

    @property
    def version(self) -> str | None:
        return self._version

    @property
    def switched_at(self) -> float | None:
        """When (epoch seconds) this process started serving :attr:`version`."""
        return self._switched_at

    def on_change(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    async def _read(self) -> tuple[str, str]:
        raise NotImplementedError

    async def start(self) -> None:
        await self.refresh()
        self._task = PeriodicTask(
            f"upstream key {self.label}", self._refresh, interval=self._refresh_s
        )
        self._task.start()

    async def refresh(self) -> None:
        """Re-read now; serve the new value from the next request on."""
        async with self._lock:
            value, version = await self._read()
            if version == self._version and self._headers.get("api-key") == value:
                return
            self._headers = {"api-key": value}
            self._version = version
            self._switched_at = self._clock()
        log.info("upstream key %s: serving version %s", self.label, version)
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                log.exception("credential change listener failed")

    async def _refresh(self) -> None:
        try:
            await self.refresh()
        except GatewayError as exc:
            log.warning("could not refresh upstream key %s: %s", self.label, exc)
        except Exception as exc:  # an SDK error: keep the last good key, say what failed
            log.warning("could not refresh upstream key %s: %s", self.label, type(exc).__name__)

    async def close(self) -> None:
        if self._task is not None:
            await self._task.close()
            self._task = None


class VaultKeyProvider(RefreshingKeyProvider):
    """``vault: NAME``: the latest version of a local vault secret."""

    def __init__(self, vault: Vault, name: str, *, refresh_s: float = 5.0) -> None:
        super().__init__(refresh_s=refresh_s)
        self._vault = vault
        self._name = name
        self.label = f"vault:{name}"

    async def _read(self) -> tuple[str, str]:
        value, info = await self._vault.get_with_info(self._name)
        return value, str(info.version)


class EnvKeyProvider:
    def __init__(self, environ: Mapping[str, str], var: str) -> None:
        value = environ.get(var)
        if not value:
            raise ConfigurationError(f"environment variable {var} (an upstream key) is not set")
        self._var = var
        self._headers = {"api-key": value}

    def __repr__(self) -> str:
        return f"EnvKeyProvider(env:{self._var})"

    def auth_headers(self) -> dict[str, str]:
        return self._headers

    async def start(self) -> None:
        log.warning(
            "upstream key read from environment variable %s (insecure: true); store it in the "
            "vault instead (keyguard vault put upstream/NAME) or use managed_identity",
            self._var,
        )

    async def close(self) -> None:
        return None


def provider_for(
    ref: CredentialRef, *, vault: Vault, environ: Mapping[str, str], refresh_s: float = 5.0
) -> CredentialProvider:
    """The provider for one upstream's ``credential`` (Azure SDKs imported only when used)."""
    if ref.managed_identity is not None:
        from .azure_credentials import ManagedIdentityProvider

        return ManagedIdentityProvider.from_ref(ref.managed_identity)
    if ref.key_vault is not None:
        from .azure_credentials import KeyVaultProvider

        return KeyVaultProvider.from_ref(ref.key_vault, refresh_s=refresh_s)
    if ref.vault is not None:
        return VaultKeyProvider(vault, ref.vault, refresh_s=refresh_s)
    assert ref.env is not None
    return EnvKeyProvider(environ, ref.env)
