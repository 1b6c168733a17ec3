"""Managed-identity endpoints with azure-identity, and the emulator's Entra-like tokens."""

from __future__ import annotations

from typing import Any

import aiohttp
import jwt
import openai
import pytest
from azure.identity.aio import ManagedIdentityCredential, get_bearer_token_provider

from keyguard.emulator import EmulatorConfig, RunningEmulator, issue_token
from tests.support.clock import FakeClock
from tests.support.emulators import API_VERSION, CHAT_PATH

from .conftest import MESSAGES

DATA_SCOPE = "https://cognitiveservices.azure.com/.default"


async def _token(
    http: aiohttp.ClientSession, emulator: RunningEmulator, resource: str, **params: str
) -> tuple[int, Any]:
    async with http.get(
        emulator.url + "/msi/token",
        params={"api-version": "2019-08-01", "resource": resource, **params},
        headers={"X-IDENTITY-HEADER": emulator.config.identity_header},
    ) as response:
        return response.status, await response.json()


async def test_azure_identity_app_service_credential_drives_the_data_plane(
    emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in emulator.identity_env().items():
        monkeypatch.setenv(name, value)
    async with ManagedIdentityCredential() as credential:
        provider = get_bearer_token_provider(credential, DATA_SCOPE)
        client = openai.AsyncAzureOpenAI(
            azure_endpoint=emulator.url,
            azure_ad_token_provider=provider,
            api_version=API_VERSION,
            max_retries=0,
        )
        async with client:
            answer = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            assert answer.usage is not None
            token = await credential.get_token(DATA_SCOPE)
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert claims["aud"] == "https://cognitiveservices.azure.com"
    assert claims["tid"] == emulator.config.tenant_id
    assert claims["appid"] == emulator.config.client_id
    assert token.expires_on == claims["exp"]
    assert emulator.state.usage_view()["credentials"]["entra"]["requests"] == 1


async def test_azure_identity_imds_credential(
    emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", emulator.url)
    async with ManagedIdentityCredential(client_id="11111111-2222-3333-4444-555555555555") as cred:
        token = await cred.get_token(DATA_SCOPE)
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert claims["appid"] == "11111111-2222-3333-4444-555555555555"
    assert claims["oid"] != claims["appid"]


async def test_token_answers_have_azure_shapes(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    status, body = await _token(http, emulator, "https://management.azure.com")
    assert status == 200
    assert set(body) == {
        "access_token",
        "expires_in",
        "expires_on",
        "not_before",
        "resource",
        "token_type",
        "client_id",
    }
    assert body["token_type"] == "Bearer"
    assert all(isinstance(body[k], str) for k in ("expires_in", "expires_on", "not_before"))
    assert int(body["expires_on"]) - int(body["not_before"]) == 3600
    async with http.get(
        emulator.url + "/metadata/identity/oauth2/token",
        params={"api-version": "2018-02-01", "resource": "https://vault.azure.net"},
        headers={"Metadata": "true"},
    ) as response:
        imds = await response.json()
    assert imds["resource"] == "https://vault.azure.net" and imds["expires_in"] == "3600"


async def test_token_endpoints_refuse_bad_requests(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(
        emulator.url + "/metadata/identity/oauth2/token",
        params={"api-version": "2018-02-01", "resource": "x"},
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_request"
    async with http.get(
        emulator.url + "/msi/token",
        params={"api-version": "2019-08-01", "resource": "x"},
        headers={"X-IDENTITY-HEADER": "wrong"},
    ) as response:
        assert response.status == 401


async def test_tokens_verify_against_the_published_jwks(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    _, body = await _token(http, emulator, "https://cognitiveservices.azure.com")
    tenant = emulator.config.tenant_id
    async with http.get(f"{emulator.url}/{tenant}/.well-known/openid-configuration") as response:
        metadata = await response.json()
    async with http.get(metadata["jwks_uri"]) as response:
        jwks = await response.json()
    key = jwt.PyJWK(jwks["keys"][0])
    claims = jwt.decode(
        body["access_token"],
        key.key,
        algorithms=["RS256"],
        audience="https://cognitiveservices.azure.com",
        issuer=metadata["issuer"],
    )
    assert claims["oid"] and claims["idtyp"] == "app"


async def test_management_token_is_refused_by_the_data_plane(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    _, body = await _token(http, emulator, "https://management.azure.com")
    async with http.post(
        emulator.url + CHAT_PATH,
        json={"messages": MESSAGES},
        headers={"Authorization": f"Bearer {body['access_token']}"},
    ) as response:
        assert response.status == 401


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(token_lifetime=60)])
async def test_expired_token_is_refused(
    clocked: RunningEmulator, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    token = issue_token(clocked.state, "https://cognitiveservices.azure.com")["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    clock.advance(59)
    async with http.post(
        clocked.url + CHAT_PATH, json={"messages": MESSAGES}, headers=headers
    ) as response:
        assert response.status == 200
    clock.advance(1)
    async with http.post(
        clocked.url + CHAT_PATH, json={"messages": MESSAGES}, headers=headers
    ) as response:
        assert response.status == 401
        assert "have expired" in (await response.json())["error"]["message"]
