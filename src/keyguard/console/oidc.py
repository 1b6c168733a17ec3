"""The console's OpenID Connect client: Entra ID's authorization-code flow with PKCE (S256).

* The authorize and token endpoints come from the tenant's discovery document
  (``<authority>/.well-known/openid-configuration``), fetched over HTTPS on first use and
  kept; both must be ``https://`` URLs. Redirects are not followed, answers are bounded.
* The code is redeemed server to server with the PKCE verifier, and the client secret when
  the console is a confidential client (the secret is read from the vault at start, sent
  only to the token endpoint, never logged); the answer must hold an ``id_token`` and an
  ``access_token``.
* The id_token is checked here: its signature with the issuer's published keys (the same
  JWKS and header rules as access tokens, :mod:`keyguard.identity.tokens`), then its claims
  (:func:`check_id_claims`, pure): an accepted issuer, ``aud`` exactly the console's client
  id, unexpired (with the configured skew), a configured tenant, the sign-in's ``nonce``
  (constant time) and an ``oid``. The access token is the admin API's business: the caller
  validates it with the admin authenticator.

Every refusal is an :class:`~keyguard.errors.AuthenticationFailed` whose ``reason`` says what
failed; an unreachable identity provider is an :class:`~keyguard.errors.UpstreamError`.
"""

from __future__ import annotations

import hmac
import ssl
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import orjson

from ..errors import AuthenticationFailed, UpstreamError
from ..identity.claims import GUID, MAX_TIME
from ..identity.compact import MalformedToken, parse_compact
from ..identity.jwks import read_bounded
from ..identity.tokens import KeyLookup, check_header

__all__ = ["Endpoints", "IdToken", "OidcClient", "check_id_claims", "refused"]

MAX_ANSWER = 64 * 1024


def refused(
    reason: str, message: str = "Entra ID sign-in failed; sign in again."
) -> AuthenticationFailed:
    return AuthenticationFailed(message, code="Unauthorized", reason=reason)


@dataclass(frozen=True, slots=True)
class Endpoints:
    authorize: str
    token: str


@dataclass(frozen=True, slots=True)
class IdToken:
    object_id: str
    tenant: str
    expires: int


def check_id_claims(
    claims: dict[str, Any],
    now: float,
    *,
    client_id: str,
    issuers: Collection[str],
    tenants: Collection[str],
    nonce: str,
    skew: float,
) -> IdToken:
    """The identity an id_token's (signature-checked) claims stand for; raises otherwise."""
    if claims.get("iss") not in issuers:
        raise refused("id_token_issuer")
    if claims.get("aud") != client_id:
        raise refused("id_token_audience")
    exp, iat = claims.get("exp"), claims.get("iat", 0)
    if type(exp) is not int or type(iat) is not int or not 0 <= exp <= MAX_TIME:
        raise refused("id_token_claims")
    if now >= exp + skew or now + skew < iat:
        raise refused("id_token_expired", "The sign-in took too long; sign in again.")
    presented = claims.get("nonce")
    if not isinstance(presented, str) or not hmac.compare_digest(
        presented.encode(), nonce.encode()
    ):
        raise refused("id_token_nonce")
    tenant, oid = claims.get("tid"), claims.get("oid")
    if not isinstance(tenant, str) or tenant.lower() not in tenants:
        raise refused("id_token_issuer")
    if not isinstance(oid, str) or not GUID.fullmatch(oid):
        raise refused("id_token_claims")
    return IdToken(oid.lower(), tenant.lower(), exp)


def _https(url: Any) -> str:
    if not isinstance(url, str) or len(url) > 2000:
        raise UpstreamError("the discovery document lacks an endpoint", reason="oidc_discovery")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise UpstreamError("an OIDC endpoint is not https://", reason="oidc_discovery")
    return url


class OidcClient:
    def __init__(
        self,
        *,
        authority: str,
        client_id: str,
        scope: str,
        keys: KeyLookup,
        issuers: Collection[str],
        tenants: Collection[str],
        algorithms: Collection[str],
        skew: float,
        ssl_context: ssl.SSLContext,
        client_secret: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.client_id = client_id
        self._secret = client_secret
        self._discovery = f"{authority.rstrip('/')}/.well-known/openid-configuration"
        self._scope = scope
        self._keys = keys
        self._issuers = frozenset(issuers)
        self._tenants = frozenset(t.lower() for t in tenants)
        self._algorithms = frozenset(algorithms)
        self._skew = skew
        self._ssl = ssl_context
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None
        self._endpoints: Endpoints | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def _call(self, method: str, url: str, form: dict[str, str] | None) -> tuple[int, Any]:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(ssl=self._ssl)
            )
        try:
            async with self._http.request(
                method, url, data=form, allow_redirects=False, auto_decompress=False
            ) as response:
                body = await read_bounded(response.content, MAX_ANSWER)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamError(
                "The identity provider could not be reached; retry shortly.",
                status=502,
                reason="oidc_unreachable",
            ) from exc
        try:
            return status, orjson.loads(body)
        except orjson.JSONDecodeError:
            return status, None

    async def endpoints(self) -> Endpoints:
        if self._endpoints is None:
            status, doc = await self._call("GET", self._discovery, None)
            if status != 200 or not isinstance(doc, dict):
                raise UpstreamError(
                    "The identity provider's discovery document is unavailable; retry shortly.",
                    status=502,
                    reason="oidc_discovery",
                )
            self._endpoints = Endpoints(
                _https(doc.get("authorization_endpoint")), _https(doc.get("token_endpoint"))
            )
        return self._endpoints

    async def authorize_url(
        self, redirect_uri: str, *, state: str, nonce: str, challenge: str
    ) -> str:
        query = {
            "client_id": self.client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "response_mode": "query",
            "scope": self._scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return f"{(await self.endpoints()).authorize}?{urlencode(query)}"

    async def redeem(self, code: str, redirect_uri: str, verifier: str) -> tuple[str, str]:
        """``(id_token, access_token)`` for an authorization code."""
        form = {
            "grant_type": "authorization_code",
            "client_id": self.client_id,
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "scope": self._scope,
        }
        if self._secret is not None:
            form["client_secret"] = self._secret
        status, answer = await self._call("POST", (await self.endpoints()).token, form)
        if status != 200 or not isinstance(answer, dict):
            raise refused(
                "code_refused",
                "The identity provider refused the sign-in (the code was used, expired or "
                "not issued for this browser); sign in again.",
            )
        id_token, access_token = answer.get("id_token"), answer.get("access_token")
        if not isinstance(id_token, str) or not isinstance(access_token, str):
            raise refused("tokens_missing", "The identity provider sent no tokens; sign in again.")
        return id_token, access_token

    async def identity(self, id_token: str, nonce: str, now: float) -> IdToken:
        """The identity of a signed, valid id_token for this sign-in; raises otherwise."""
        try:
            compact = parse_compact(id_token)
        except MalformedToken:
            raise refused("id_token_malformed") from None
        try:
            alg, kid = check_header(compact.header, self._algorithms)
        except AuthenticationFailed:
            raise refused("id_token_malformed") from None
        key = await self._keys(kid)
        if key is None or key.algorithm != alg:
            raise refused("id_token_unknown_key")
        if not key.verify(compact.signing_input, compact.signature):
            raise refused("id_token_signature")
        return check_id_claims(
            compact.claims,
            now,
            client_id=self.client_id,
            issuers=self._issuers,
            tenants=self._tenants,
            nonce=nonce,
            skew=self._skew,
        )
