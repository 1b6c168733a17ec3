"""How Keyguard proves itself to an Azure OpenAI upstream.

A provider hands out the headers to attach to an upstream request, synchronously, from a value
it keeps current in the background, so the hot path never waits for a vault. Providers:

* :class:`VaultKeyProvider` reads an upstream key from the local vault (``vault: NAME`` in the
  config) and re-reads it every ``refresh_s`` seconds, so ``keyguard vault put`` of a new
  version is picked up without a restart; on a failed re-read it keeps the last good key.
* :class:`EnvKeyProvider` reads a key from an environment variable; allowed only with
  ``insecure: true`` and logged as a warning at startup.

The key value never appears in a log line, an error or a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Protocol

from ..config import CredentialRef
from ..errors import ConfigurationError, GatewayError
from ..vault.vault import Vault

__all__ = ["CredentialProvider", "VaultKeyProvider", "EnvKeyProvider", "provider_for"]

log = logging.getLogger("keyguard.upstream")


class CredentialProvider(Protocol):
    def auth_headers(self) -> dict[str, str]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class VaultKeyProvider:
    def __init__(self, vault: Vault, name: str, *, refresh_s: float = 30.0) -> None:
        self._vault = vault
        self._name = name
        self._refresh_s = refresh_s
        self._headers: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"VaultKeyProvider(vault:{self._name})"

    def auth_headers(self) -> dict[str, str]:
        return self._headers

    async def start(self) -> None:
        await self._load()
        self._task = asyncio.create_task(self._refresh_loop())

    async def _load(self) -> None:
        value = await self._vault.get(self._name)
        if self._headers.get("api-key") != value:
            self._headers = {"api-key": value}

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self._load()
            except GatewayError as exc:
                log.warning("could not refresh upstream key vault:%s: %s", self._name, exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


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
            "vault instead: keyguard vault put upstream/NAME",
            self._var,
        )

    async def close(self) -> None:
        return None


def provider_for(
    ref: CredentialRef, *, vault: Vault, environ: Mapping[str, str], refresh_s: float = 30.0
) -> CredentialProvider:
    if ref.vault is not None:
        return VaultKeyProvider(vault, ref.vault, refresh_s=refresh_s)
    assert ref.env is not None
    return EnvKeyProvider(environ, ref.env)
