"""User sign-in like Entra ID's: the OAuth 2.0 authorization-code flow with PKCE (S256).

* ``GET /{tenant}/oauth2/v2.0/authorize?client_id=&redirect_uri=&response_type=code&scope=
  &state=&nonce=&code_challenge=&code_challenge_method=S256&login_hint=<user>`` signs in the
  configured emulator user ``login_hint`` names (``users`` in the config, each with its groups
  and app roles; without a hint, ``default_user``) without any page, and redirects (302) to
  ``redirect_uri`` with ``code`` and ``state``. A missing or unknown user, a
  ``response_type`` other than ``code``, a missing ``nonce`` or a challenge method other than
  ``S256`` is a 400 (no redirect: the emulator cannot tell a hostile ``redirect_uri`` from a
  good one).
* ``POST /{tenant}/oauth2/v2.0/token`` with ``grant_type=authorization_code``, ``code``,
  ``client_id``, ``redirect_uri`` and ``code_verifier``: the code is single use (taken before
  anything is checked), lives ``CODE_LIFETIME`` seconds, and must come back with the same
  client id and redirect URI (and ``client_secret`` for a client in ``client_secrets``) and
  a verifier whose SHA-256 is the challenge. The answer holds
  an ``id_token`` (``aud`` = the client id, the ``nonce`` of the authorize request, the user's
  ``oid``, ``tid``, ``preferred_username``) and an ``access_token`` for the first scope that
  is not an OpenID one (``api://x/.default`` -> ``aud`` ``api://x``) carrying the user's
  ``groups`` and ``roles``, ``idtyp: user`` and ``scp``. Errors are OAuth's JSON shape.

Outstanding codes are bounded (``MAX_CODES``; the oldest goes first).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
from aiohttp import web

from keyguard.emulator.appkeys import STATE_KEY
from keyguard.emulator.signing import principal_id
from keyguard.emulator.state import EmulatorState

__all__ = ["CODE_LIFETIME", "MAX_CODES", "authorize", "token", "user_oid"]

CODE_LIFETIME = 60
MAX_CODES = 1_000
_OPENID_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})


@dataclass(frozen=True, slots=True)
class _Grant:
    user: str
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    resource: str | None
    expires: float


def user_oid(state: EmulatorState, user: str) -> str:
    """The stable object id the emulator gives the configured user ``user``."""
    return principal_id(state.config.tenant_id, f"user:{user}")


def _codes(state: EmulatorState) -> OrderedDict[str, Any]:
    return state.auth_codes


def _error(status: int, error: str, description: str) -> web.Response:
    body = orjson.dumps({"error": error, "error_description": description})
    return web.Response(status=status, body=body, content_type="application/json")


def _resource(scope: str) -> str | None:
    for item in scope.split():
        if item not in _OPENID_SCOPES:
            return item.removesuffix("/.default")
    return None


async def authorize(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    q = request.query
    user = q.get("login_hint") or state.config.default_user or ""
    if user not in state.config.users:
        return _error(400, "invalid_request", "login_hint must name a configured emulator user")
    if q.get("response_type") != "code":
        return _error(400, "unsupported_response_type", "response_type must be 'code'")
    if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
        return _error(400, "invalid_request", "PKCE with code_challenge_method=S256 is required")
    redirect_uri, client_id = q.get("redirect_uri", ""), q.get("client_id", "")
    if urlsplit(redirect_uri).scheme not in ("http", "https") or not client_id:
        return _error(400, "invalid_request", "client_id and an http(s) redirect_uri are required")
    if not q.get("nonce") or not q.get("state"):
        return _error(400, "invalid_request", "state and nonce are required")
    codes = _codes(state)
    while len(codes) >= MAX_CODES:
        codes.popitem(last=False)
    code = secrets.token_urlsafe(32)
    codes[code] = _Grant(
        user,
        client_id,
        redirect_uri,
        q["code_challenge"],
        q["nonce"],
        _resource(q.get("scope", "")),
        state.clock() + CODE_LIFETIME,
    )
    query = urlencode({"code": code, "state": q["state"]})
    separator = "&" if "?" in redirect_uri else "?"
    return web.Response(status=302, headers={"Location": f"{redirect_uri}{separator}{query}"})


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def token(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    form = await request.post()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    if values.get("grant_type") != "authorization_code":
        return _error(400, "unsupported_grant_type", "grant_type must be authorization_code")
    grant = _codes(state).pop(values.get("code", ""), None)  # single use, whatever follows
    if grant is None or grant.expires <= state.clock():
        return _error(400, "invalid_grant", "AADSTS70008: the code is unknown, used or expired")
    if values.get("client_id") != grant.client_id:
        return _error(400, "invalid_client", "AADSTS700005: the code belongs to another client")
    secret = state.config.client_secrets.get(grant.client_id)
    if secret is not None and not hmac.compare_digest(
        values.get("client_secret", "").encode(), secret.encode()
    ):
        return _error(401, "invalid_client", "AADSTS7000215: invalid client secret")
    if values.get("redirect_uri") != grant.redirect_uri:
        return _error(400, "invalid_grant", "AADSTS50148: redirect_uri does not match")
    verifier = values.get("code_verifier", "")
    if not hmac.compare_digest(_challenge(verifier).encode(), grant.challenge.encode()):
        return _error(400, "invalid_grant", "AADSTS501481: the code_verifier does not match")
    return web.Response(body=orjson.dumps(_tokens(state, grant)), content_type="application/json")


def _tokens(state: EmulatorState, grant: _Grant) -> dict[str, Any]:
    config = state.config
    user = config.users[grant.user]
    now = int(state.clock())
    exp = now + config.token_lifetime
    oid = user_oid(state, grant.user)
    common = {
        "iss": state.signer.issuer,
        "iat": now,
        "nbf": now,
        "exp": exp,
        "tid": config.tenant_id,
        "oid": oid,
        "sub": oid,
        "ver": "1.0",
    }
    id_token = {
        **common,
        "aud": grant.client_id,
        "nonce": grant.nonce,
        "preferred_username": f"{grant.user}@emulator.invalid",
        "name": grant.user,
    }
    answer: dict[str, Any] = {
        "token_type": "Bearer",
        "expires_in": config.token_lifetime,
        "id_token": state.signer.issue(id_token),
        "scope": "openid",
    }
    if grant.resource is not None:
        access = {
            **common,
            "aud": grant.resource,
            "appid": grant.client_id,
            "idtyp": "user",
            "scp": "access",
            "groups": list(user.groups),
            "roles": list(user.roles),
        }
        answer["access_token"] = state.signer.issue(access)
        answer["scope"] = f"openid {grant.resource}/.default"
    return answer
