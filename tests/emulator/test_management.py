"""The ARM surface: listKeys, regenerateKey (the old key dies at once), account, errors."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from keyguard.emulator import EmulatorConfig, RunningEmulator, issue_token
from tests.support.clock import FakeClock
from tests.support.emulators import CHAT_PATH

from .conftest import MESSAGES

ARM_VERSION = "2023-05-01"


def _account_url(emulator: RunningEmulator, account: str | None = None) -> str:
    c = emulator.config
    return (
        f"{emulator.url}/subscriptions/{c.subscription_id}/resourceGroups/{c.resource_group}"
        f"/providers/Microsoft.CognitiveServices/accounts/{account or c.account_name}"
    )


async def _management_token(emulator: RunningEmulator, http: aiohttp.ClientSession) -> str:
    async with http.get(
        emulator.url + "/msi/token",
        params={"api-version": "2019-08-01", "resource": "https://management.azure.com"},
        headers={"X-IDENTITY-HEADER": emulator.config.identity_header},
    ) as response:
        body = await response.json()
    token = body["access_token"]
    assert isinstance(token, str)
    return token


async def _arm(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None,
    body: Any = None,
    api_version: str | None = ARM_VERSION,
) -> tuple[int, Any, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    params = {"api-version": api_version} if api_version else {}
    async with http.request(method, url, params=params, json=body, headers=headers) as response:
        return response.status, await response.json(), response.headers


async def _chat_status(http: aiohttp.ClientSession, emulator: RunningEmulator, key: str) -> int:
    async with http.post(
        emulator.url + CHAT_PATH, json={"messages": MESSAGES}, headers={"api-key": key}
    ) as response:
        await response.read()
        return response.status


async def test_regenerate_key_kills_the_old_key_at_once(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    token = await _management_token(emulator, http)
    status, keys, _ = await _arm(http, "POST", _account_url(emulator) + "/listKeys", token)
    assert status == 200
    assert (keys["key1"], keys["key2"]) == emulator.keys()
    old1, old2 = emulator.keys()
    assert await _chat_status(http, emulator, old1) == 200

    status, fresh, _ = await _arm(
        http, "POST", _account_url(emulator) + "/regenerateKey", token, {"keyName": "Key1"}
    )
    assert status == 200
    assert fresh["key1"] != old1 and fresh["key2"] == old2
    assert len(fresh["key1"]) == 84 and fresh["key1"][52:58] == "JQQJ99"
    assert await _chat_status(http, emulator, old1) == 401
    assert await _chat_status(http, emulator, fresh["key1"]) == 200
    assert await _chat_status(http, emulator, old2) == 200

    _, again, _ = await _arm(
        http, "POST", _account_url(emulator) + "/regenerateKey", token, {"keyName": "Key2"}
    )
    assert await _chat_status(http, emulator, old2) == 401
    assert emulator.keys() == (again["key1"], again["key2"])


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(key_format="legacy")])
async def test_legacy_key_format(emulator: RunningEmulator) -> None:
    for key in emulator.keys():
        assert len(key) == 32 and int(key, 16) >= 0


async def test_account_resource_and_local_auth_switch(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    token = await _management_token(emulator, http)
    status, account, headers = await _arm(http, "GET", _account_url(emulator), token)
    assert status == 200 and headers["x-ms-request-id"]
    assert account["properties"]["endpoint"] == emulator.url + "/"
    assert account["kind"] == "OpenAI" and account["location"] == "eastus"
    assert account["properties"]["disableLocalAuth"] is False
    status, account, _ = await _arm(
        http, "PATCH", _account_url(emulator), token, {"properties": {"disableLocalAuth": True}}
    )
    assert account["properties"]["disableLocalAuth"] is True
    assert await _chat_status(http, emulator, emulator.keys()[0]) == 403
    await _arm(
        http, "PATCH", _account_url(emulator), token, {"properties": {"disableLocalAuth": False}}
    )
    assert await _chat_status(http, emulator, emulator.keys()[0]) == 200
    status, deployments, _ = await _arm(http, "GET", _account_url(emulator) + "/deployments", token)
    names = {d["name"]: d["properties"]["model"] for d in deployments["value"]}
    assert names["gpt-4o"] == {"format": "OpenAI", "name": "gpt-4o", "version": "2024-11-20"}


async def test_arm_errors(emulator: RunningEmulator, http: aiohttp.ClientSession) -> None:
    url = _account_url(emulator) + "/listKeys"
    status, body, headers = await _arm(http, "POST", url, None)
    assert status == 401 and body["error"]["code"] == "AuthenticationFailed"
    assert headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    data_token = issue_token(emulator.state, "https://cognitiveservices.azure.com")["access_token"]
    status, body, _ = await _arm(http, "POST", url, data_token)
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationTokenAudience"
    status, body, _ = await _arm(http, "POST", url, "not-a-jwt")
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
    token = await _management_token(emulator, http)
    status, body, _ = await _arm(http, "POST", url, token, api_version=None)
    assert status == 400 and body["error"]["code"] == "MissingApiVersionParameter"
    status, body, _ = await _arm(http, "POST", _account_url(emulator, "other") + "/listKeys", token)
    assert status == 404 and body["error"]["code"] == "ResourceNotFound"
    status, body, _ = await _arm(
        http, "POST", _account_url(emulator) + "/regenerateKey", token, {"keyName": "Key3"}
    )
    assert status == 400


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(token_lifetime=300)])
async def test_expired_management_token(
    clocked: RunningEmulator, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    token = issue_token(clocked.state, "https://management.azure.com")["access_token"]
    clock.advance(300)
    status, body, _ = await _arm(http, "POST", _account_url(clocked) + "/listKeys", token)
    assert status == 401 and body["error"]["code"] == "ExpiredAuthenticationToken"
