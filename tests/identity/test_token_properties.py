"""Property: over generated JWT headers and claims -- every type, sizes, nesting, numbers out
of range, duplicate members -- signed for real with the emulator issuer's key and sent through
the gateway with the official SDK, the gateway never answers 5xx, never 200 for a token the
reference validator below refuses, and answers exactly what that validator expects.

The reference validator (:func:`expected_status`) is written from the rules in
docs/identity.md, not from the gateway's code: it parses JSON with the standard library
(the gateway uses orjson), and spells each rule out plainly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keyguard.emulator import RunningEmulator
from keyguard.server import Gateway
from tests.support.emulators import API_VERSION

from .forge import (
    AUDIENCE,
    BOUND_CLIENT,
    POLICY,
    UNBOUND_CLIENT,
    ServedSigner,
    entra_access,
    install_signer,
    start_access_gateway,
)

SKEW = 60
LIFETIME = 90_000
MAX_TIME = 253402300799
GUID_CHARS = set("0123456789abcdef")
ABSENT: Any = object()
STRANGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)

# ---------------------------------------------------------------- the reference validator


def _is_guid(value: Any) -> bool:
    if not isinstance(value, str) or len(value) != 36:
        return False
    groups = value.lower().split("-")
    return [len(g) for g in groups] == [8, 4, 4, 4, 12] and set("".join(groups)) <= GUID_CHARS


def _strict_object(text: str) -> dict[str, Any] | None:
    """A JSON object, or ``None``: no NaN/Infinity, numbers within a double, no duplicate
    member, no lone surrogate, at most 16 levels deep."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in items}) != len(items):
            raise ValueError("duplicate")
        return dict(items)

    def refuse(_: str) -> Any:
        raise ValueError("constant")

    def floating(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError("overflow")
        return value

    def integer(text: str) -> int:
        value = int(text)
        float(value)  # OverflowError beyond a double
        return value

    try:
        value = json.loads(
            text,
            object_pairs_hook=pairs,
            parse_constant=refuse,
            parse_float=floating,
            parse_int=integer,
        )
    except (ValueError, OverflowError, RecursionError):
        return None

    def sound(v: Any, level: int) -> bool:
        if level > 16:
            return False
        if isinstance(v, str):
            return not any(0xD800 <= ord(c) <= 0xDFFF for c in v)
        if isinstance(v, list):
            return all(sound(i, level + 1) for i in v)
        if isinstance(v, dict):
            return all(sound(k, level) and sound(i, level + 1) for k, i in v.items())
        return True

    return value if isinstance(value, dict) and sound(value, 1) else None


def _whole(claims: dict[str, Any], name: str) -> bool:
    value = claims.get(name, ABSENT)
    return value is ABSENT or (type(value) is int and 0 <= value <= MAX_TIME)


def _strings(value: Any) -> bool:
    return value is ABSENT or (
        isinstance(value, list)
        and len(value) <= 200
        and all(isinstance(v, str) and 1 <= len(v) <= 256 for v in value)
    )


def expected_status(
    header_text: str, claims_text: str, good_signature: bool, now: float, issuer: ServedSigner
) -> int:
    """What the gateway must answer: 401 for a token these rules refuse; for an accepted
    one, 200 when it is bound-app's and 403 otherwise."""
    tenant = issuer.tenant
    issuers = (
        f"https://sts.windows.net/{tenant}/",
        f"https://login.microsoftonline.com/{tenant}/v2.0",
    )
    header = _strict_object(header_text)
    claims = _strict_object(claims_text)
    if header is None or claims is None or not good_signature:
        return 401
    typ = header.get("typ", ABSENT)
    if (
        header.get("alg") != "RS256"  # the only algorithm the key is for
        or header.get("kid") != issuer.kid
        or "crit" in header
        or "b64" in header
        or (typ is not ABSENT and not isinstance(typ, str))
        or (isinstance(typ, str) and typ.lower() not in ("jwt", "at+jwt", "application/at+jwt"))
    ):
        return 401
    if claims.get("iss") not in issuers or claims.get("aud") != AUDIENCE:
        return 401
    if not all(_whole(claims, name) for name in ("exp", "nbf", "iat")) or "exp" not in claims:
        return 401
    exp, nbf, iat = claims["exp"], claims.get("nbf"), claims.get("iat")
    if now >= exp + SKEW or exp - now > LIFETIME + SKEW:
        return 401
    for start in (nbf, iat):
        if start is not None and (start > now + SKEW or exp - start > LIFETIME):
            return 401
    tid = claims.get("tid")
    if not isinstance(tid, str) or tid.lower() != tenant:
        return 401
    if claims.get("ver", "1.0") not in ("1.0", "2.0"):
        return 401
    appid, azp = claims.get("appid", ABSENT), claims.get("azp", ABSENT)
    ids = [v for v in (appid, azp) if v is not ABSENT]
    if not ids or not all(_is_guid(v) for v in ids) or len({v.lower() for v in ids}) > 1:
        return 401
    if not _is_guid(claims.get("oid")):
        return 401
    parent = claims.get("xms_par_app_azp", ABSENT)
    if parent is not ABSENT and not _is_guid(parent):
        return 401
    idtyp, scp = claims.get("idtyp", ABSENT), claims.get("scp", ABSENT)
    if any(v is not ABSENT and not isinstance(v, str) for v in (idtyp, scp)):
        return 401
    if not _strings(claims.get("roles", ABSENT)) or not _strings(claims.get("groups", ABSENT)):
        return 401
    user = idtyp == "user" or (scp is not ABSENT and idtyp != "app")
    # Only app:bound-app has a binding: users, agents and other apps get 403.
    bound = not user and parent is ABSENT and ids[0].lower() == BOUND_CLIENT
    return 200 if bound else 403


# ---------------------------------------------------------------- generated tokens

NOW = int(time.time())

EDGE_NUMBERS = st.sampled_from(
    [0, -1, 2**31, 2**53 + 1, 2**63, 2**64, -(2**63) - 1, 10**400, MAX_TIME, MAX_TIME + 1]
)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | EDGE_NUMBERS
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["\ud800", "", "x" * 2000, "RS256", "none", "JWT", BOUND_CLIENT])
)
JSON = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)
DEEP = st.integers(min_value=12, max_value=20).map(lambda n: json.loads("[" * n + "]" * n))
ANY = JSON | DEEP


