"""The claims of a signature-checked Entra token, judged with ``now`` passed in: pure.

Every claim Keyguard reads must have exactly its documented form; anything else is a 401
(JSON ``null`` counts as present, with the wrong form). In order:

1. ``iss`` one of the accepted issuers, ``aud`` one of the audiences -- a single string: an
   array is refused even when it holds the right value (Entra never issues one, and a token
   for several audiences can be replayed here by any of them);
2. ``exp`` (required), ``nbf``, ``iat``: whole seconds, 0 to 253402300799 (9999-12-31) --
   never a float, a boolean, a string, ``NaN``/``Infinity`` or a 400-digit number; valid now
   with ``skew`` of tolerance; and a lifetime of at most ``max_lifetime``, counted from ``iat``
   and from ``nbf`` when present, and from ``now`` (plus the skew) always;
3. ``tid`` a configured tenant (a GUID, any case) and the issuer's tenant;
4. the client application: ``azp`` (v2) or ``appid`` (v1), a GUID -- never a name, so a
   client id can never equal a policy app's name -- and the two the same when both are sent;
   ``oid`` a GUID; the agent claim, when present, a GUID; ``ver`` absent, ``1.0`` or ``2.0``;
5. ``idtyp`` and ``scp`` strings when present; ``roles`` and ``groups`` lists of at most 200
   strings of 1-256 characters.

The result is a :class:`VerifiedToken`: the few claims Keyguard uses, GUIDs in lower case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .failures import token_failure
from .settings import EntraSettings

__all__ = ["ClaimRules", "MAX_LIST", "MAX_TIME", "VerifiedToken", "check_claims"]

GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TENANT_IN_ISSUER = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z
MAX_LIST = 200  # groups / roles per token (Entra sends at most 200 groups, then an overage)
_MAX_ITEM = 256
_ABSENT: Any = object()


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    tenant: str
    client_id: str  # appid (v1) / azp (v2): the calling application, a GUID
    object_id: str  # oid: the service principal, managed identity, agent or user
    kind: str  # "app" (app-only), "agent" or "user" (delegated)
    expires: float  # exp, seconds since the epoch
    parent_client_id: str | None = None  # agents: the parent (blueprint) app
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClaimRules:
    audiences: frozenset[str]
    issuers: frozenset[str]
    tenants: frozenset[str]
    skew: float
    max_lifetime: float
    agent_claim: str

    @classmethod
    def from_settings(cls, settings: EntraSettings) -> ClaimRules:
        return cls(
            audiences=frozenset(settings.audiences),
            issuers=settings.accepted_issuers(),
            tenants=frozenset(settings.tenants),
            skew=settings.clock_skew_s,
            max_lifetime=settings.max_token_lifetime_s,
            agent_claim=settings.agent_claim,
        )


def _time(claims: dict[str, Any], name: str) -> int | None:
    value = claims.get(name, _ABSENT)
    if value is _ABSENT:
        return None
    if type(value) is not int or not 0 <= value <= MAX_TIME:
        raise token_failure("token_claims")
    return value


def _guid(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name, _ABSENT)
    if value is _ABSENT:
        return None
    if not isinstance(value, str) or not GUID.fullmatch(value):
        raise token_failure("token_claims")
    return value.lower()


def _optional_string(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name, _ABSENT)
    if value is _ABSENT:
        return None
    if not isinstance(value, str):
        raise token_failure("token_claims")
    return value


def _strings(claims: dict[str, Any], name: str) -> tuple[str, ...]:
    value = claims.get(name, _ABSENT)
    if value is _ABSENT:
        return ()
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise token_failure("token_claims")
    if not all(isinstance(v, str) and 0 < len(v) <= _MAX_ITEM for v in value):
        raise token_failure("token_claims")
    return tuple(value)


def _check_times(claims: dict[str, Any], now: float, rules: ClaimRules) -> int:
    exp, nbf, iat = _time(claims, "exp"), _time(claims, "nbf"), _time(claims, "iat")
    if exp is None:
        raise token_failure("token_claims")
    skew = rules.skew
    if now >= exp + skew:
        raise token_failure("token_expired")
    if (nbf is not None and now + skew < nbf) or (iat is not None and now + skew < iat):
        raise token_failure("token_not_yet_valid")
    if exp - now > rules.max_lifetime + skew or any(
        start is not None and exp - start > rules.max_lifetime for start in (iat, nbf)
    ):
        raise token_failure("token_lifetime")
    return exp


def _client(claims: dict[str, Any]) -> str:
    ver = claims.get("ver", _ABSENT)
    if ver is not _ABSENT and ver not in ("1.0", "2.0"):
        raise token_failure("token_claims")
    appid, azp = _guid(claims, "appid"), _guid(claims, "azp")
    if appid is not None and azp is not None and appid != azp:
        raise token_failure("token_claims")
    client = (azp or appid) if ver == "2.0" else (appid or azp)
    if client is None:
        raise token_failure("token_claims")
    return client


def check_claims(claims: dict[str, Any], now: float, rules: ClaimRules) -> VerifiedToken:
    """The verified token of these (signature-checked) claims; a 401 when they do not hold."""
    if "iss" not in claims or "aud" not in claims:
        raise token_failure("token_claims")
    issuer = claims["iss"]
    if not isinstance(issuer, str) or issuer not in rules.issuers:
        raise token_failure("token_issuer")
    audience = claims["aud"]
    if not isinstance(audience, str) or audience not in rules.audiences:
        raise token_failure("token_audience")
    exp = _check_times(claims, now, rules)
    tenant = claims.get("tid")
    if not isinstance(tenant, str) or tenant.lower() not in rules.tenants:
        raise token_failure("token_issuer")
    tenant = tenant.lower()
    found = _TENANT_IN_ISSUER.search(issuer.lower())
    if found is not None and found.group(0) != tenant:
        raise token_failure("token_issuer")
    client = _client(claims)
    oid = _guid(claims, "oid")
    if oid is None:
        raise token_failure("token_claims")
    parent = _guid(claims, rules.agent_claim)
    idtyp = _optional_string(claims, "idtyp")
    scp = _optional_string(claims, "scp")
    roles = _strings(claims, "roles")
    groups = _strings(claims, "groups")
    if idtyp == "user" or (scp is not None and idtyp != "app"):
        kind = "user"
    elif parent is not None:
        kind = "agent"
    else:
        kind = "app"
    return VerifiedToken(
        tenant=tenant,
        client_id=client,
        object_id=oid,
        kind=kind,
        expires=float(exp),
        parent_client_id=parent if kind == "agent" else None,
        roles=roles,
        groups=tuple(g.lower() for g in groups),
    )
