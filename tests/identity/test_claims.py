"""The claim checks, pure: exact forms, time bounds and lifetime at their edges."""

from __future__ import annotations

from typing import Any

import pytest

from keyguard.errors import AuthenticationFailed
from keyguard.identity.claims import MAX_LIST, MAX_TIME, ClaimRules, check_claims

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ISSUER = f"https://sts.windows.net/{TENANT}/"
APP = "11111111-1111-1111-1111-111111111111"
OID = "22222222-2222-2222-2222-222222222222"
NOW = 1_700_000_000
RULES = ClaimRules(
    audiences=frozenset({"api://kg"}),
    issuers=frozenset({ISSUER, f"https://sts.windows.net/{'0' * 8}-0000-0000-0000-{'0' * 12}/"}),
    tenants=frozenset({TENANT}),
    skew=30,
    max_lifetime=7200,
    agent_claim="xms_par_app_azp",
)


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "aud": "api://kg",
        "iss": ISSUER,
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 3600,
        "appid": APP,
        "oid": OID,
        "tid": TENANT,
        "ver": "1.0",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def reason(values: dict[str, Any], now: float = NOW) -> str:
    with pytest.raises(AuthenticationFailed) as info:
        check_claims(values, now, RULES)
    assert info.value.status == 401
    return info.value.reason


def test_a_good_token() -> None:
    verified = check_claims(claims(roles=["Chat"], groups=["AB" + OID[2:]]), NOW, RULES)
    assert (verified.tenant, verified.client_id, verified.object_id) == (TENANT, APP, OID)
    assert verified.kind == "app" and verified.expires == NOW + 3600.0
    assert verified.roles == ("Chat",) and verified.groups == ("ab" + OID[2:],)
    upper = check_claims(claims(appid=APP.upper(), tid=TENANT.upper(), oid=OID.upper()), NOW, RULES)
    assert (upper.client_id, upper.tenant, upper.object_id) == (APP, TENANT, OID)


@pytest.mark.parametrize(
    "value", [NOW + 0.5, float(NOW + 60), True, "1700003600", None, [NOW], {"t": NOW}, -1]
)
@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
def test_times_are_whole_seconds(name: str, value: Any) -> None:
    assert reason(claims(**{name: value})) == "token_claims"


def test_time_bounds_and_lifetime_at_their_edges() -> None:
    assert reason(claims(exp=MAX_TIME + 1)) == "token_claims"
    assert reason(claims(exp=...)) == "token_claims"
    check_claims(claims(exp=NOW - 29), NOW, RULES)  # within the skew
    assert reason(claims(exp=NOW - 30)) == "token_expired"
    check_claims(claims(nbf=NOW + 30, iat=NOW + 30), NOW, RULES)
    assert reason(claims(nbf=NOW + 31)) == "token_not_yet_valid"
    assert reason(claims(iat=NOW + 31)) == "token_not_yet_valid"
    check_claims(claims(iat=NOW, nbf=NOW, exp=NOW + 7200), NOW, RULES)
    assert reason(claims(iat=NOW, nbf=..., exp=NOW + 7201)) == "token_lifetime"
    assert reason(claims(iat=..., nbf=NOW, exp=NOW + 7201)) == "token_lifetime"
    check_claims(claims(iat=..., nbf=..., exp=NOW + 7230), NOW, RULES)  # from now, + skew
    assert reason(claims(iat=..., nbf=..., exp=NOW + 7231)) == "token_lifetime"
    assert reason(claims(iat=NOW - 7000, exp=NOW + 201)) == "token_lifetime"


def test_issuer_audience_and_tenant() -> None:
    assert reason(claims(iss=...)) == "token_claims"
    assert reason(claims(aud=...)) == "token_claims"
    assert reason(claims(iss=[ISSUER])) == "token_issuer"
    for aud in (["api://kg"], ["api://kg", "other"], 1, None):
        assert reason(claims(aud=aud)) == "token_audience"
    assert reason(claims(tid=...)) == "token_issuer"
    assert reason(claims(tid=[TENANT])) == "token_issuer"
    other = f"https://sts.windows.net/{'0' * 8}-0000-0000-0000-{'0' * 12}/"
    assert reason(claims(iss=other)) == "token_issuer"  # an accepted issuer, another tenant's


@pytest.mark.parametrize(
    "overrides",
    [
        {"appid": "bound-app"},
        {"appid": "BOUND-APP"},
        {"appid": ""},
        {"appid": None},
        {"appid": 1},
        {"appid": ..., "azp": "bound-app", "ver": "2.0"},
        {"appid": ...},
        {"azp": "33333333-3333-3333-3333-333333333333"},  # two different client ids
        {"oid": ...},
        {"oid": "root"},
        {"ver": 1.0},
        {"ver": "3.0"},
        {"xms_par_app_azp": "bound-app"},
        {"xms_par_app_azp": ""},
        {"idtyp": ["app"]},
        {"scp": None},
        {"roles": "Chat"},
        {"roles": [1]},
        {"roles": [""]},
        {"roles": ["x" * 257]},
        {"roles": ["r"] * (MAX_LIST + 1)},
        {"groups": {"g": 1}},
    ],
    ids=repr,
)
def test_identity_claims_have_exact_forms(overrides: dict[str, Any]) -> None:
    assert reason(claims(**overrides)) == "token_claims"


def test_identity_claims_at_their_edges() -> None:
    v2 = check_claims(claims(appid=..., azp=APP.upper(), ver="2.0"), NOW, RULES)
    assert v2.client_id == APP
    both = check_claims(claims(azp=APP.upper()), NOW, RULES)  # the same GUID twice
    assert both.client_id == APP
    no_ver = check_claims(claims(ver=...), NOW, RULES)
    assert no_ver.client_id == APP
    check_claims(claims(roles=["x" * 256] * MAX_LIST), NOW, RULES)
    agent = check_claims(claims(xms_par_app_azp=OID.upper()), NOW, RULES)
    assert agent.kind == "agent" and agent.parent_client_id == OID
    user = check_claims(claims(scp="user_impersonation", idtyp=...), NOW, RULES)
    assert user.kind == "user"
    assert check_claims(claims(scp="x", idtyp="app"), NOW, RULES).kind == "app"
