"""End to end, no key anywhere: an app with a managed identity calls Azure OpenAI through
Keyguard. azure-identity's ``ManagedIdentityCredential`` gets a token from the identity
endpoint (the emulator over HTTPS, as App Service's), the official ``openai`` SDK sends it as a
bearer token, and the gateway validates it against the issuer's JWKS (fetched over HTTPS),
maps it to ``app:billing`` through the policy and forwards with its own upstream credential.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from azure.identity.aio import ManagedIdentityCredential, get_bearer_token_provider

from keyguard.emulator import RunningEmulator
from keyguard.server import Gateway
from tests.support.gateway import azure_client, running_gateway

SCOPE = "api://keyguard-gateway/.default"
DATA_SCOPE = "https://cognitiveservices.azure.com/.default"
OTHER_CLIENT = "99999999-8888-7777-6666-555555555555"
MESSAGES: Any = [{"role": "user", "content": "Say hello"}]


def policy(billing_client_id: str) -> str:
    return f"""
apps:
  billing: {{entra_client_ids: ["{billing_client_id}"]}}
roles:
  chat-small:
    operations: [chat]
    deployments: [gpt-4o-mini, gpt-4o]
    max_output_tokens: 256
bindings:
  - {{name: billing-chat, role: chat-small, subjects: ["app:billing"]}}
"""


def entra(idp: RunningEmulator, *audiences: str) -> dict[str, Any]:
    """Entra settings trusting the emulator over HTTPS as the identity provider."""
    tenant = idp.config.tenant_id
    return {
        "tenants": [tenant],
        "audiences": list(audiences),
        "jwks_uri": f"{idp.url}/{tenant}/discovery/v2.0/keys",
        "ca_file": str(idp.ca_file),
    }


@pytest.fixture
async def gateway(
    tmp_path: Path,
    emulator: RunningEmulator,
    tls_emulator: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Gateway]:
    """A gateway trusting the identity provider's tokens for its own audience."""
    for name, value in tls_emulator.identity_env().items():
        monkeypatch.setenv(name, value)
    async with running_gateway(
        tmp_path,
        emulator,
        access={"entra": entra(tls_emulator, "api://keyguard-gateway")},
        policy=policy(tls_emulator.config.client_id),
    ) as gw:
        yield gw


def access_log(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "keyguard.access"]


async def test_managed_identity_app_calls_through_keyguard_with_no_key(
    gateway: Gateway,
    tls_emulator: RunningEmulator,
    emulator: RunningEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="keyguard.access")
    async with ManagedIdentityCredential(connection_verify=str(tls_emulator.ca_file)) as credential:
        client = azure_client(
            gateway, azure_ad_token_provider=get_bearer_token_provider(credential, SCOPE)
        )
        async with client:
            answer = await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=20
            )
            assert answer.choices[0].message.content
            chunks = [
                c
                async for c in await client.chat.completions.create(
                    model="gpt-4o", messages=MESSAGES, max_tokens=20, stream=True
                )
            ]
            assert chunks
            with pytest.raises(openai.PermissionDeniedError) as denied:
                await client.chat.completions.create(
                    model="gpt-4o", messages=MESSAGES, max_tokens=1000
                )
            assert denied.value.code == "MaxTokensAboveRoleLimit"
            with pytest.raises(openai.PermissionDeniedError) as denied:
                await client.embeddings.create(model="text-embedding-3-small", input="x")
            assert denied.value.code == "OperationNotAllowed"
    # The upstream saw Keyguard's own key, never the app's token.
    assert emulator.state.usage_view()["credentials"].get("entra", {}).get("requests", 0) == 0
    entries = access_log(caplog)
    assert [e["status"] for e in entries] == [200, 200, 403, 403]
    assert {e["app"] for e in entries} == {"billing"}
    assert entries[2]["reason"] == "max_tokens_above_role_limit"
    assert all(e["key_id"] is None for e in entries)


async def test_an_identity_without_a_binding_is_denied(
    gateway: Gateway, tls_emulator: RunningEmulator
) -> None:
    async with ManagedIdentityCredential(
        client_id=OTHER_CLIENT, connection_verify=str(tls_emulator.ca_file)
    ) as credential:
        client = azure_client(
            gateway, azure_ad_token_provider=get_bearer_token_provider(credential, SCOPE)
        )
        async with client:
            with pytest.raises(openai.PermissionDeniedError) as denied:
                await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, max_tokens=5
                )
    assert denied.value.code == "NoRoleAssigned"
    assert f"app:{OTHER_CLIENT}" in denied.value.message


async def test_a_token_for_azure_openai_itself_is_refused_by_default(
    gateway: Gateway, tls_emulator: RunningEmulator
) -> None:
    async with ManagedIdentityCredential(connection_verify=str(tls_emulator.ca_file)) as credential:
        client = azure_client(
            gateway, azure_ad_token_provider=get_bearer_token_provider(credential, DATA_SCOPE)
        )
        async with client:
            with pytest.raises(openai.AuthenticationError) as refused:
                await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, max_tokens=5
                )
    assert "audience" in refused.value.message


async def test_unmodified_apps_with_the_cognitiveservices_audience(
    tmp_path: Path,
    emulator: RunningEmulator,
    tls_emulator: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The opt-in trade-off: accept tokens minted for Azure OpenAI itself, so apps using
    DefaultAzureCredential and the standard scope work through Keyguard unchanged."""
    for name, value in tls_emulator.identity_env().items():
        monkeypatch.setenv(name, value)
    audiences = ("api://keyguard-gateway", "https://cognitiveservices.azure.com")
    async with running_gateway(
        tmp_path,
        emulator,
        access={"entra": entra(tls_emulator, *audiences)},
        policy=policy(tls_emulator.config.client_id),
    ) as gw:
        async with ManagedIdentityCredential(
            connection_verify=str(tls_emulator.ca_file)
        ) as credential:
            client = azure_client(
                gw, azure_ad_token_provider=get_bearer_token_provider(credential, DATA_SCOPE)
            )
            async with client:
                answer = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, max_tokens=5
                )
                assert answer.usage is not None