def usually(good: Any, *others: Any) -> st.SearchStrategy[Any]:
    """Mostly the good value, else one of the plausible others (or absent)."""
    return st.sampled_from([good] * 10 * max(1, len(others)) + [*others, ABSENT])


@st.composite
def times(draw: st.DrawFn) -> dict[str, Any]:
    """A coherent exp/nbf/iat: issued around now, valid for a lifetime around the limits."""
    issued = NOW + draw(st.sampled_from([-300] * 6 + [-86_000, -95_000, 30, 600]))
    lifetime = draw(st.sampled_from([3900] * 6 + [86_700, LIFETIME, LIFETIME + 1, 200, -600]))
    return {
        "exp": issued + lifetime,
        "nbf": draw(st.sampled_from([issued, issued, ABSENT])),
        "iat": draw(st.sampled_from([issued, issued, ABSENT])),
    }


@dataclass
class Case:
    header: dict[str, Any]
    claims: dict[str, Any]
    duplicate: tuple[str, str, Any] | None  # (part, member, value) written a second time
    signature: str  # good, stranger, truncated, empty


HEADERS = st.fixed_dictionaries(
    {
        "alg": usually("RS256", "ES256", "HS256", "none", "rs256"),
        "kid": usually("<kid>", "other-kid"),
        "typ": usually("JWT", "at+jwt", "jwt", "id+jwt"),
    }
)
CLAIMS = st.builds(
    lambda fixed, when: {**fixed, **when},
    st.fixed_dictionaries(
        {
            "aud": usually(AUDIENCE, [AUDIENCE], "https://cognitiveservices.azure.com"),
            "iss": usually("<v1>", "<v2>", "https://sts.windows.net/evil/"),
            "tid": usually("<tid>", "<TID>", UNBOUND_CLIENT),
            "appid": usually(BOUND_CLIENT, BOUND_CLIENT.upper(), UNBOUND_CLIENT, "bound-app"),
            "azp": st.sampled_from([ABSENT, ABSENT, BOUND_CLIENT, UNBOUND_CLIENT]),
            "oid": usually("6f2d9c5e-0000-4000-8000-0000000000aa", "root"),
            "ver": usually("1.0", "2.0"),
            "idtyp": usually("app", "user"),
            "scp": st.sampled_from([ABSENT, ABSENT, ABSENT, "user_impersonation"]),
            "roles": usually(["Chat"], ["r"] * 201, ["x" * 257], []),
            "groups": usually(ABSENT, [UNBOUND_CLIENT]),
            "xms_par_app_azp": st.sampled_from([ABSENT] * 6 + [UNBOUND_CLIENT, "bound-app"]),
        }
    ),
    times(),
)
HEADER_NAMES = ["alg", "kid", "typ", "crit", "b64", "jku", "x5u", "x5c", "jwk", "cty"]
MUTATIONS: st.SearchStrategy[list[tuple[str, Any]]] = st.just([]) | st.lists(
    st.tuples(st.sampled_from(["header", "claims"]), ANY | st.just(ABSENT)), max_size=3
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A plausible token, then up to three members (known or not) set to anything at all
    or removed, and sometimes a member written twice or a bad signature."""
    header, claims = draw(HEADERS), draw(CLAIMS)
    for part, value in draw(MUTATIONS):
        target = header if part == "header" else claims
        names = HEADER_NAMES if part == "header" else [*claims, "extra", "nested"]
        target[draw(st.sampled_from(names))] = value
    duplicate = draw(
        st.none()
        | st.none()
        | st.none()
        | st.tuples(st.sampled_from(["header", "claims"]), st.sampled_from(["alg", "aud"]), ANY)
    )
    signature = draw(st.sampled_from(["good"] * 8 + ["stranger", "truncated", "empty"]))
    return Case(header, claims, duplicate, signature)


CASES = cases()


def _text(values: dict[str, Any], duplicate: tuple[str, Any] | None) -> str:
    present = {k: v for k, v in values.items() if v is not ABSENT}
    text = json.dumps(present)  # NaN, Infinity and 400-digit numbers written as they are
    if duplicate is not None:
        extra = f"{json.dumps(duplicate[0])}: {json.dumps(duplicate[1])}"
        text = text[:-1] + (", " if present else "") + extra + "}"
    return text


def _resolve(value: Any, signer: ServedSigner) -> Any:
    names = {
        "<kid>": signer.kid,
        "<v1>": f"https://sts.windows.net/{signer.tenant}/",
        "<v2>": f"https://login.microsoftonline.com/{signer.tenant}/v2.0",
        "<tid>": signer.tenant,
        "<TID>": signer.tenant.upper(),
    }
    return names.get(value, value) if isinstance(value, str) else value


def token_of(case: Case, signer: ServedSigner) -> tuple[str, str, str]:
    header = {k: _resolve(v, signer) for k, v in case.header.items()}
    claims = {k: _resolve(v, signer) for k, v in case.claims.items()}
    dup = case.duplicate
    header_text = _text(header, dup[1:] if dup and dup[0] == "header" else None)
    claims_text = _text(claims, dup[1:] if dup and dup[0] == "claims" else None)
    token = signer.forge(
        header_text, claims_text, STRANGER if case.signature == "stranger" else None
    )
    if case.signature == "truncated":
        token = token[:-8]
    elif case.signature == "empty":
        token = token[: token.rindex(".") + 1]
    return token, header_text, claims_text


# ---------------------------------------------------------------- the gateway under test


@dataclass
class Target:
    gateway: Gateway
    signer: ServedSigner
    client: openai.AsyncAzureOpenAI
    token: list[str]


@pytest.fixture
async def target(
    tmp_path: Path, upstream: RunningEmulator, idp: RunningEmulator
) -> AsyncIterator[Target]:
    signer = install_signer(idp)
    gateway = await start_access_gateway(
        tmp_path,
        upstream.url,
        upstream.keys()[0],
        {
            "entra": entra_access(
                idp,
                algorithms=["RS256", "ES256"],
                clock_skew_s=SKEW,
                max_token_lifetime_s=LIFETIME,
            )
        },
        policy=POLICY,
        monitor={"detect": {"enabled": False}},  # hundreds of 401s from one address, on purpose
    )
    holder = [""]
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=gateway.proxy_url,
        azure_ad_token_provider=lambda: holder[0],
        api_version=API_VERSION,
        max_retries=0,
    )
    try:
        yield Target(gateway, signer, client, holder)
    finally:
        await client.close()
        await gateway.stop()


async def status_of(target: Target, token: str) -> int:
    target.token[0] = token
    try:
        await target.client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=CASES)
async def test_generated_tokens_against_the_reference_validator(target: Target, case: Case) -> None:
    token, header_text, claims_text = token_of(case, target.signer)
    good = case.signature == "good" and len(token) <= 8192
    before = expected_status(header_text, claims_text, good, time.time(), target.signer)
    status = await status_of(target, token)
    after = expected_status(header_text, claims_text, good, time.time(), target.signer)
    event(f"status {status}, expected {before}")  # --hypothesis-show-statistics
    assert status < 500, (status, header_text, claims_text)
    if 200 not in (before, after):
        assert status != 200, (header_text, claims_text)
    if before == after and len(token) < 8000:  # not on a time boundary, nor the line limit
        assert status == before, (status, before, header_text, claims_text)
