"""The console's routes on the admin port, and the guard around every one of them.

Every page and every action goes through :meth:`Console._guard`, which

* sets the headers: a strict Content-Security-Policy (``default-src 'self'``, no inline script
  or style, no framing, forms only to this origin), ``X-Frame-Options: DENY``,
  ``Referrer-Policy: no-referrer``, ``Cache-Control: no-store``, ``nosniff``, and
  ``Strict-Transport-Security`` where the console is reached over HTTPS;
* finds the session (:mod:`.sessions`) and re-verifies its admin token through the admin API's
  own authenticator, so a revoked token ends its sessions at once (an Entra ID session,
  :mod:`.entra`, carries its role and ends at its access token's expiry or its re-check time,
  whichever comes first); without one, a page redirects to the sign-in form and an action is
  refused;
* for a change (every ``POST``): refuses a request from another origin (``Origin``, else
  ``Sec-Fetch-Site``; a browser sends ``Origin: null`` under ``no-referrer``, so then the fetch
  metadata decides, and a request with neither is refused) and one without the session's CSRF
  token (compared in constant time), before reading anything else;
* checks the role the admin API's endpoint for the same service call needs (the API's own
  table is the source: the console cannot be more permissive than the API);
* renders every error the caller can cause as a page with its status, never a traceback; a
  store error is logged as its one-line message only (the driver's error it chains quotes SQL
  parameters: session id digests, CSRF tokens).

The console's origin is the admin port's own (the request's scheme and ``Host``), or
``access.admin.console_public_url`` where a proxy ends TLS in front of it: the one a change
must come from. Cookies are ``Secure`` (the session cookie then named with the ``__Host-``
prefix) when that origin is ``https`` or the request came over TLS. ``X-Forwarded-Proto`` is
never read.

Failed sign-in attempts are throttled per client address (:mod:`.throttle`): 429 with
``Retry-After``. A token sign-in and the Entra ID callback each take a token, and a sign-in
that succeeds gives it back; the start of an Entra ID sign-in takes none (it is refused only
when the bucket is empty). Another site's page spends none of its visitors' tokens: a token
form from another origin, an Entra ID start that is not a top-level navigation from this
console or the address bar, and an Entra ID callback that is not a top-level navigation
(``Sec-Fetch-Site``, ``Sec-Fetch-Dest``) are refused (403) before the throttle is looked at.

The pages and actions themselves are in :mod:`.pages` and :mod:`.actions`; they call the same
:class:`~keyguard.admin.service.AdminService` functions as the API, so every action is audited
with the signed-in actor.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import jinja2
import orjson
from aiohttp import web

from ..admin.activity import AuditView
from ..admin.api import AdminApi
from ..admin.auth import AdminAuthenticator
from ..admin.service import Actor, AdminService
from ..admin.settings import ADMIN_ROLES, AdminRole
from ..admin.tokens import role_allows
from ..errors import AuthenticationFailed, ConfigurationError, RequestError, StorageError
from ..events import AdminAction, EventBus, SecurityEvent
from ..keys.admin_tokens import TOKEN_PREFIX
from ..policy.document import PolicyInvalid
from .entra import EntraSignIn
from .sessions import (
    COOKIE,
    SECURE_COOKIE,
    EntraIdentity,
    MemorySessions,
    Session,
    Sessions,
    csrf_ok,
)
from .throttle import SignInThrottle

__all__ = ["Console", "View", "SECURITY_HEADERS", "navigation", "redirect", "same_origin"]

log = logging.getLogger("keyguard.console")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000"
_STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
MAX_FORM = 64 * 1024
ENTRA_RECHECK = timedelta(minutes=10)


@dataclass
class View:
    """What a page or an action knows: the request, who is signed in, and their session."""

    console: Console
    request: web.Request
    actor: Actor
    session: Session

    @property
    def service(self) -> AdminService:
        return self.console.service

    def can(self, role: AdminRole) -> bool:
        return role_allows(self.actor.role, role)

    def page(self, template: str, status: int = 200, **values: Any) -> web.Response:
        return self.console.render(template, status, view=self, **values)


Handler = Callable[[View], Awaitable[web.Response]]
_Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _api_roles() -> dict[tuple[str, str], AdminRole]:
    return {(e.method, e.path): e.role for e in AdminApi.table_only()}


def when(value: Any) -> str:
    """A time for people: epoch seconds or an ISO 8601 text as ``YYYY-MM-DD HH:MM:SSZ``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        except (OverflowError, OSError, ValueError):
            return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return "" if value is None else str(value)[:40]


