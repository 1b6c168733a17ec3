"""Who is calling the admin API, and may they do this.

Credentials, in ``Authorization: Bearer ...`` only (never a query string, never ``api-key``):

* an admin token (``kga_...``, :mod:`.tokens`): its role is stored with it;
* an Entra ID access token, when ``access.admin.entra_groups`` or ``entra_app_roles`` are
  configured: validated like the proxy's tokens (signature, issuer, tenant, audience -- the
  admin audiences), and its role is the highest one its ``groups`` or ``roles`` claims map to.

Keyguard keys are refused here, admin tokens on the proxy port: the two planes share no
credential. A failed admin authentication is a medium-severity security event (the value never
appears in it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from aiohttp import web

from ..errors import AuthenticationFailed, PermissionDenied
from ..events import EventBus, SecurityEvent
from ..identity.tokens import TokenValidator
from ..keys.admin_tokens import TOKEN_PREFIX
from .service import Actor
from .settings import ADMIN_ROLES, AdminRole
from .tokens import AdminTokenService, role_allows

__all__ = ["AdminAuthenticator"]


def _denied(message: str, reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(message, code="Unauthorized", reason=reason)


class AdminAuthenticator:
    def __init__(
        self,
        tokens: AdminTokenService,
        *,
        events: EventBus,
        entra: TokenValidator | None = None,
        groups: Mapping[str, AdminRole] | None = None,
        app_roles: Mapping[str, AdminRole] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._tokens = tokens
        self._events = events
        self._entra = entra
        self._groups = dict(groups or {})
        self._app_roles = dict(app_roles or {})
        self._clock = clock

    async def authenticate(self, request: web.BaseRequest) -> Actor:
        values = request.headers.getall("Authorization", ())
        if not values:
            raise _denied(
                "The admin API needs 'Authorization: Bearer <admin token>' (create one with "
                "'keyguard admin tokens create').",
                "missing_credential",
            )
        scheme, _, token = values[0].strip().partition(" ")
        token = token.strip()
        if len(values) > 1 or scheme.lower() != "bearer" or not token or len(token) > 8192:
            raise _denied("Send exactly one 'Authorization: Bearer <token>' header.", "bad_header")
        return await self.authenticate_token(request, token)

    async def authenticate_token(self, request: web.BaseRequest, token: str) -> Actor:
        """The actor a credential's value stands for, however it arrived (a header here, the
        console's sign-in form there); raises as :meth:`authenticate` does."""
        if not token or len(token) > 8192:
            raise _denied("The credential is empty or too long.", "bad_header")
        if token.startswith(TOKEN_PREFIX):
            record = await self._tokens.verify(token, self._clock())
            if record is None:
                self.failed(request, "admin token not valid")
                raise _denied(
                    "The admin token is not valid (unknown, revoked or expired).", "bad_token"
                )
            return Actor(f"admin-token:{record.token_id}", record.role)
        if self._entra is not None and token.startswith("eyJ"):
            return (await self.authenticate_entra(request, token))[0]
        self.failed(request, "unrecognised credential")
        raise _denied(
            "The admin API accepts admin tokens (kga_...) only"
            + (" or Entra ID tokens" if self._entra is not None else "")
            + "; Keyguard keys are for the proxy port.",
            "unrecognised_credential",
        )

    async def authenticate_entra(self, request: web.BaseRequest, token: str) -> tuple[Actor, float]:
        """The actor of an Entra ID access token and the token's expiry (seconds since the
        epoch): what the console's Entra sign-in keeps. Raises as :meth:`authenticate` does
        (401 for a token that is not valid, 403 for an identity with no admin role)."""
        if self._entra is None:
            raise _denied(
                "This gateway does not accept Entra ID tokens.", "unrecognised_credential"
            )
        try:
            verified = await self._entra.validate(token, time.time())
        except AuthenticationFailed as exc:  # every malformed token lands here: a 401
            self.failed(request, "Entra token not valid")
            raise _denied(exc.message, exc.reason) from None
        roles = [self._groups[g] for g in verified.groups if g in self._groups]
        roles += [self._app_roles[r] for r in verified.roles if r in self._app_roles]
        if not roles:
            raise PermissionDenied(
                "This identity has no admin role on this gateway.",
                code="Forbidden",
                reason="no_admin_role",
            )
        best = max(roles, key=ADMIN_ROLES.index)
        return Actor(f"entra:{verified.object_id}", best), verified.expires

    async def actor_of_token_id(self, token_id: str) -> Actor:
        """The actor of admin token ``token_id`` while that token is active: what a console
        session (which keeps the id, never the token) stands for on each request."""
        record = await self._tokens.active(token_id, self._clock())
        if record is None:
            raise _denied("The admin token is no longer valid (revoked or expired).", "bad_token")
        return Actor(f"admin-token:{record.token_id}", record.role)

    async def require(self, request: web.BaseRequest, role: AdminRole) -> Actor:
        actor = await self.authenticate(request)
        if not role_allows(actor.role, role):
            raise PermissionDenied(
                f"This needs the {role} role; {actor.id} has {actor.role}.",
                code="Forbidden",
                reason="admin_role_too_low",
            )
        return actor

    def failed(self, request: web.BaseRequest, summary: str) -> None:
        """Record a failed authentication from ``request``'s client: an ``admin_auth_failed``
        security event (so an incident of its source); the console's sign-in form uses it too."""
        self._events.emit(
            SecurityEvent(
                created=self._clock(),
                kind="admin_auth_failed",
                severity="medium",
                summary=f"Admin API: {summary}.",
                source=request.remote,
                evidence={"path": request.path[:200]},
            )
        )
