"""The ``access`` section of the config: who may call, from where, under which policy.

::

    access:
      entra:                                   # accept Entra ID access tokens (optional)
        tenants: [00000000-0000-0000-0000-000000000000]
        audiences: ["api://keyguard"]          # the Keyguard app registration (recommended)
      policy:
        file: policy.yaml                      # roles and bindings, reviewed in git
        managed: true                          # also editable through the admin API
      trusted_proxies: [10.0.0.0/8]            # X-Forwarded-For is believed only from these
      allowed_hosts: [gateway.contoso.com]     # Host headers served (empty: any)
      admin:
        entra_groups: {11111111-...: admin}    # Entra groups that may use the admin API

Every default keeps a gateway without this section working as before: Keyguard keys only, no
policy (every valid key may use every configured deployment), the peer address as the client
address. Nothing here is secret.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AccessSettings",
    "AdminAccessSettings",
    "AdminRole",
    "EntraSettings",
    "PolicySettings",
    "ADMIN_ROLES",
]

AdminRole = Literal["viewer", "operator", "admin"]
ADMIN_ROLES: tuple[AdminRole, ...] = ("viewer", "operator", "admin")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]+")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EntraSettings(_Frozen):
    """Entra ID (or any OIDC issuer shaped like it) access tokens as app credentials."""

    tenants: list[str] = Field(min_length=1)
    audiences: list[str] = Field(min_length=1)
    jwks_uri: str = "https://login.microsoftonline.com/common/discovery/v2.0/keys"
    issuers: list[str] = []  # default: the v1 and v2 issuer of every tenant
    ca_file: str | None = None  # extra CA bundle to trust for jwks_uri (tests, private PKI)
    algorithms: list[Literal["RS256", "ES256"]] = Field(default=["RS256"], min_length=1)
    clock_skew_s: float = Field(default=60.0, ge=0, le=300)
    # The longest validity a token may claim (exp - iat, exp - nbf, exp - now): Entra's
    # longest ordinary tokens (managed identities) live 24 h from an iat set 5 minutes back.
    max_token_lifetime_s: int = Field(default=90000, ge=300, le=7 * 86400)
    jwks_refresh_min_interval_s: float = Field(default=30.0, ge=0, le=3600)
    jwks_max_age_s: float = Field(default=3600.0, gt=0, le=86400)
    jwks_timeout_s: float = Field(default=5.0, gt=0, le=60)
    agent_claim: str = "xms_par_app_azp"  # present (= the parent app id) on agent tokens
    verified_cache_size: int = Field(default=65536, ge=0, le=10_000_000)

    @field_validator("tenants")
    @classmethod
    def _guids(cls, v: list[str]) -> list[str]:
        for tenant in v:
            if not _GUID.fullmatch(tenant):
                raise ValueError(f"tenant {tenant[:60]!r} is not a tenant id (a GUID)")
        return [t.lower() for t in v]

    @field_validator("jwks_uri")
    @classmethod
    def _https(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(
                "jwks_uri must be an https:// URL: signing keys are never fetched over plain HTTP"
            )
        return v

    @field_validator("audiences", "issuers")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if any(not item.strip() for item in v):
            raise ValueError("empty value")
        return v

    def accepted_issuers(self) -> frozenset[str]:
        if self.issuers:
            return frozenset(self.issuers)
        return frozenset(
            issuer
            for tenant in self.tenants
            for issuer in (
                f"https://sts.windows.net/{tenant}/",
                f"https://login.microsoftonline.com/{tenant}/v2.0",
            )
        )


class PolicySettings(_Frozen):
    """Where the policy comes from. Neither set: no policy (every valid key may do anything)."""

    file: str | None = None
    managed: bool = False  # the admin API may add roles and bindings, kept in the store
    reload_interval_s: float = Field(default=5.0, gt=0, le=3600)

    @property
    def configured(self) -> bool:
        return self.file is not None or self.managed


class AdminAccessSettings(_Frozen):
    """Entra identities that may use the admin API (admin tokens need no configuration)."""

    entra_groups: dict[str, AdminRole] = {}  # group object id -> role
    entra_app_roles: dict[str, AdminRole] = {}  # app role value (token "roles") -> role
    entra_audiences: list[str] = []  # default: access.entra.audiences

    @field_validator("entra_groups")
    @classmethod
    def _group_ids(cls, v: dict[str, AdminRole]) -> dict[str, AdminRole]:
        for group in v:
            if not _GUID.fullmatch(group):
                raise ValueError(f"group {group[:60]!r} is not a group object id (a GUID)")
        return {k.lower(): role for k, role in v.items()}

    @property
    def uses_entra(self) -> bool:
        return bool(self.entra_groups or self.entra_app_roles)


class AccessSettings(_Frozen):
    entra: EntraSettings | None = None
    policy: PolicySettings = PolicySettings()
    trusted_proxies: list[str] = []
    allowed_hosts: list[str] = []
    admin: AdminAccessSettings = AdminAccessSettings()

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for cidr in v:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"trusted proxy {cidr[:60]!r}: {exc}") from None
        return v

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        for host in v:
            if not _HOST.fullmatch(host):
                raise ValueError(f"allowed host {host[:80]!r} is not a host name or address")
        return [h.lower() for h in v]

    @model_validator(mode="after")
    def _consistent(self) -> AccessSettings:
        if self.entra is not None and not self.policy.configured:
            raise ValueError(
                "entra: Entra ID tokens need a policy (set access.policy.file or "
                "access.policy.managed): without one, any identity of the tenant could call"
            )
        if self.admin.uses_entra and self.entra is None:
            raise ValueError("admin: Entra admin groups or app roles need access.entra")
        return self

    def with_base_dir(self, base_dir: Path) -> AccessSettings:
        """Relative file paths resolved against the config file's directory."""
        policy, entra = self.policy, self.entra
        if policy.file is not None and not Path(policy.file).is_absolute():
            policy = policy.model_copy(update={"file": str((base_dir / policy.file).resolve())})
        if entra is not None and entra.ca_file and not Path(entra.ca_file).is_absolute():
            entra = entra.model_copy(update={"ca_file": str((base_dir / entra.ca_file).resolve())})
        if policy is self.policy and entra is self.entra:
            return self
        return self.model_copy(update={"policy": policy, "entra": entra})
