"""The ``access.admin`` section of the config, and the admin API's roles.

Admin tokens need no configuration; this section names the Entra identities (groups, app
roles) that may use the admin API, and the role each gets, and, for the console's "Sign in
with Entra ID", the console's app registration (its client id) and where Entra sends the
browser back.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from ..core.settings import GUID, Frozen

__all__ = ["AdminAccessSettings", "AdminRole", "ADMIN_ROLES"]

AdminRole = Literal["viewer", "operator", "admin"]
ADMIN_ROLES: tuple[AdminRole, ...] = ("viewer", "operator", "admin")


class AdminAccessSettings(Frozen):
    """Entra identities that may use the admin API (admin tokens need no configuration)."""

    entra_groups: dict[str, AdminRole] = {}  # group object id -> role
    entra_app_roles: dict[str, AdminRole] = {}  # app role value (token "roles") -> role
    entra_audiences: list[str] = []  # default: access.entra.audiences
    # The console's Entra ID sign-in (OIDC authorization code + PKCE), off unless set:
    console_client_id: str | None = None  # the console's app registration (a GUID)
    console_redirect_path: str = "/sign-in/entra/callback"  # registered as https://HOST<path>
    # default: https://login.microsoftonline.com/<first access.entra tenant>/v2.0
    console_authority: str | None = None
    # A confidential client (an app registration with a "Web" redirect URI): the vault secret
    # holding its client secret, sent with the code (PKCE is used either way).
    console_client_secret_vault: str | None = None
    # The origin browsers reach the console at (https://console.contoso.internal), where it
    # is not the admin port's own: behind a proxy that ends TLS (access.trusted_proxies must
    # then name the proxy). The origin a change must come from, and the Entra redirect URI;
    # https (http only on a loopback host) makes the cookies Secure (then named __Host-...), as
    # TLS on the admin port does. X-Forwarded-Proto and X-Forwarded-Host are never read.
    console_public_url: str | None = None
    # An Entra ID console session ends this long after sign-in at the latest (before its
    # access token's expiry), so a group or binding taken away takes effect within it.
    console_entra_recheck_s: int = Field(default=600, ge=60, le=86_400)

    @field_validator("entra_groups")
    @classmethod
    def _group_ids(cls, v: dict[str, AdminRole]) -> dict[str, AdminRole]:
        for group in v:
            if not GUID.fullmatch(group):
                raise ValueError(f"group {group[:60]!r} is not a group object id (a GUID)")
        return {k.lower(): role for k, role in v.items()}

    @field_validator("console_client_id")
    @classmethod
    def _client_id(cls, v: str | None) -> str | None:
        if v is not None and not GUID.fullmatch(v):
            raise ValueError("console_client_id must be the app registration's client id (a GUID)")
        return v.lower() if v is not None else None

    @field_validator("console_redirect_path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/") or v.startswith("//") or len(v) > 200 or "?" in v or "#" in v:
            raise ValueError("console_redirect_path must be a path such as /sign-in/entra/callback")
        if v in ("/", "/sign-in", "/sign-out", "/sign-in/entra"):
            raise ValueError(f"console_redirect_path {v!r} is one of the console's own pages")
        return v

    @field_validator("console_authority")
    @classmethod
    def _authority(cls, v: str | None) -> str | None:
        if v is None:
            return None
        parts = urlsplit(v)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("console_authority must be an https:// URL (the tenant's authority)")
        return v.rstrip("/")

    @field_validator("console_public_url")
    @classmethod
    def _public_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        problem = "console_public_url must be an origin such as https://console.example.com"
        try:
            parts = urlsplit(v)
            port = parts.port
        except ValueError:
            raise ValueError(problem) from None
        if (
            parts.scheme not in ("https", "http")
            or not parts.hostname
            or parts.username is not None
            or parts.password is not None
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise ValueError(problem)
        host = parts.hostname.lower()
        if parts.scheme == "http" and host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(
                "console_public_url must be https:// (browsers would send the session cookie "
                "in the clear); http:// only for 127.0.0.1, ::1 or localhost"
            )
        host = f"[{host}]" if ":" in host else host
        default = {"https": 443, "http": 80}[parts.scheme]
        return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")

    @property
    def uses_entra(self) -> bool:
        return bool(self.entra_groups or self.entra_app_roles)
