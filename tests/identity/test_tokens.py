"""Token validation against a real issuer: the good token, and every way a token is refused."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from keyguard.errors import AuthenticationFailed
from keyguard.identity.tokens import TokenValidator, VerifiedToken
from tests.support.clock import FakeClock
from tests.support.issuer import OTHER_TENANT, LocalIssuer


async def refused(validator: TokenValidator, token: str, now: float | None = None) -> str:
    with pytest.raises(AuthenticationFailed) as info:
        await validator.validate(token, time.time() if now is None else now)
    assert info.value.status == 401 and info.value.code == "401"
    assert token not in info.value.message
    return info.value.reason


async def test_a_good_rs256_token(validator: TokenValidator, issuer: LocalIssuer) -> None:
    token = issuer.mint(roles=["Chat"], groups=["AAAAAAAA-0000-0000-0000-000000000000"])
    verified = await validator.validate(token, time.time())
    assert isinstance(verified, VerifiedToken)
    assert verified.tenant == issuer.tenant and verified.kind == "app"
    assert verified.client_id == "11111111-1111-1111-1111-111111111111"
    assert verified.roles == ("Chat",)
    assert verified.groups == ("aaaaaaaa-0000-0000-0000-000000000000",)


async def test_a_good_es256_v2_token(validator: TokenValidator, issuer: LocalIssuer) -> None:
    token = issuer.mint(
        alg="ES256",
        iss=f"https://login.microsoftonline.com/{issuer.tenant}/v2.0",
        ver="2.0",
        appid=None,
        azp="33333333-3333-3333-3333-333333333333",
    )
    verified = await validator.validate(token, time.time())
    assert verified.client_id == "33333333-3333-3333-3333-333333333333"


async def test_kinds(validator: TokenValidator, issuer: LocalIssuer) -> None:
    agent = await validator.validate(
        issuer.mint(xms_par_app_azp="AAAAAAAA-AAAA-AAAA-AAAA-AAAAAAAAAAAA"), time.time()
    )
    assert (
        agent.kind == "agent" and agent.parent_client_id == "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
    )
    user = await validator.validate(issuer.mint(idtyp=None, scp="user_impersonation"), time.time())
    assert user.kind == "user"


async def test_skew_tolerance(validator: TokenValidator, issuer: LocalIssuer) -> None:
    now = time.time()
    token = issuer.mint(exp=int(now) - 10, nbf=int(now) + 10, iat=int(now) + 10)
    await validator.validate(token, now)  # 30 s of skew either way


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda i: i.unsigned(), "token_algorithm"),
        (lambda i: i.hs256_with_public_key(), "token_algorithm"),
        (lambda i: i.mint(alg="RS384"), "token_algorithm"),
        (lambda i: i.mint(alg="PS256"), "token_algorithm"),
        (lambda i: i.signed_by_stranger(), "token_signature"),
        (lambda i: i.mint(exp=int(time.time()) - 3600), "token_expired"),
        (lambda i: i.mint(nbf=int(time.time()) + 3600), "token_not_yet_valid"),
        (lambda i: i.mint(iat=int(time.time()) + 3600), "token_not_yet_valid"),
        (lambda i: i.mint(iss="https://sts.windows.net/evil/"), "token_issuer"),
        (
            lambda i: i.mint(iss=f"https://sts.windows.net/{OTHER_TENANT}/", tid=OTHER_TENANT),
            "token_issuer",
        ),
        (lambda i: i.mint(tid=OTHER_TENANT), "token_issuer"),
        (lambda i: i.mint(aud="https://cognitiveservices.azure.com"), "token_audience"),
        (lambda i: i.mint(aud=None), "token_claims"),
        (lambda i: i.mint(exp=None), "token_claims"),
        (lambda i: i.mint(exp="tomorrow"), "token_claims"),
        (lambda i: i.mint(oid=None), "token_claims"),
        (lambda i: i.mint(appid=None), "token_claims"),
        (lambda i: i.mint(kid="rotated-away"), "token_unknown_key"),
        (lambda i: i.mint(kid="hmac-1"), "token_unknown_key"),
        (lambda i: i.mint(kid="ec-1"), "token_unknown_key"),  # an RS256 header, an EC key
        (lambda i: i.mint(headers={"typ": "id+jwt"}), "token_type"),
        (lambda i: i.raw({"crit": ["exp"]}), "token_malformed"),
        (lambda i: ".".join(i.mint().split(".")[:2]), "token_malformed"),  # truncated
        (lambda i: i.mint().rsplit(".", 1)[0] + ".", "token_signature"),
        (lambda i: "eyJhbGciOiJSUzI1NiJ9.eyJ9.c2ln", "token_malformed"),
        (lambda i: "eyJ" + "A" * 40 + ".e30.", "token_malformed"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
async def test_refused(
    validator: TokenValidator, issuer: LocalIssuer, make: Any, reason: str
) -> None:
    assert await refused(validator, make(issuer)) == reason


async def test_missing_kid(validator: TokenValidator, issuer: LocalIssuer) -> None:
    token = jwt.encode(issuer.claims(), issuer.rsa_key, algorithm="RS256")
    assert await refused(validator, token) == "token_malformed"


async def test_key_rollover_is_picked_up_within_the_rate_limit(
    validator: TokenValidator, issuer: LocalIssuer, clock: FakeClock
) -> None:
    issuer.extra["new-key"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = issuer.mint(kid="new-key")
    assert issuer.fetches == 1
    assert await refused(validator, token) == "token_unknown_key"  # fetched 0 s ago: no fetch
    assert issuer.fetches == 1
    clock.now += 60  # the minimum interval has passed: an unknown kid triggers one fetch
    verified = await validator.validate(token, time.time())
    assert verified.tenant == issuer.tenant and issuer.fetches == 2
