"""Configuration of upstream credentials, of the Azure management plane and of rotation.

These models hang off :class:`keyguard.config.Settings` (``rotation:``), its
``CredentialRef`` (``managed_identity:``, ``key_vault:``) and each upstream (``management:``)::

    rotation:
      credential_refresh_s: 5        # every replica re-reads its upstream key this often
      drain_s: 10                    # after every replica switched, before the old key dies
    upstreams:
      - name: east
        endpoint: https://east.openai.azure.com
        credential: {key_vault: {vault_url: https://kv-east.vault.azure.net, secret_name: aoai}}
        management:
          subscription_id: 00000000-0000-0000-0000-000000000000
          resource_group: rg-ai
          account_name: east
          key_max_age: 30d

Durations are written ``30d``, ``12h``, ``30m``, ``45s`` or as a number of seconds. Nothing here
is a secret: identities are ids, keys stay in a vault.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from ..durations import parse_duration

__all__ = [
    "AzureIdentityRef",
    "ManagedIdentityRef",
    "KeyVaultRef",
    "ManagementSettings",
    "RotationSettings",
    "Duration",
    "COGNITIVE_SERVICES_SCOPE",
]

COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
_KV_SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_GUIDISH = re.compile(r"[0-9A-Za-z][0-9A-Za-z._()-]{0,89}")


def _to_timedelta(value: Any) -> Any:
    if isinstance(value, str) and not value.startswith(("P", "-P")):  # ISO 8601: pydantic's
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


Duration = Annotated[timedelta, BeforeValidator(_to_timedelta)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _https_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{what} must be an https:// URL (Azure SDKs send tokens over TLS only)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{what} must not carry a query, fragment or user info")
    return value.rstrip("/")


class AzureIdentityRef(_Frozen):
    """Which Entra identity Keyguard itself uses (``azure-identity``), never a secret.

    ``managed_identity`` is the VM / App Service / Container Apps identity (system-assigned, or
    user-assigned with ``client_id``); ``workload_identity`` is AKS workload identity (the
    ``AZURE_FEDERATED_TOKEN_FILE`` set-up); ``default`` is ``DefaultAzureCredential``'s chain.
    ``ca_file`` is a CA bundle to trust for the token endpoint and the Azure service used with
    this identity, instead of the system store (for a TLS-inspecting proxy or the emulator).
    """

    type: Literal["managed_identity", "workload_identity", "default"] = "managed_identity"
    client_id: str | None = None
    ca_file: str | None = None

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, v: str | None) -> str | None:
        if v is not None and not _GUIDISH.fullmatch(v):
            raise ValueError("client_id must be the identity's client (application) id")
        return v


class ManagedIdentityRef(AzureIdentityRef):
    """``credential: {managed_identity: {...}}``: Entra tokens instead of any key."""

    scope: str = COGNITIVE_SERVICES_SCOPE


class KeyVaultRef(_Frozen):
    """``credential: {key_vault: {vault_url, secret_name}}``: the key lives in Azure Key Vault.

    ``verify_challenge_resource: false`` is only for a vault whose host is not under
    ``vault.azure.net`` (the emulator): the SDK otherwise refuses its authentication challenge.
    """

    vault_url: str
    secret_name: str
    identity: AzureIdentityRef = AzureIdentityRef()
    verify_challenge_resource: bool = True

    @field_validator("vault_url")
    @classmethod
    def _vault_url(cls, v: str) -> str:
        return _https_url(v, "vault_url")

    @field_validator("secret_name")
    @classmethod
    def _secret_name(cls, v: str) -> str:
        if not _KV_SECRET_NAME.fullmatch(v):
            raise ValueError("secret_name must be 1-127 letters, digits or '-' (Key Vault's rule)")
        return v


class ManagementSettings(_Frozen):
    """Where the upstream's Azure OpenAI resource lives, so Keyguard can rotate its keys."""

    subscription_id: str
    resource_group: str
    account_name: str
    arm_endpoint: str = "https://management.azure.com"
    arm_scope: str = "https://management.azure.com/.default"
    identity: AzureIdentityRef = AzureIdentityRef()
    #: rotate the upstream key when the one in service is older than this (None: never)
    key_max_age: Duration | None = None

    @field_validator("arm_endpoint")
    @classmethod
    def _arm(cls, v: str) -> str:
        return _https_url(v, "arm_endpoint")

    @field_validator("subscription_id", "resource_group", "account_name")
    @classmethod
    def _names(cls, v: str) -> str:
        if not _GUIDISH.fullmatch(v):
            raise ValueError(f"invalid Azure resource name {v[:90]!r}")
        return v


class RotationSettings(_Frozen):
    """How rotations run; the defaults suit production."""

    #: run the scheduler, security-event triggers and key-expiry alerts inside the gateway
    enabled: bool = True
    #: how often the scheduler looks at key ages, unfinished rotations and expiring keys
    check_interval: Duration = timedelta(minutes=5)
    #: every replica re-reads its upstream key at least this often: the switch-over bound
    credential_refresh_s: float = Field(default=5.0, gt=0, le=300)
    #: how long the runner waits for every live replica to serve the new key, then stalls
    switch_timeout: Duration = timedelta(minutes=2)
    #: after every replica switched, wait this long before regenerating the old key, so
    #: requests that took the old key just before the switch reach Azure first
    drain: Duration = timedelta(seconds=10)
    #: a rotation holds a lease this long (renewed while it runs); a crashed one is resumed after
    lease: Duration = timedelta(seconds=60)
    #: cheap data-plane calls that must accept the new key before it goes into service
    verify_attempts: int = Field(default=5, ge=1, le=20)
    verify_backoff: Duration = timedelta(seconds=2)
    #: rotate an upstream when a security event names it (a leaked or presented Azure key)
    on_security_event: bool = True
    #: Keyguard keys: default grace period of the previous secret after ``keys rotate``
    key_grace: Duration = timedelta(hours=24)
    #: Keyguard keys older than this (since their last rotation) expire; None: no maximum
    key_max_age: Duration | None = None
    #: alert when a Keyguard key expires within this window
    key_expiry_warning: Duration = timedelta(days=7)
