"""The emulator's Key Vault secrets endpoint (with the real ``azure-keyvault-secrets`` client and
its challenge authentication), and the gateway's ``key_vault`` provider picking up a new secret
version without a restart."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.identity.aio import ManagedIdentityCredential
from azure.keyvault.secrets.aio import SecretClient

from keyguard.emulator import issue_token
from keyguard.upstream.azure_credentials import KeyVaultProvider
from tests.support.emulators import AzureEmulator
from tests.support.gateway import azure_client, new_key, running_gateway
from tests.support.logs import LogCapture
from tests.support.settings import CHAT_DEPLOYMENTS, upstream
from tests.support.stored import stored_bytes

MESSAGES: Any = [{"role": "user", "content": "Hello, world!"}]


def _client(emulator: Any, credential: Any) -> SecretClient:
    return SecretClient(
        emulator.url,
        credential,
        verify_challenge_resource=False,
        connection_verify=emulator.ca_file,
    )


async def test_the_sdk_round_trip_with_challenge_auth_and_versions(
    azure_emulator: AzureEmulator,
) -> None:
    async with (
        ManagedIdentityCredential(connection_verify=azure_emulator.ca_file) as credential,
        _client(azure_emulator, credential) as kv,
    ):
        first = await kv.set_secret("aoai-east", "value-1", tags={"owner": "keyguard"})
        second = await kv.set_secret("aoai-east", "value-2")
        latest = await kv.get_secret("aoai-east")
        assert (latest.value, latest.properties.version) == ("value-2", second.properties.version)
        assert (await kv.get_secret("aoai-east", first.properties.version)).value == "value-1"
        versions = [p.version async for p in kv.list_properties_of_secret_versions("aoai-east")]
        assert versions == [first.properties.version, second.properties.version]
        assert [p.name async for p in kv.list_properties_of_secrets()] == ["aoai-east"]
        assert first.properties.tags == {"owner": "keyguard"}
        assert latest.properties.vault_url == azure_emulator.url
        with pytest.raises(ResourceNotFoundError, match="SecretNotFound"):
            await kv.get_secret("missing")


async def test_requests_without_a_vault_token_get_the_challenge(
    azure_emulator: AzureEmulator,
) -> None:
    context = ssl.create_default_context(cafile=azure_emulator.ca_file)
    url = azure_emulator.url + "/secrets/aoai-east?api-version=7.5"
    wrong = issue_token(azure_emulator.state, "https://cognitiveservices.azure.com")
    right = issue_token(azure_emulator.state, "https://vault.azure.net")
    async with aiohttp.ClientSession() as http:
        async with http.get(url, ssl=context) as response:
            assert response.status == 401
            challenge = response.headers["WWW-Authenticate"]
            tenant = azure_emulator.state.config.tenant_id
            assert challenge == (
                f'Bearer authorization="https://login.microsoftonline.com/{tenant}", '
                'resource="https://vault.azure.net"'
            )
        headers = {"Authorization": f"Bearer {wrong['access_token']}"}
        async with http.get(url, ssl=context, headers=headers) as response:
            assert response.status == 401
            assert (await response.json())["error"]["message"].startswith("AKV10022")
        headers = {"Authorization": f"Bearer {right['access_token']}"}
        async with http.get(url.split("?")[0], ssl=context, headers=headers) as response:
            assert response.status == 400
        async with http.get(url, ssl=context, headers=headers) as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "SecretNotFound"
        bad = azure_emulator.url + "/secrets/bad_name?api-version=7.5"
        async with http.put(bad, ssl=context, headers=headers, json={"value": "x"}) as response:
            assert response.status == 400


async def test_a_new_secret_version_is_served_without_a_restart(
    tmp_path: Path, azure_emulator: AzureEmulator, logs: LogCapture
) -> None:
    key1, key2 = azure_emulator.keys()
    async with (
        ManagedIdentityCredential(connection_verify=azure_emulator.ca_file) as credential,
        _client(azure_emulator, credential) as kv,
    ):
        await kv.set_secret("aoai-east", key1)
        source = {
            "key_vault": {
                "vault_url": azure_emulator.url,
                "secret_name": "aoai-east",
                "identity": {"ca_file": azure_emulator.ca_file},
                "verify_challenge_resource": False,
            }
        }
        async with running_gateway(
            tmp_path,
            upstreams=[
                upstream(azure_emulator.http_url, credential=source, deployments=CHAT_DEPLOYMENTS)
            ],
            rotation={"credential_refresh_s": 0.2},
        ) as gateway:
            provider = gateway.pool.upstreams[0].provider  # type: ignore[union-attr]
            assert isinstance(provider, KeyVaultProvider)
            switched = asyncio.Event()
            provider.on_change(switched.set)
            _, key = await new_key(gateway)
            async with azure_client(gateway, key) as api:
                await api.chat.completions.create(model="gpt-4o", messages=MESSAGES)
                second = await kv.set_secret("aoai-east", key2)
                await asyncio.wait_for(switched.wait(), 30)
                assert provider.version == second.properties.version
                azure_emulator.state.regenerate("key1")  # the old key dies at Azure
                await api.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    usage = azure_emulator.state.usage_view()["credentials"]
    assert (usage["key1"]["requests"], usage["key2"]["requests"]) == (1, 1)
    stored = stored_bytes(tmp_path)
    for secret in (key1, key2):
        assert secret.encode() not in stored
        assert all(secret not in line for line in logs.lines)
