"""The ``upstreams`` section of the config: the Azure OpenAI resources Keyguard forwards to.

::

    upstreams:
      - name: east
        endpoint: https://east.openai.azure.com
        credential: {key_vault: {vault_url: https://kv-east.vault.azure.net, secret_name: aoai}}
        deployments: {gpt-4o: {}, gpt-4o-mini: {priority: 1}}
        management:                  # the Azure resource, for key rotation
          subscription_id: 00000000-0000-0000-0000-000000000000
          resource_group: rg-ai
          account_name: east
          key_max_age: 30d

Nothing here is a secret: identities are ids, keys stay in a vault (the credential is a
reference: ``managed_identity``, ``key_vault``, ``vault`` or, flagged ``insecure``, ``env``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from ..core.operations import DEPLOYMENT_NAME
from ..core.settings import Duration, Frozen, service_url

__all__ = [
    "AzureIdentityRef",
    "ManagedIdentityRef",
    "KeyVaultRef",
    "ManagementSettings",
    "CredentialRef",
    "DeploymentSettings",
    "UpstreamSettings",
    "COGNITIVE_SERVICES_SCOPE",
]

COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
_KV_SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_GUIDISH = re.compile(r"[0-9A-Za-z][0-9A-Za-z._()-]{0,89}")


def _https_url(value: str, what: str) -> str:
    return service_url(value, what, "https://management.azure.com (Azure SDKs send tokens "
                       "over TLS only)", https_only=True)  # fmt: skip


class AzureIdentityRef(Frozen):
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


class KeyVaultRef(Frozen):
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


class ManagementSettings(Frozen):
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


class CredentialRef(Frozen):
    """How Keyguard authenticates to an upstream. Exactly one source: ``managed_identity``
    (Entra tokens, no key), ``key_vault`` (Azure Key Vault), ``vault``/``local_vault`` (the
    local encrypted vault) or ``env`` (with ``insecure: true``)."""

    vault: str | None = Field(default=None, validation_alias=AliasChoices("vault", "local_vault"))
    env: str | None = None
    insecure: bool = False
    managed_identity: ManagedIdentityRef | None = None
    key_vault: KeyVaultRef | None = None

    @property
    def kind(self) -> Literal["managed_identity", "key_vault", "local_vault", "env"]:
        if self.managed_identity is not None:
            return "managed_identity"
        if self.key_vault is not None:
            return "key_vault"
        return "local_vault" if self.vault is not None else "env"

    @model_validator(mode="after")
    def _one_source(self) -> CredentialRef:
        sources = (self.vault, self.env, self.managed_identity, self.key_vault)
        if sum(s is not None for s in sources) != 1:
            raise ValueError(
                "give exactly one of 'managed_identity', 'key_vault', 'vault' (a local vault "
                "secret name) or 'env'"
            )
        if self.env is not None and not self.insecure:
            raise ValueError(
                "an upstream key from an environment variable needs 'insecure: true'; "
                "prefer 'vault: upstream/NAME' (keyguard vault put upstream/NAME)"
            )
        return self


class DeploymentSettings(Frozen):
    """A deployment the gateway serves; ``upstream_deployment`` defaults to the same name.

    A deployment may be served by several upstreams (regions, resources): the lowest
    ``priority`` is tried first, ``weight`` spreads requests among equal priorities, and a
    backend that answers 429 or cannot be reached is skipped while it recovers. ``model``
    (default: the deployment's name) picks the tokenizer and the price for limits.
    """

    upstream_deployment: str | None = None
    model: str | None = None
    priority: int = Field(default=0, ge=0)
    weight: int = Field(default=1, gt=0)

    @field_validator("upstream_deployment")
    @classmethod
    def _valid_name(cls, v: str | None) -> str | None:
        if v is not None and not DEPLOYMENT_NAME.fullmatch(v):
            raise ValueError(f"invalid deployment name {v!r}")
        return v


class UpstreamSettings(Frozen):
    name: str
    endpoint: str
    credential: CredentialRef
    deployments: dict[str, DeploymentSettings]
    region: str | None = None
    management: ManagementSettings | None = None  # the Azure resource, for key rotation
    #: a CA bundle (PEM) trusted for ``endpoint`` besides the system store (upstream/tls.py)
    ca_file: str | None = None

    @field_validator("deployments", mode="before")
    @classmethod
    def _list_or_map(cls, v: Any) -> Any:
        if isinstance(v, list):
            return {str(name): {} for name in v}
        if isinstance(v, dict):
            return {k: ({} if val is None else val) for k, val in v.items()}
        return v

    @field_validator("deployments")
    @classmethod
    def _names(cls, v: dict[str, DeploymentSettings]) -> dict[str, DeploymentSettings]:
        for name in v:
            if not DEPLOYMENT_NAME.fullmatch(name) or ".." in name:
                raise ValueError(f"invalid deployment name {name!r}")
        if not v:
            raise ValueError("an upstream needs at least one deployment")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        return service_url(v, "endpoint", "https://NAME.openai.azure.com")

    @field_validator("name")
    @classmethod
    def _upstream_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", v):
            raise ValueError(f"invalid upstream name {v!r}")
        return v
