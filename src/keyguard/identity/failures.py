"""Why an Entra token is refused: the 401 reasons, each with the message the caller reads.

The ``reason`` goes to the access log, the audit record and the detectors (a 401 is an
authentication failure whatever its reason); the message says what to do. Neither ever
contains the token. ``docs/identity.md`` lists the same reasons.
"""

from __future__ import annotations

from ..errors import AuthenticationFailed

__all__ = ["REASONS", "token_failure"]

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
    "token_lifetime": "Access denied: the token's lifetime (exp - iat) is longer than this "
    "gateway accepts. Use an access token issued by Entra ID.",
    "token_audience": "Access denied: the token is for another audience (it must name this "
    "gateway as its single 'aud'). Request a token for this gateway's scope (see the "
    "gateway's documentation).",
    "token_issuer": "Access denied: the token's issuer or tenant is not accepted by this gateway.",
    "token_claims": "Access denied: the token lacks the claims this gateway needs, or one has "
    "the wrong form (tid, oid and appid/azp are GUIDs; exp, nbf and iat whole seconds).",
}
REASONS = frozenset(_MESSAGES)


def token_failure(reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(_MESSAGES[reason], reason=reason)