def plain(value: Any, limit: int = 300) -> str:
    """A value of an incident's evidence as compact text (JSON for lists and mappings)."""
    if isinstance(value, str):
        text = value
    else:
        text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redirect(location: str) -> web.Response:
    """A 303 to a path of the console (after a form, the browser fetches it with GET)."""
    return web.Response(status=303, headers={"Location": location})


def same_origin(request: web.BaseRequest, own: str | None = None) -> bool:
    """Whether a change comes from a page of the origin ``own`` (by default the request's
    scheme and host; see the module's docstring)."""
    own = own or f"{request.scheme}://{request.host}"
    origin = request.headers.get("Origin")
    site = request.headers.get("Sec-Fetch-Site")
    if origin is not None and origin != "null" and origin != own:
        return False
    if site is not None and site != "same-origin":
        return False
    return origin == own or site == "same-origin"


def navigation(request: web.BaseRequest, *, from_here: bool) -> bool:
    """Whether a browser loads ``request`` as a top-level page (``Sec-Fetch-Dest``), and,
    ``from_here``, from this origin or the address bar (``Sec-Fetch-Site``); a client sending
    no fetch metadata (an older browser, a script) is taken at its word."""
    dest = request.headers.get("Sec-Fetch-Dest")
    site = request.headers.get("Sec-Fetch-Site")
    if dest is not None and dest != "document":
        return False
    return not from_here or site is None or site in ("same-origin", "none")


