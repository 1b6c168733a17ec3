"""HTTPS with a generated CA, and the real azure-mgmt-cognitiveservices SDK rotating keys."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest
from azure.identity.aio import ManagedIdentityCredential
from azure.mgmt.cognitiveservices.aio import CognitiveServicesManagementClient

from keyguard.emulator import RunningEmulator
from keyguard.emulator.tls import ensure_certificates
from tests.support.emulators import CHAT_PATH

from .conftest import MESSAGES


def test_certificates_are_reused_while_valid(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path)
    pem = first.server_cert.read_bytes()
    second = ensure_certificates(tmp_path)
    assert second.server_cert.read_bytes() == pem
    assert first.server_key.stat().st_mode & 0o777 == 0o600
    third = ensure_certificates(tmp_path, ["emulator.test"])  # a new name forces a new cert
    assert third.server_cert.read_bytes() != pem


async def test_https_data_plane(tls_emulator: RunningEmulator) -> None:
    assert tls_emulator.url.startswith("https://") and tls_emulator.ca_file is not None
    context = ssl.create_default_context(cafile=str(tls_emulator.ca_file))
    async with aiohttp.ClientSession() as http:
        async with http.post(
            tls_emulator.url + CHAT_PATH,
            json={"messages": MESSAGES},
            headers={"api-key": tls_emulator.keys()[0]},
            ssl=context,
        ) as response:
            assert response.status == 200
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.get(tls_emulator.url + "/_emulator/health"):
                pass


async def test_azure_mgmt_sdk_rotates_keys(
    tls_emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in tls_emulator.identity_env().items():
        monkeypatch.setenv(name, value)
    ca = str(tls_emulator.ca_file)
    group, account = tls_emulator.config.resource_group, tls_emulator.config.account_name
    async with ManagedIdentityCredential(connection_verify=ca) as credential:
        client = CognitiveServicesManagementClient(
            credential,
            tls_emulator.config.subscription_id,
            base_url=tls_emulator.url,
            connection_verify=ca,
            credential_scopes=["https://management.azure.com/.default"],
        )
        async with client:
            keys = await client.accounts.list_keys(group, account)
            assert (keys.key1, keys.key2) == tls_emulator.keys()
            old_key2 = keys.key2
            rotated = await client.accounts.regenerate_key(group, account, "Key2")
            assert rotated.key1 == keys.key1 and rotated.key2 != old_key2
            assert tls_emulator.keys()[1] == rotated.key2
            found = await client.accounts.get(group, account)
            assert found.properties is not None
            assert found.properties.endpoint == tls_emulator.url + "/"
            names = [d.name async for d in client.deployments.list(group, account)]
            assert "gpt-4o" in names
