"""Credential references in the config, the local-vault and environment providers, and the
token refresh schedule (pure)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from keyguard.config import settings_from_mapping
from keyguard.errors import ConfigurationError, StorageError
from keyguard.upstream.azure_credentials import (
    KeyVaultProvider,
    ManagedIdentityProvider,
    refresh_delay,
    retry_delay,
)
from keyguard.upstream.credentials import (
    EnvKeyProvider,
    VaultKeyProvider,
    VersionedProvider,
    provider_for,
)
from keyguard.upstream.settings import CredentialRef
from keyguard.wiring.runtime import open_runtime
from tests.support.settings import keyguard_settings

KV = {"vault_url": "https://kv-east.vault.azure.net", "secret_name": "aoai-east"}


def _upstream(credential: Any, **extra: Any) -> dict[str, Any]:
    return {
        "upstreams": [
            {
                "name": "east",
                "endpoint": "https://east.openai.azure.com",
                "credential": credential,
                "deployments": ["gpt-4o"],
                **extra,
            }
        ]
    }


@pytest.mark.parametrize(
    ("credential", "kind"),
    [
        ({"managed_identity": {}}, "managed_identity"),
        ({"managed_identity": {"type": "workload_identity", "client_id": "abc-123"}}, None),
        ({"key_vault": KV}, "key_vault"),
        ({"vault": "upstream/east"}, "local_vault"),
        ({"local_vault": "upstream/east"}, "local_vault"),
        ({"env": "AOAI_KEY", "insecure": True}, "env"),
    ],
)
def test_credential_kinds(credential: dict[str, Any], kind: str | None) -> None:
    ref = settings_from_mapping(_upstream(credential)).upstreams[0].credential
    assert ref.kind == (kind or "managed_identity")


@pytest.mark.parametrize(
    ("credential", "message"),
    [
        ({}, "exactly one of"),
        ({"managed_identity": {}, "vault": "upstream/east"}, "exactly one of"),
        ({"key_vault": {**KV, "vault_url": "http://kv.vault.azure.net"}}, "https://"),
        ({"key_vault": {**KV, "secret_name": "no_underscores"}}, "secret_name"),
        ({"managed_identity": {"type": "password"}}, "type"),
        ({"env": "AOAI_KEY"}, "insecure: true"),
        ({"key_vault": {**KV, "secret": "x"}}, "plaintext secrets"),
    ],
)
def test_bad_credentials_fail_at_startup(credential: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        settings_from_mapping(_upstream(credential))


def test_management_and_rotation_settings() -> None:
    settings = settings_from_mapping(
        {
            **_upstream(
                {"managed_identity": {}},
                management={
                    "subscription_id": "00000000-0000-0000-0000-000000000001",
                    "resource_group": "rg-ai",
                    "account_name": "east",
                    "key_max_age": "30d",
                },
            ),
            "rotation": {"drain": "15s", "credential_refresh_s": 2},
        }
    )
    management = settings.upstreams[0].management
    assert management is not None and management.key_max_age is not None
    assert management.key_max_age.days == 30
    assert management.arm_endpoint == "https://management.azure.com"
    assert settings.rotation.drain.total_seconds() == 15
    assert settings_from_mapping({}).rotation.credential_refresh_s == 5.0
    with pytest.raises(ConfigurationError, match="arm_endpoint"):
        settings_from_mapping(
            _upstream(
                {"vault": "x"},
                management={
                    "subscription_id": "s",
                    "resource_group": "g",
                    "account_name": "a",
                    "arm_endpoint": "http://localhost",
                },
            )
        )


def test_provider_for_picks_the_kind(tmp_path: Path) -> None:
    env = {"AOAI_KEY": "k"}
    vault: Any = object()
    mi = provider_for(
        CredentialRef.model_validate({"managed_identity": {}}), vault=vault, environ=env
    )
    kv = provider_for(CredentialRef.model_validate({"key_vault": KV}), vault=vault, environ=env)
    local = provider_for(CredentialRef(vault="upstream/east"), vault=vault, environ=env)
    raw = provider_for(CredentialRef(env="AOAI_KEY", insecure=True), vault=vault, environ=env)
    assert isinstance(mi, ManagedIdentityProvider) and not isinstance(mi, VersionedProvider)
    assert isinstance(kv, KeyVaultProvider) and isinstance(kv, VersionedProvider)
    assert isinstance(local, VaultKeyProvider) and isinstance(local, VersionedProvider)
    assert isinstance(raw, EnvKeyProvider) and raw.auth_headers() == {"api-key": "k"}
    assert "k" not in repr(raw)
    asyncio.run(kv.close())


def test_token_refresh_schedule() -> None:
    # a day-long token: at its refresh_on (half-life), else 5 minutes before expiry
    assert refresh_delay(0, 86_400, 43_200) == 43_200
    assert refresh_delay(0, 86_400) == 86_100
    assert refresh_delay(0, 3600) == 3300
    # short tokens: at half their remaining life, never in the past
    assert refresh_delay(100, 110) == 5
    assert refresh_delay(100, 90) == 0
    # failures back off 1, 2, 4 ... 30 s, but retry at least 4 times before expiry
    assert [retry_delay(n, 0, None) for n in (1, 2, 3, 6, 9)] == [1, 2, 4, 30, 30]
    assert retry_delay(6, 0, 20) == 5
    assert retry_delay(1, 0, 0.01) == 0.05


async def test_vault_provider_follows_new_versions_and_keeps_the_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rt = await open_runtime(keyguard_settings(tmp_path), {})
    provider = VaultKeyProvider(rt.vault, "upstream/east", refresh_s=3600)
    changes: list[str | None] = []
    provider.on_change(lambda: changes.append(provider.version))
    try:
        with pytest.raises(Exception, match="no secret named"):
            await provider.start()
        await rt.vault.put("upstream/east", "key-one")
        await provider.start()
        assert provider.auth_headers() == {"api-key": "key-one"} and provider.version == "1"
        first_switch = provider.switched_at
        await provider.refresh()
        assert changes == ["1"] and provider.switched_at == first_switch  # unchanged
        await rt.vault.put("upstream/east", "key-two")
        await provider.refresh()
        assert provider.auth_headers() == {"api-key": "key-two"} and changes == ["1", "2"]
        assert "key-two" not in repr(provider)
    finally:
        await provider.close()
        await rt.close()
    # the store is down: a background re-read fails, the last good key stays

    class DownVault:
        async def get_with_info(self, name: str) -> Any:
            raise StorageError("store: get secret failed (OSError)")

    failing = VaultKeyProvider(DownVault(), "upstream/east", refresh_s=0.01)  # type: ignore[arg-type]
    failing._headers = {"api-key": "key-two"}  # as if started before the outage
    with caplog.at_level(logging.WARNING, logger="keyguard.upstream"):
        await failing._refresh()  # one background step
    assert failing.auth_headers() == {"api-key": "key-two"}
    assert "could not refresh upstream key vault:upstream/east" in caplog.records[0].getMessage()


async def test_env_provider_warns_at_startup(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigurationError, match="AOAI_KEY"):
        EnvKeyProvider({}, "AOAI_KEY")
    provider = EnvKeyProvider({"AOAI_KEY": "secret-value"}, "AOAI_KEY")
    with caplog.at_level(logging.WARNING):
        await provider.start()
    assert "insecure: true" in caplog.text and "secret-value" not in caplog.text
