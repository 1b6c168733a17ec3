"""Validating an Entra ID (OIDC) access token: the checks, in order.

1. the token: a compact JWS parsed strictly (:mod:`.compact`) -- size, base64url, JSON
   objects without ``NaN``, duplicates or deep nesting;
2. the header: ``alg`` a string in the allow-list (RS256/ES256 -- never ``none``, never an
   HMAC algorithm, so a token "signed" with the issuer's public key as an HMAC secret is
   refused before any key is touched); ``typ`` absent or a string ``JWT``/``at+jwt``; no
   ``crit``, no ``b64``; a ``kid`` of 1-256 characters. URLs and keys in the header (``jku``,
   ``x5u``, ``x5c``, ``jwk``) are never read;
3. the key: the issuer's JWKS entry for ``kid`` (:mod:`.jwks`), whose own algorithm must be
   the header's;
4. the signature over the exact bytes received;
5. the claims (:mod:`.claims`, pure, with ``now`` passed in): issuer, single audience, times
   and lifetime, tenant, GUID client and object ids.

Every failure is a 401 whose message says what to do, and whose ``reason`` (for logs and
detection) says what failed (:mod:`.failures`); neither contains the token. A malformed
value anywhere is a 401, never an exception of another kind.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .claims import ClaimRules, VerifiedToken, check_claims
from .compact import MalformedToken, parse_compact
from .failures import token_failure
from .jwk import MAX_KID_LENGTH, SigningKey
from .settings import EntraSettings

__all__ = ["KeyLookup", "TokenValidator", "VerifiedToken", "check_header", "token_failure"]

_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_REFUSED_MEMBERS = ("crit", "b64")  # extensions Keyguard does not implement

KeyLookup = Callable[[str], Awaitable[SigningKey | None]]


def check_header(header: dict[str, Any], algorithms: frozenset[str]) -> tuple[str, str]:
    """``(alg, kid)`` of an acceptable header; a 401 otherwise."""
    alg, typ, kid = header.get("alg"), header.get("typ"), header.get("kid")
    if not isinstance(alg, str):
        raise token_failure("token_malformed")
    if alg not in algorithms:
        raise token_failure("token_algorithm")
    if any(name in header for name in _REFUSED_MEMBERS):
        raise token_failure("token_malformed")
    if "typ" in header:
        if not isinstance(typ, str):
            raise token_failure("token_malformed")
        if typ.lower() not in _TYPES:
            raise token_failure("token_type")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
        raise token_failure("token_malformed")
    return alg, kid


class TokenValidator:
    def __init__(self, settings: EntraSettings, keys: KeyLookup) -> None:
        self._keys = keys
        self._algorithms = frozenset(settings.algorithms)
        self._rules = ClaimRules.from_settings(settings)

    async def validate(self, token: str, now: float) -> VerifiedToken:
        try:
            compact = parse_compact(token)
        except MalformedToken:
            raise token_failure("token_malformed") from None
        alg, kid = check_header(compact.header, self._algorithms)
        key = await self._keys(kid)
        if key is None or key.algorithm != alg:
            raise token_failure("token_unknown_key")
        if not key.verify(compact.signing_input, compact.signature):
            raise token_failure("token_signature")
        return check_claims(compact.claims, now, self._rules)