class Console:
    def __init__(
        self,
        service: AdminService,
        auth: AdminAuthenticator,
        audit: AuditView,
        *,
        sessions: Sessions | None = None,
        events: EventBus | None = None,
        entra: EntraSignIn | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        public_url: str | None = None,
        client_address: Callable[[web.BaseRequest], str | None] = lambda r: r.remote,
        throttle: SignInThrottle | None = None,
        entra_recheck: timedelta = ENTRA_RECHECK,
    ) -> None:
        """``public_url``: the origin browsers reach the console at, where a proxy ends TLS
        in front of it (``access.admin.console_public_url``); ``client_address``: whom a
        sign-in attempt is counted against (the TCP peer, or what ``access.trusted_proxies``
        make of ``X-Forwarded-For``); ``entra_recheck``: an Entra ID session's longest life."""
        self.service = service
        self.events = events or EventBus()
        self.entra = entra
        self.auth = auth
        self.audit = audit
        self.sessions: Sessions = sessions or MemorySessions()
        self.clock = clock
        self.public_url = public_url.rstrip("/") if public_url else None
        self.client_address = client_address
        self.throttle = throttle or SignInThrottle()
        self.entra_recheck = entra_recheck
        self.roles = _api_roles()
        self.guarded: set[tuple[str, str]] = set()  # the API endpoints the routes stand for
        self._templates = jinja2.Environment(
            loader=jinja2.PackageLoader("keyguard.console", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._templates.filters["when"] = when
        self._templates.filters["plain"] = plain
        folder = resources.files("keyguard.console") / "static"
        self._static = {name: (folder / name).read_bytes() for name in _STATIC}

    def origin(self, request: web.BaseRequest) -> str:
        """The console's origin as browsers see it: the public URL's, else the request's."""
        return self.public_url or f"{request.scheme}://{request.host}"

    def secure(self, request: web.BaseRequest) -> bool:
        """Whether the console's cookies are ``Secure``: browsers reach it over HTTPS (the
        public URL is ``https``) or the request came over TLS; never a forwarded header."""
        public = self.public_url is not None and self.public_url.startswith("https://")
        return public or request.secure

    def cookie(self, request: web.BaseRequest) -> str:
        """The session cookie's name: ``__Host-`` prefixed when it is ``Secure`` (the browser
        then refuses it unless it is ``Secure``, ``Path=/`` and has no ``Domain``)."""
        return SECURE_COOKIE if self.secure(request) else COOKIE

    def set_headers(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """Put the console's headers on ``response``."""
        response.headers.update(SECURITY_HEADERS)
        if self.secure(request):
            response.headers["Strict-Transport-Security"] = HSTS

    def role_of(self, method: str, api_path: str) -> AdminRole:
        """The role the admin API's endpoint needs (a missing entry is a bug: fail closed)."""
        return self.roles.get((method, api_path), "admin")

    def render(self, template: str, status: int = 200, **values: Any) -> web.Response:
        html = self._templates.get_template(template).render(**values)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    def add_routes(self, app: web.Application) -> None:
        from . import actions, pages

        app.router.add_get("/", self._guard(pages.overview, "GET", "/admin/alerts"))
        app.router.add_get("/console/static/{name}", self._asset)
        app.router.add_get("/sign-in", self._sign_in_form)
        app.router.add_post("/sign-in", self._sign_in)
        app.router.add_post("/sign-out", self._sign_out)
        if self.entra is not None:
            entra = self.entra
            app.router.add_get("/sign-in/entra", self._entra_route(entra.start, start=True))
            app.router.add_get(entra.redirect_path, self._entra_route(entra.callback, start=False))
        app.router.add_get("/keys", self._guard(pages.keys, "GET", "/admin/keys"))
        app.router.add_get("/keys/{key_id}", self._guard(pages.key, "GET", "/admin/keys/{key_id}"))
        app.router.add_post("/keys", self._guard(actions.create_key, "POST", "/admin/keys"))
        for change in ("suspend", "resume", "revoke", "rotate"):
            api = f"/admin/keys/{{key_id}}/{change}"
            app.router.add_get(
                f"/keys/{{key_id}}/{change}", self._guard(actions.confirm(change), "POST", api)
            )
            app.router.add_post(
                f"/keys/{{key_id}}/{change}", self._guard(actions.change_key(change), "POST", api)
            )
        app.router.add_get("/incidents", self._guard(pages.incidents, "GET", "/admin/alerts"))
        resolve = "/admin/alerts/{incident_id}/resolve"
        app.router.add_post(
            "/incidents/{incident_id}/resolve", self._guard(actions.resolve, "POST", resolve)
        )
        acknowledge = "/admin/alerts/{incident_id}/acknowledge"
        app.router.add_post(
            "/incidents/{incident_id}/acknowledge",
            self._guard(actions.acknowledge, "POST", acknowledge),
        )
        app.router.add_get("/audit", self._guard(pages.audit, "GET", "/admin/alerts"))
        verification = "/admin/audit/verification"
        app.router.add_post(
            "/audit/verify", self._guard(actions.verify_audit, "POST", verification)
        )
        app.router.add_get("/policy", self._guard(pages.policy, "GET", "/admin/policy"))
        explain = "/admin/policy/explain"
        app.router.add_post("/policy/explain", self._guard(actions.explain, "POST", explain))

    # -- the guard -------------------------------------------------------------------------

    def _guard(self, handler: Handler, api_method: str, api_path: str) -> _Route:
        needed = self.role_of(api_method, api_path)
        self.guarded.add((api_method, api_path))

        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                response = await self._checked(request, handler, needed)
            except StorageError as exc:  # the session table's
                response = self._store_failed(request, exc)
            self.set_headers(request, response)
            return response

        return guarded

    async def _checked(
        self, request: web.Request, handler: Handler, needed: AdminRole
    ) -> web.StreamResponse:
        change = request.method == "POST"
        if change and not same_origin(request, self.origin(request)):
            return self._refused(403, "This change did not come from a page of this console.")
        session_id = request.cookies.get(self.cookie(request))
        session = await self.sessions.get(session_id, self.clock())
        if session is None:
            if change:
                return self._refused(403, "Your session has ended; sign in again.")
            return redirect("/sign-in")
        try:
            actor = await self._actor_of(session)
        except AuthenticationFailed:  # the token revoked or expired: its sessions end now
            await self.sessions.close(session_id)
            if change:
                return self._refused(403, "Your sign-in is no longer valid; sign in again.")
            return redirect("/sign-in")
        view = View(self, request, actor, session)
        if change:
            if (request.content_length or 0) > MAX_FORM:
                return self._refused(413, "The form is too large.")
            form = await request.post()
            csrf = form.get("csrf")
            if not csrf_ok(session, csrf if isinstance(csrf, str) else None):
                return self._refused(403, "The form has expired; reload the page and try again.")
        if not view.can(needed):
            return view.page(
                "error.html", 403, message=f"This needs the {needed} role; you have {actor.role}."
            )
        try:
            return await handler(view)
        except RequestError as exc:
            return view.page("error.html", exc.status, message=exc.message)
        except (PolicyInvalid, ConfigurationError) as exc:
            return view.page("error.html", 400, message=str(exc)[:500])
        except StorageError as exc:
            self._store_failed(request, exc)
            return view.page("error.html", 503, message="The store is unavailable; retry.")

    async def _actor_of(self, session: Session) -> Actor:
        if session.entra is None:
            return await self.auth.actor_of_token_id(session.token_id)
        role = session.entra.role  # the store's copy: a hostile writer's role opens nothing
        if role not in ADMIN_ROLES:
            raise AuthenticationFailed("The session's role is not a role.", reason="bad_session")
        return Actor(f"entra:{session.entra.object_id}", role)

    def _refused(self, status: int, message: str) -> web.Response:
        return self.render("error.html", status, view=None, message=message)

    def _store_failed(self, request: web.BaseRequest, exc: StorageError) -> web.Response:
        # The message only: no traceback, whose chained driver error quotes SQL parameters.
        log.error("console: %s (%s %r)", exc, request.method, request.path[:200])
        return self._refused(503, "The store is unavailable; retry.")

    def _limited(self, request: web.BaseRequest, *, take: bool = True) -> web.Response | None:
        """A 429 when the client has tried to sign in too often (:mod:`.throttle`), else
        ``None`` (a token taken with ``take``); the first refusal of a run is a
        ``console_sign_in_refused`` event."""
        address = self.client_address(request)
        now = self.clock()
        attempt = self.throttle.attempt(address, now.timestamp(), take=take)
        if attempt.allowed:
            return None
        if attempt.first:
            self.events.emit(
                SecurityEvent(
                    created=now,
                    kind="console_sign_in_refused",
                    severity="medium",
                    summary="Console: too many sign-in attempts from one address.",
                    source=address,
                    evidence={"reason": "throttled", "path": request.path[:200]},
                )
            )
        wait = attempt.retry_after
        response = self._refused(429, f"Too many sign-in attempts; try again in {wait} seconds.")
        response.headers["Retry-After"] = str(wait)
        return response

    def sign_in_page(self, status: int = 200, message: str | None = None) -> web.Response:
        entra = self.entra is not None
        return self.render("sign_in.html", status, view=None, message=message, entra=entra)

    def _entra_route(
        self,
        route: Callable[[Console, web.Request], Awaitable[web.StreamResponse]],
        *,
        start: bool,
    ) -> _Route:
        """An Entra ID route: refused (403, nothing spent) unless it is a top-level navigation
        (the start: from this console's page or the address bar), then throttled (the start
        only looks, the callback takes a token)."""

        async def headed(request: web.Request) -> web.StreamResponse:
            response: web.StreamResponse
            if not navigation(request, from_here=start):
                response = self._refused(403, "Sign in from this console's sign-in page.")
            else:
                response = self._limited(request, take=not start) or await route(self, request)
            self.set_headers(request, response)
            return response

        return headed

    async def open_session(
        self,
        request: web.Request,
        token_id: str,
        entra: EntraIdentity | None,
        actor: Actor,
        *,
        method: str,
    ) -> web.Response:
        """A new session for ``actor`` (replacing the browser's old one once it is open: a
        sign-in refused leaves the old one as it was), audited, its cookie set, and the
        sign-in's throttle token given back. After the identity provider's redirect the answer
        is a page that moves on to the console itself: a ``SameSite=Strict`` cookie set at the
        end of a cross-site redirect chain is not sent on a further redirect."""
        now = self.clock()
        cookie = self.cookie(request)
        try:
            session_id, _ = await self.sessions.open(token_id, now, entra)
            await self.sessions.close(request.cookies.get(cookie))  # an id is never reused
        except RequestError as exc:  # the table is full of live sessions
            return self.sign_in_page(exc.status, exc.message)
        except StorageError as exc:
            return self._store_failed(request, exc)
        self.throttle.refund(self.client_address(request), now.timestamp())
        after = {"method": method, "role": actor.role}
        self.events.emit(AdminAction(now, actor.id, "console.sign_in", "console", None, after))
        if entra is None:
            response = redirect("/")
        else:
            response = self.render("signed_in.html", view=None, actor=actor)
        response.set_cookie(
            cookie,
            session_id,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.secure(request),
        )
        return response

    # -- sign-in, sign-out, assets ---------------------------------------------------------

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        response = web.Response(body=self._static[name], content_type=_STATIC[name])
        self.set_headers(request, response)
        return response

    async def _sign_in_form(self, request: web.Request) -> web.StreamResponse:
        response = self.sign_in_page()
        self.set_headers(request, response)
        return response

    async def _sign_in(self, request: web.Request) -> web.StreamResponse:
        # The origin first: another site's form spends none of its visitors' throttle tokens.
        if not same_origin(request, self.origin(request)):
            response: web.StreamResponse = self._refused(403, "Sign in from this console's page.")
        else:
            response = self._limited(request) or await self._signed_in(request)
        self.set_headers(request, response)
        return response

    async def _signed_in(self, request: web.Request) -> web.StreamResponse:
        if (request.content_length or 0) > MAX_FORM:
            return self._refused(413, "The form is too large.")
        form = await request.post()
        token = form.get("token")
        token = token.strip() if isinstance(token, str) else ""
        message = "That admin token is not valid (unknown, revoked or expired)."
        if not token.startswith(TOKEN_PREFIX):  # counted as the API's failures are
            self.auth.failed(request, "console sign-in without an admin token")
            message = f"Sign in with an admin token ({TOKEN_PREFIX}...)."
            return self.sign_in_page(401, message)
        try:
            actor = await self.auth.authenticate_token(request, token)  # a failure is an event
        except RequestError:
            return self.sign_in_page(401, message)
        except StorageError as exc:
            return self._store_failed(request, exc)
        token_id = actor.id.removeprefix("admin-token:")
        return await self.open_session(request, token_id, None, actor, method="admin-token")

    async def _sign_out(self, request: web.Request) -> web.StreamResponse:
        try:
            response = await self._signed_out(request)
        except StorageError as exc:
            response = self._store_failed(request, exc)
        self.set_headers(request, response)
        return response

    async def _signed_out(self, request: web.Request) -> web.StreamResponse:
        cookie = self.cookie(request)
        session_id = request.cookies.get(cookie)
        session = await self.sessions.get(session_id, self.clock())
        if not same_origin(request, self.origin(request)) or session is None:
            response: web.StreamResponse = self._refused(403, "Sign out from the console.")
        else:
            form = await request.post()
            csrf = form.get("csrf")
            if not csrf_ok(session, csrf if isinstance(csrf, str) else None):
                response = self._refused(403, "The form has expired; reload and try again.")
            else:
                await self.sessions.close(session_id)
                response = redirect("/sign-in")
                response.del_cookie(cookie, path="/", secure=self.secure(request))
        return response
