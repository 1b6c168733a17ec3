"""User sign-in: the authorization-code flow with PKCE, hostile uses first."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pytest

from keyguard.emulator import EmulatorConfig, RunningEmulator
from keyguard.emulator.config import EmulatorUser, config_from_mapping
from keyguard.errors import ConfigurationError

CLIENT = "00000000-0000-4000-8000-00000000c0c0"
GROUP = "00000000-0000-4000-8000-0000000000a1"
REDIRECT = "http://127.0.0.1:1/sign-in/entra/callback"
VERIFIER = "v" * 50


def challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(users={"ada": EmulatorUser(groups=(GROUP,), roles=("Console.Read",))})


async def authorize(
    http: aiohttp.ClientSession, emulator: RunningEmulator, **overrides: str
) -> tuple[int, dict[str, Any]]:
    params = {
        "client_id": CLIENT,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid api://keyguard-admin/.default",
        "state": "s1",
        "nonce": "n1",
        "code_challenge": challenge(VERIFIER),
        "code_challenge_method": "S256",
        "login_hint": "ada",
        **overrides,
    }
    tenant = emulator.config.tenant_id
    url = f"{emulator.url}/{tenant}/oauth2/v2.0/authorize"
    async with http.get(url, params=params, allow_redirects=False) as response:
        if response.status != 302:
            return response.status, await response.json()
        location = urlsplit(response.headers["Location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
        return 302, {k: v[0] for k, v in parse_qs(location.query).items()}


async def redeem(
    http: aiohttp.ClientSession, emulator: RunningEmulator, code: str, **overrides: str
) -> tuple[int, dict[str, Any]]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
        **overrides,
    }
    url = f"{emulator.url}/{emulator.config.tenant_id}/oauth2/v2.0/token"
    async with http.post(url, data=form) as response:
        return response.status, await response.json()


@pytest.mark.parametrize(
    "overrides",
    [
        {"login_hint": "mallory"},
        {"login_hint": ""},
        {"response_type": "token"},
        {"code_challenge_method": "plain"},
        {"code_challenge": ""},
        {"nonce": ""},
        {"state": ""},
        {"redirect_uri": "javascript:alert(1)"},
    ],
)
async def test_bad_authorize_requests_are_400_without_a_redirect(
    emulator: RunningEmulator, http: aiohttp.ClientSession, overrides: dict[str, str]
) -> None:
    status, body = await authorize(http, emulator, **overrides)
    assert status == 400 and body["error"] and body["error_description"]


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_verifier": "w" * 50}, "invalid_grant"),
        ({"code_verifier": ""}, "invalid_grant"),
        ({"client_id": "00000000-0000-4000-8000-00000000dddd"}, "invalid_client"),
        ({"redirect_uri": "http://127.0.0.1:1/elsewhere"}, "invalid_grant"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
    ],
)
async def test_a_bad_redemption_is_refused_and_burns_the_code(
    emulator: RunningEmulator,
    http: aiohttp.ClientSession,
    overrides: dict[str, str],
    error: str,
) -> None:
    _, answer = await authorize(http, emulator)
    status, body = await redeem(http, emulator, answer["code"], **overrides)
    assert (status, body["error"]) == (400, error)
    if error != "unsupported_grant_type":
        status, body = await redeem(http, emulator, answer["code"])
        assert (status, body["error"]) == (400, "invalid_grant")


async def test_codes_are_single_use_and_expire(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    _, answer = await authorize(http, emulator)
    assert (await redeem(http, emulator, answer["code"]))[0] == 200
    status, body = await redeem(http, emulator, answer["code"])
    assert (status, body["error"]) == (400, "invalid_grant")
    _, answer = await authorize(http, emulator)
    clock = emulator.state.clock
    emulator.state.clock = lambda: clock() + 61
    try:
        status, body = await redeem(http, emulator, answer["code"])
    finally:
        emulator.state.clock = clock
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_the_tokens_carry_the_nonce_client_and_the_users_groups(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    status, answer = await authorize(http, emulator)
    assert status == 302 and answer["state"] == "s1"
    status, body = await redeem(http, emulator, answer["code"])
    assert status == 200
    tenant = emulator.config.tenant_id
    async with http.get(f"{emulator.url}/{tenant}/v2.0/.well-known/openid-configuration") as r:
        metadata = await r.json()
    assert metadata["authorization_endpoint"].endswith("/oauth2/v2.0/authorize")
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    async with http.get(metadata["jwks_uri"]) as r:
        key = jwt.PyJWK((await r.json())["keys"][0]).key
    issuer = metadata["issuer"]
    id_token = jwt.decode(body["id_token"], key, ["RS256"], audience=CLIENT, issuer=issuer)
    assert id_token["nonce"] == "n1" and id_token["tid"] == tenant
    access = jwt.decode(
        body["access_token"], key, ["RS256"], audience="api://keyguard-admin", issuer=issuer
    )
    assert access["groups"] == [GROUP] and access["roles"] == ["Console.Read"]
    assert access["oid"] == id_token["oid"] and access["idtyp"] == "user"


async def test_without_a_hint_the_default_user_signs_in(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    emulator.state.config = replace(emulator.config, default_user="ada")
    status, answer = await authorize(http, emulator, login_hint="")
    assert status == 302 and answer["code"]
    with pytest.raises(ConfigurationError):
        replace(emulator.config, default_user="mallory")


def test_users_in_a_config_file_are_checked() -> None:
    config = config_from_mapping({"users": {"ada": {"groups": [GROUP]}}})
    assert config.users["ada"].groups == (GROUP,)
    bad: object
    for bad in ({"ada": ["x"]}, {"ada": {"groups": "x"}}, {"ada": {"team": []}}, ["ada"]):
        with pytest.raises(ConfigurationError):
            config_from_mapping({"users": bad})
