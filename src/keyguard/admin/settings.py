"""The ``access.admin`` section of the config, and the admin API's roles.

Admin tokens need no configuration; this section names the Entra identities (groups, app
roles) that may use the admin API, and the role each gets.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from ..core.settings import GUID, Frozen

__all__ = ["AdminAccessSettings", "AdminRole", "ADMIN_ROLES"]

AdminRole = Literal["viewer", "operator", "admin"]
ADMIN_ROLES: tuple[AdminRole, ...] = ("viewer", "operator", "admin")


class AdminAccessSettings(Frozen):
    """Entra identities that may use the admin API (admin tokens need no configuration)."""

    entra_groups: dict[str, AdminRole] = {}  # group object id -> role
    entra_app_roles: dict[str, AdminRole] = {}  # app role value (token "roles") -> role
    entra_audiences: list[str] = []  # default: access.entra.audiences

    @field_validator("entra_groups")
    @classmethod
    def _group_ids(cls, v: dict[str, AdminRole]) -> dict[str, AdminRole]:
        for group in v:
            if not GUID.fullmatch(group):
                raise ValueError(f"group {group[:60]!r} is not a group object id (a GUID)")
        return {k.lower(): role for k, role in v.items()}

    @property
    def uses_entra(self) -> bool:
        return bool(self.entra_groups or self.entra_app_roles)
