"""Upstream credentials from Azure itself: Entra tokens (managed identity) and Key Vault.

* :class:`ManagedIdentityProvider` keeps a bearer token for the Cognitive Services scope from
  Keyguard's own identity (``azure-identity``). The token is fetched at startup and refreshed in
  the background ahead of its expiry: at the token's ``refresh_on`` or at half its remaining
  life, whichever is first, but never later than 5 minutes before it expires. Each refresh asks
  a fresh credential object, so the token is newly issued (azure-identity's cache would hand a
  token close to its expiry back for up to 30 seconds). A failed refresh is retried with
  back-off while the current token stays in service.
* :class:`KeyVaultProvider` reads the upstream key from Azure Key Vault
  (``azure-keyvault-secrets``) and re-reads it every ``refresh_s`` seconds, reporting the
  secret version it serves.

:func:`identity_credential` builds the ``azure-identity`` credential an
:class:`~keyguard.rotation.settings.AzureIdentityRef` names (also used for Azure Resource
Manager by the rotation runner). TLS is always verified: ``ca_file`` only replaces the trust
store.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.tasks import PeriodicTask
from ..errors import ConfigurationError
from .credentials import RefreshingKeyProvider
from .settings import AzureIdentityRef, KeyVaultRef, ManagedIdentityRef

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncSupportsTokenInfo, AsyncTokenCredential
    from azure.keyvault.secrets.aio import SecretClient

__all__ = [
    "ManagedIdentityProvider",
    "KeyVaultProvider",
    "identity_credential",
    "key_vault_client",
    "refresh_delay",
    "retry_delay",
    "REFRESH_LEAD_MAX_S",
]

log = logging.getLogger("keyguard.upstream")

REFRESH_LEAD_MAX_S = 300.0


def identity_credential(ref: AzureIdentityRef, *, blocking: bool = False) -> Any:
    """The ``azure.identity.aio`` credential for ``ref`` (caller closes it); it is both an
    ``AsyncTokenCredential`` and an ``AsyncSupportsTokenInfo``. ``blocking``: the
    ``azure.identity`` one instead, for an SDK client run on a thread of its own."""
    if blocking:
        from azure.identity import (
            DefaultAzureCredential,
            ManagedIdentityCredential,
            WorkloadIdentityCredential,
        )
    else:
        from azure.identity.aio import (  # type: ignore[assignment]
            DefaultAzureCredential,
            ManagedIdentityCredential,
            WorkloadIdentityCredential,
        )

    kwargs: dict[str, Any] = {"connection_verify": ref.ca_file} if ref.ca_file else {}
    if ref.type == "managed_identity":
        return ManagedIdentityCredential(client_id=ref.client_id, **kwargs)
    if ref.type == "workload_identity":
        return WorkloadIdentityCredential(client_id=ref.client_id, **kwargs)
    return DefaultAzureCredential(managed_identity_client_id=ref.client_id, **kwargs)


def key_vault_client(ref: KeyVaultRef) -> tuple[SecretClient, AsyncTokenCredential]:
    """A Key Vault secrets client for ``ref`` and the credential it uses (close both)."""
    from azure.keyvault.secrets.aio import SecretClient

    credential = identity_credential(ref.identity)
    ca_file = ref.identity.ca_file
    kwargs: dict[str, Any] = {"connection_verify": ca_file} if ca_file else {}
    client = SecretClient(
        ref.vault_url,
        credential,
        verify_challenge_resource=ref.verify_challenge_resource,
        **kwargs,
    )
    return client, credential


def refresh_delay(now: float, expires_on: float, refresh_on: float | None = None) -> float:
    """Seconds until a token valid until ``expires_on`` should be replaced (pure)."""
    left = expires_on - now
    target = expires_on - min(REFRESH_LEAD_MAX_S, left / 2)
    if refresh_on is not None:
        target = min(target, refresh_on)
    return max(0.0, target - now)


def retry_delay(attempt: int, now: float, expires_on: float | None) -> float:
    """Back-off after ``attempt`` failed refreshes: 1, 2, 4 ... 30 s, and at least four tries
    before the current token expires (pure)."""
    delay = min(30.0, 2.0 ** max(0, attempt - 1))
    if expires_on is not None and expires_on > now:
        delay = min(delay, max(0.05, (expires_on - now) / 4))
    return delay


class ManagedIdentityProvider:
    """``credential: {managed_identity: {...}}``: ``Authorization: Bearer <Entra token>``."""

    def __init__(
        self,
        credential_factory: Callable[[], AsyncSupportsTokenInfo],
        scope: str,
        *,
        clock: Callable[[], float] = time.time,
        label: str = "managed_identity",
    ) -> None:
        self._factory = credential_factory
        self._scope = scope
        self._clock = clock
        self._label = label
        self._headers: dict[str, str] = {}
        self._expires_on: float | None = None
        self._refresh_on: float | None = None
        self._failures = 0
        self._task: PeriodicTask | None = None
        self.refreshes = 0  # tokens obtained so far (for metrics and tests)

    @classmethod
    def from_ref(cls, ref: ManagedIdentityRef) -> ManagedIdentityProvider:
        return cls(lambda: identity_credential(ref), ref.scope, label=f"{ref.type}")

    def __repr__(self) -> str:
        return f"ManagedIdentityProvider({self._label}, scope={self._scope})"

    def auth_headers(self) -> dict[str, str]:
        return self._headers

    @property
    def expires_on(self) -> float | None:
        return self._expires_on

    async def start(self) -> None:
        try:
            await self._fetch()
        except Exception as exc:
            raise ConfigurationError(
                f"upstream credential {self._label}: cannot get an Entra token for "
                f"{self._scope}: {_describe(exc)}"
            ) from None
        self._task = PeriodicTask(
            f"token refresh {self._label}", self._refresh, interval=self._delay
        )
        self._task.start()

    async def _fetch(self) -> None:
        async with self._factory() as credential:
            info = await credential.get_token_info(self._scope)
        self._headers = {"Authorization": f"Bearer {info.token}"}
        self._expires_on = float(info.expires_on)
        self._refresh_on = None if info.refresh_on is None else float(info.refresh_on)
        self.refreshes += 1

    def _delay(self) -> float:
        now = self._clock()
        if self._failures:
            return retry_delay(self._failures, now, self._expires_on)
        assert self._expires_on is not None
        return refresh_delay(now, self._expires_on, self._refresh_on)

    async def _refresh(self) -> None:
        try:
            await self._fetch()
            self._failures = 0
        except Exception as exc:
            self._failures += 1
            expired = self._expires_on is not None and self._expires_on <= self._clock()
            (log.error if expired else log.warning)(
                "upstream credential %s: token refresh failed (%s)%s",
                self._label,
                _describe(exc),
                "; the token in service has EXPIRED" if expired else "; current token kept",
            )

    async def close(self) -> None:
        if self._task is not None:
            await self._task.close()
            self._task = None


class KeyVaultProvider(RefreshingKeyProvider):
    """``credential: {key_vault: {vault_url, secret_name}}``: the latest secret version."""

    def __init__(
        self,
        client: SecretClient,
        secret_name: str,
        *,
        refresh_s: float = 5.0,
        closers: tuple[Any, ...] = (),
    ) -> None:
        super().__init__(refresh_s=refresh_s)
        self._client = client
        self._secret = secret_name
        self._closers = closers
        self.label = f"key_vault:{secret_name}"

    @classmethod
    def from_ref(cls, ref: KeyVaultRef, *, refresh_s: float = 5.0) -> KeyVaultProvider:
        client, credential = key_vault_client(ref)
        return cls(client, ref.secret_name, refresh_s=refresh_s, closers=(client, credential))

    async def _read(self) -> tuple[str, str]:
        secret = await self._client.get_secret(self._secret)
        if not secret.value or not secret.properties.version:
            raise ConfigurationError(f"Key Vault secret {self._secret} has no value")
        return secret.value, secret.properties.version

    async def start(self) -> None:
        try:
            await super().start()
        except ConfigurationError:
            raise
        except Exception as exc:
            raise ConfigurationError(
                f"upstream credential {self.label}: cannot read the key from Key Vault: "
                f"{_describe(exc)}"
            ) from None

    async def close(self) -> None:
        await super().close()
        for closer in self._closers:
            with contextlib.suppress(Exception):
                await closer.close()


def _describe(exc: BaseException) -> str:
    """An SDK error in one line: its type and first line (SDK messages carry no secrets, but
    never a response body)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
