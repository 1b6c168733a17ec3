"""Validating an Entra ID (OIDC) access token with PyJWT: the checks, in order.

1. the header: parseable, ``alg`` in the allow-list (RS256/ES256 -- never ``none``, never an
   HMAC algorithm, so a token "signed" with the issuer's public key as an HMAC secret is
   refused before any key is touched), ``typ`` absent, ``JWT`` or ``at+jwt``, no ``crit``,
   a ``kid``;
2. the key: the issuer's JWKS entry for ``kid`` (:mod:`.jwks`), whose own algorithm must be
   the header's;
3. the signature, ``aud`` (one of the configured audiences) and ``iss`` (one of the accepted
   issuers) -- PyJWT's ``jwt.decode``;
4. the times, here with ``now`` passed in: ``exp`` required, ``nbf`` and ``iat`` when present,
   each with ``clock_skew_s`` of tolerance;
5. the tenant: ``tid`` must be a configured tenant and match the issuer;
6. the identity: ``appid`` (v1) or ``azp`` (v2) is the client application; ``oid`` the object.

The result is a :class:`VerifiedToken`: the few claims Keyguard uses, nothing else. Every
failure is a 401 whose message says what to do, and whose ``reason`` (for logs) says what
failed; neither contains the token.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK
from jwt.exceptions import (
    DecodeError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidSignatureError,
    MissingRequiredClaimError,
    PyJWTError,
)

from ..errors import AuthenticationFailed
from .settings import EntraSettings

__all__ = ["TokenValidator", "VerifiedToken", "token_failure"]

_TENANT_IN_ISSUER = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_MAX_LIST = 200  # groups / roles kept per token (Entra sends at most 200 groups)

KeyLookup = Callable[[str], Awaitable[PyJWK | None]]


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    tenant: str
    client_id: str  # appid (v1) / azp (v2): the calling application
    object_id: str  # oid: the service principal, managed identity, agent or user
    kind: str  # "app" (app-only), "agent" or "user" (delegated)
    expires: float  # exp, seconds since the epoch
    parent_client_id: str | None = None  # agents: the parent (blueprint) app
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


_MESSAGES = {
    "token_malformed": "Access denied: the bearer token is not a valid JWT access token.",
    "token_algorithm": "Access denied: the token's signing algorithm is not accepted (RS256 "
    "or ES256 only).",
    "token_type": "Access denied: the bearer token is not an access token.",
    "token_unknown_key": "Access denied: the token is signed with a key the identity provider "
    "does not publish. Get a new token.",
    "token_signature": "Access denied: the token's signature is invalid.",
    "token_expired": "Access denied: the token expired. Get a new token (azure-identity "
    "refreshes tokens itself when you pass a token provider).",
    "token_not_yet_valid": "Access denied: the token is not valid yet; check the clock of the "
    "machine that requested it.",
    "token_audience": "Access denied: the token is for another audience. Request a token for "
    "this gateway's scope (see the gateway's documentation).",
    "token_issuer": "Access denied: the token's issuer or tenant is not accepted by this gateway.",
    "token_claims": "Access denied: the token lacks the claims this gateway needs (tid, oid, "
    "appid or azp, exp).",
}


def token_failure(reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(_MESSAGES[reason], reason=reason)


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value[:_MAX_LIST] if isinstance(v, str) and 0 < len(v) <= 256)


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise token_failure("token_claims")
    return float(value)


class TokenValidator:
    def __init__(self, settings: EntraSettings, keys: KeyLookup) -> None:
        self._keys = keys
        self._algorithms = frozenset(settings.algorithms)
        self._audiences = list(settings.audiences)
        self._issuers = list(settings.accepted_issuers())
        self._tenants = frozenset(settings.tenants)
        self._skew = settings.clock_skew_s
        self._agent_claim = settings.agent_claim

    async def validate(self, token: str, now: float) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError:  # DecodeError, or e.g. an unsupported "crit" extension
            raise token_failure("token_malformed") from None
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise token_failure("token_algorithm")
        typ = header.get("typ")
        if (typ is not None and (not isinstance(typ, str) or typ.lower() not in _TYPES)) or (
            "crit" in header
        ):
            raise token_failure("token_type")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise token_failure("token_malformed")
        key = await self._keys(kid)
        if key is None or key.algorithm_name != alg:
            raise token_failure("token_unknown_key")
        claims = self._decode(token, key, alg)
        return self._verified(claims, now)

    def _decode(self, token: str, key: PyJWK, alg: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self._audiences,
                issuer=self._issuers,
                options={
                    "verify_exp": False,  # checked below, against the injected clock
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["exp", "iss", "aud"],
                },
            )
        except InvalidSignatureError:
            raise token_failure("token_signature") from None
        except InvalidAudienceError:
            raise token_failure("token_audience") from None
        except InvalidIssuerError:
            raise token_failure("token_issuer") from None
        except MissingRequiredClaimError:
            raise token_failure("token_claims") from None
        except DecodeError:
            raise token_failure("token_malformed") from None
        except PyJWTError:
            raise token_failure("token_malformed") from None
        return claims

    def _verified(self, claims: dict[str, Any], now: float) -> VerifiedToken:
        exp = _number(claims, "exp")
        nbf = _number(claims, "nbf")
        iat = _number(claims, "iat")
        if exp is None:
            raise token_failure("token_claims")
        if now >= exp + self._skew:
            raise token_failure("token_expired")
        if (nbf is not None and now + self._skew < nbf) or (
            iat is not None and now + self._skew < iat
        ):
            raise token_failure("token_not_yet_valid")
        tenant = claims.get("tid")
        issuer = str(claims.get("iss", "")).lower()
        if not isinstance(tenant, str) or tenant.lower() not in self._tenants:
            raise token_failure("token_issuer")
        tenant = tenant.lower()
        found = _TENANT_IN_ISSUER.search(issuer)
        if found is not None and found.group(0) != tenant:
            raise token_failure("token_issuer")
        client = claims.get("azp") if claims.get("ver") == "2.0" else claims.get("appid")
        client = client or claims.get("appid") or claims.get("azp")
        oid = claims.get("oid")
        if not isinstance(client, str) or not client or not isinstance(oid, str) or not oid:
            raise token_failure("token_claims")
        parent = claims.get(self._agent_claim)
        if claims.get("idtyp") == "user" or ("scp" in claims and claims.get("idtyp") != "app"):
            kind = "user"
        elif isinstance(parent, str) and parent:
            kind = "agent"
        else:
            kind = "app"
        return VerifiedToken(
            tenant=tenant,
            client_id=client.lower(),
            object_id=oid.lower(),
            kind=kind,
            expires=exp,
            parent_client_id=parent.lower()
            if kind == "agent" and isinstance(parent, str)
            else None,
            roles=_strings(claims.get("roles")),
            groups=tuple(g.lower() for g in _strings(claims.get("groups"))),
        )
