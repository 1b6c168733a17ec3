"""The ``access.entra`` section of the config: Entra ID access tokens as app credentials."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from ..core.settings import GUID, Frozen

__all__ = ["EntraSettings"]


class EntraSettings(Frozen):
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
            if not GUID.fullmatch(tenant):
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
