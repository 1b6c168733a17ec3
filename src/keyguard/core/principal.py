"""Who is calling: the principal a credential resolved to (never the credential itself)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling.

    ``kind`` is ``key`` (a Keyguard key: ``id`` is ``key:<key id>``), ``app``, ``agent`` or
    ``user`` (an Entra ID token: ``id`` is ``app:<name>``, ``agent:<name>``, ``user:<oid>``).
    ``app`` is the app the caller belongs to (an agent's parent app, a user's client app);
    ``tenant``, ``roles`` (app roles) and ``groups`` come from the token.
    """

    kind: str
    id: str
    app: str
    key_id: str | None = None
    tenant: str | None = None
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    parent: str | None = None  # an agent's parent app principal, ``app:<name>``
