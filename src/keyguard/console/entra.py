"""The console's "Sign in with Entra ID": the two routes around the identity provider.

``GET /sign-in/entra`` starts a sign-in: a fresh state, nonce and PKCE verifier
(:mod:`.preauth`) go into the sealed pre-auth cookie, and the browser to the tenant's
authorize endpoint (:mod:`.oidc`). The callback (``console_redirect_path``) finishes it, in
this order, deleting the pre-auth cookie whatever happens:

1. the pre-auth cookie opens (present, unaltered, unexpired) and its ``state`` is the
   redirect's (constant time), and it was not used before;
2. the code is redeemed with the verifier; the id_token is checked (signature, issuer,
   ``aud`` = the console's client id, expiry, nonce); the access token goes through the
   admin API's own authenticator, which gives the role (or refuses an identity without one),
   and must be the id_token's identity;
3. a console session of the Entra kind opens, holding the object id, the role and where it
   ends (:class:`~.sessions.EntraIdentity`): the access token's expiry or the console's
   re-check time (``access.admin.console_entra_recheck_s`` after sign-in), whichever is
   first, so a group or binding taken away takes effect within the re-check time.

The redirect URI is the console's origin (:meth:`~.app.Console.origin`) and the callback path;
the pre-auth cookie is ``Secure``, ``Path=/`` and named with the ``__Host-`` prefix when the
console's cookies are ``Secure``. The callback is throttled per client address with the token
sign-in (a sign-in that succeeds gives its token back); the start is refused only when the
address's bucket is empty. A start that is not a top-level navigation from the console's page
or the address bar, and a callback that is not a top-level navigation, are refused before the
throttle (:meth:`~.app.Console._entra_route`): another site's ``<img>`` spends nothing.

Any refusal is a sign-in page with a one-line reason and a 4xx (502 when the identity
provider cannot be reached), opens no session and is a ``console_sign_in_refused`` security
event; a sign-in is an audited ``console.sign_in`` action of the signed-in actor.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

from ..errors import AuthenticationFailed, PermissionDenied, UpstreamError
from ..events import SecurityEvent
from .oidc import OidcClient, refused
from .preauth import (
    COOKIE,
    LIFETIME,
    SECURE_COOKIE,
    PreAuth,
    Spent,
    challenge,
    new_pre_auth,
    open_cookie,
    seal,
)
from .preauth import state_ok as _state_ok
from .sessions import EntraIdentity

if TYPE_CHECKING:
    from .app import Console

__all__ = ["EntraSignIn"]

log = logging.getLogger("keyguard.console")

_MAX_CODE = 4096


class EntraSignIn:
    def __init__(self, oidc: OidcClient, key: bytes, redirect_path: str) -> None:
        if len(key) != 32:
            raise ValueError("the pre-auth cookie's key is 32 bytes (AES-256)")
        self.oidc = oidc
        self.redirect_path = redirect_path
        self._key = key
        self._spent = Spent()

    def redirect_uri(self, console: Console, request: web.BaseRequest) -> str:
        return console.origin(request) + self.redirect_path

    @staticmethod
    def cookie(console: Console, request: web.BaseRequest) -> str:
        return SECURE_COOKIE if console.secure(request) else COOKIE

    def cookie_path(self, console: Console, request: web.BaseRequest) -> str:
        """``/`` for the ``__Host-`` cookie (the prefix requires it), else the callback's."""
        return "/" if console.secure(request) else self.redirect_path

    async def start(self, console: Console, request: web.Request) -> web.StreamResponse:
        pre_auth = new_pre_auth(console.clock())
        try:
            location = await self.oidc.authorize_url(
                self.redirect_uri(console, request),
                state=pre_auth.state,
                nonce=pre_auth.nonce,
                challenge=challenge(pre_auth.verifier),
            )
        except UpstreamError as exc:
            log.warning("console: Entra sign-in cannot start: %s", exc.reason)
            return console.sign_in_page(exc.status, exc.message)
        response = web.Response(status=302, headers={"Location": location})
        response.set_cookie(
            self.cookie(console, request),
            seal(pre_auth, self._key),
            path=self.cookie_path(console, request),
            max_age=int(LIFETIME.total_seconds()),
            httponly=True,
            samesite="Lax",
            secure=console.secure(request),
        )
        return response

    async def callback(self, console: Console, request: web.Request) -> web.StreamResponse:
        now = console.clock()
        cookie = self.cookie(console, request)
        pre_auth = open_cookie(request.cookies.get(cookie), self._key, now)
        try:
            response = await self._finish(console, request, pre_auth, now)
        except (AuthenticationFailed, PermissionDenied, UpstreamError) as exc:
            console.events.emit(
                SecurityEvent(
                    created=now,
                    kind="console_sign_in_refused",
                    severity="medium",
                    summary=f"Console: an Entra ID sign-in was refused ({exc.reason}).",
                    source=request.remote,
                    evidence={"reason": str(exc.reason)[:60]},
                )
            )
            response = console.sign_in_page(exc.status, exc.message)
        response.del_cookie(
            cookie, path=self.cookie_path(console, request), secure=console.secure(request)
        )
        return response

    async def _finish(
        self, console: Console, request: web.Request, pre_auth: PreAuth | None, now: datetime
    ) -> web.StreamResponse:
        query = request.query
        if pre_auth is None:
            raise refused(
                "pre_auth_missing",
                "This sign-in was not started here, or took too long (the sign-in cookie is "
                "missing or expired); sign in again.",
            )
        if not _state_ok(pre_auth, query.get("state")):
            raise refused("state_mismatch", "This sign-in was not started here; sign in again.")
        if not self._spent.use(pre_auth, now):
            raise refused("pre_auth_replayed", "This sign-in was already used; sign in again.")
        if "error" in query:
            raise refused("idp_error", "Entra ID did not sign you in; sign in again.")
        code = query.get("code", "")
        if not code or len(code) > _MAX_CODE:
            raise refused("code_missing", "Entra ID sent no sign-in code; sign in again.")
        redirect_uri = self.redirect_uri(console, request)
        id_token, access_token = await self.oidc.redeem(code, redirect_uri, pre_auth.verifier)
        identity = await self.oidc.identity(id_token, pre_auth.nonce, now.timestamp())
        actor, expires = await console.auth.authenticate_entra(request, access_token)
        if actor.id != f"entra:{identity.object_id}":
            raise refused("identity_mismatch")
        ends = datetime.fromtimestamp(expires, UTC)
        if ends <= now:
            raise refused("token_expired", "The sign-in took too long; sign in again.")
        ends = min(ends, now + console.entra_recheck)  # the role is looked at again by then
        entra = EntraIdentity(identity.object_id, actor.role, ends)
        return await console.open_session(request, "", entra, actor, method="entra")
