"""Managed identity end to end: the gateway authenticates to the upstream with Entra tokens from
azure-identity (the emulator's App Service identity endpoint, over TLS), with no key anywhere,
and keeps tokens fresh under load."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from keyguard.emulator import EmulatorConfig
from keyguard.errors import ConfigurationError
from keyguard.upstream.azure_credentials import ManagedIdentityProvider
from keyguard.upstream.settings import ManagedIdentityRef
from tests.support.emulators import AzureEmulator
from tests.support.gateway import azure_client, new_key, running_gateway, runtime
from tests.support.logs import LogCapture
from tests.support.settings import CHAT_DEPLOYMENTS, upstream
from tests.support.stored import stored_bytes

MESSAGES: Any = [{"role": "user", "content": "Hello, world!"}]

# Tokens that live four seconds: the gateway must refresh them while the tests run.
pytestmark = pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(token_lifetime=4)], ids=["4s-tokens"]
)


def _mi(emulator: AzureEmulator) -> dict[str, Any]:
    """The emulator as an upstream reached with a managed identity's Entra tokens."""
    return upstream(
        emulator.http_url,
        credential={"managed_identity": {"ca_file": emulator.ca_file}},
        deployments=CHAT_DEPLOYMENTS,
    )


def _provider(gateway: Any) -> ManagedIdentityProvider:
    provider = gateway.pool.upstreams[0].provider
    assert isinstance(provider, ManagedIdentityProvider)
    return provider


async def test_no_key_anywhere(
    tmp_path: Path, azure_emulator: AzureEmulator, logs: LogCapture
) -> None:
    async with running_gateway(tmp_path, upstreams=[_mi(azure_emulator)]) as gateway:
        _, key = await new_key(gateway)
        token = _provider(gateway).auth_headers()["Authorization"].removeprefix("Bearer ")
        async with azure_client(gateway, key) as api:
            answer = await api.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            assert answer.usage is not None
            stream = await api.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            chunks = [c async for c in stream]
            assert chunks
        secrets = await runtime(gateway).vault.list()
    usage = azure_emulator.state.usage_view()["credentials"]
    assert usage["entra"]["requests"] == 2 and set(usage) == {"entra"}
    assert all(s.name.startswith("keyguard/") for s in secrets)  # only Keyguard's own
    stored = stored_bytes(tmp_path)
    config = yaml.safe_dump(gateway.settings.model_dump(mode="json"))
    text = "\n".join(logs.lines) + config
    for secret in (*azure_emulator.keys(), token):
        assert secret.encode() not in stored
        assert secret not in text


@pytest.mark.slow
async def test_tokens_are_refreshed_ahead_of_expiry_under_load(
    tmp_path: Path, azure_emulator: AzureEmulator
) -> None:
    """Ten seconds of load against tokens that live four: the gateway takes a new token ahead
    of each expiry and no request fails."""
    failures: list[str] = []
    done = [0]
    async with running_gateway(tmp_path, upstreams=[_mi(azure_emulator)]) as gateway:
        _, key = await new_key(gateway)
        provider = _provider(gateway)
        first = provider.refreshes
        deadline = time.monotonic() + 10  # two and a half token lifetimes

        async def worker(stream: bool) -> None:
            async with azure_client(gateway, key) as api:
                for _ in range(2000):  # bounded; ends at the deadline
                    if time.monotonic() >= deadline:
                        return
                    try:
                        if stream:
                            chunks = await api.chat.completions.create(
                                model="gpt-4o", messages=MESSAGES, stream=True
                            )
                            assert [c async for c in chunks]
                        else:
                            await api.chat.completions.create(model="gpt-4o", messages=MESSAGES)
                        done[0] += 1
                    except Exception as exc:
                        failures.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(worker(stream=i % 2 == 0) for i in range(4)))
        refreshed = provider.refreshes - first
    assert failures == []
    assert refreshed >= 3  # a new token roughly every half lifetime
    entra = azure_emulator.state.usage_view()["credentials"]["entra"]
    assert entra["requests"] == done[0] > 0 and entra["failed"] == 0


@pytest.mark.parametrize("kind", ["managed_identity", "default"])
async def test_the_identity_kinds_get_tokens_the_upstream_accepts(
    azure_emulator: AzureEmulator, kind: str
) -> None:
    ref = ManagedIdentityRef(type=kind, ca_file=azure_emulator.ca_file)
    provider = ManagedIdentityProvider.from_ref(ref)
    await provider.start()
    try:
        headers = provider.auth_headers()
        assert headers["Authorization"].startswith("Bearer ey")
        assert provider.expires_on is not None and provider.expires_on > time.time()
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{azure_emulator.http_url}/openai/deployments/gpt-4o/chat/completions"
                "?api-version=2024-10-21",
                json={"messages": MESSAGES},
                headers=headers,
            ) as response,
        ):
            assert response.status == 200
    finally:
        await provider.close()
    assert repr(provider) == f"ManagedIdentityProvider({kind}, scope={ref.scope})"


async def test_no_token_stops_the_start(
    azure_emulator: AzureEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "wrong")
    provider = ManagedIdentityProvider.from_ref(ManagedIdentityRef(ca_file=azure_emulator.ca_file))
    with pytest.raises(ConfigurationError, match="cannot get an Entra token"):
        await provider.start()
    await provider.close()
