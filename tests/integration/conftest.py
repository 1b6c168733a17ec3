"""Real sockets end to end: the Azure emulator, the gateway in front of it, official SDK clients.

``emulator`` is a running emulator; ``gateway`` a gateway on embedded defaults (SQLite store,
local vault with a fresh 0600 master key file) whose one upstream is that emulator. Every
secret a fixture creates is recorded in ``secrets_seen`` so the canary tests can look for it in
logs, rows and error bodies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai
import pytest

from keyguard.config import Settings, settings_from_mapping
from keyguard.emulator.config import EmulatorConfig
from keyguard.emulator.server import RunningEmulator, start_emulator
from keyguard.server import Gateway
from keyguard.vault.master import create_master_key_file

API_VERSION = "2024-10-21"
DEPLOYMENTS = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "dall-e-3", "whisper", "tts"]


@dataclass
class GatewayHarness:
    gateway: Gateway
    url: str
    emulator: RunningEmulator
    secrets: list[str] = field(default_factory=list)

    @property
    def runtime(self) -> Any:
        assert self.gateway.runtime is not None
        return self.gateway.runtime

    async def new_key(
        self,
        app: str = "test-app",
        expires_in: timedelta | None = None,
        now: datetime | None = None,
    ) -> tuple[str, str]:
        record, key = await self.runtime.keys.create(
            app, now=now or datetime.now(UTC), expires_in=expires_in
        )
        self.secrets.append(key)
        return record.key_id, key

    async def revoke(self, key_id: str) -> None:
        await self.runtime.keys.revoke(key_id, now=datetime.now(UTC))

    def azure(self, key: str, **kwargs: Any) -> openai.AsyncAzureOpenAI:
        return openai.AsyncAzureOpenAI(
            azure_endpoint=self.url,
            api_key=key,
            api_version=API_VERSION,
            max_retries=0,
            **kwargs,
        )

    def v1(self, key: str, **kwargs: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=f"{self.url}/openai/v1/", api_key=key, max_retries=0, **kwargs
        )


def gateway_settings(
    tmp: Path, upstream_url: str, *, deployments: list[str] | None = None, **proxy: Any
) -> Settings:
    return settings_from_mapping(
        {
            "listen": {"proxy": "127.0.0.1:0", "admin": "127.0.0.1:0"},
            "store": f"sqlite:///{tmp / 'keyguard.db'}",
            "master_key_file": str(tmp / "master.key"),
            "proxy": proxy,
            "upstreams": [
                {
                    "name": "emulator",
                    "endpoint": upstream_url,
                    "credential": {"vault": "upstream/emulator"},
                    "deployments": deployments or DEPLOYMENTS,
                }
            ],
        }
    )


async def start_gateway(tmp: Path, upstream_url: str, upstream_key: str, **proxy: Any) -> Gateway:
    """A started gateway whose vault holds ``upstream_key`` as ``upstream/emulator``."""
    from keyguard.wiring.runtime import open_runtime

    if not (tmp / "master.key").exists():
        create_master_key_file(tmp / "master.key")
    settings = gateway_settings(tmp, upstream_url, **proxy)
    rt = await open_runtime(settings, {})
    try:
        await rt.vault.put("upstream/emulator", upstream_key)
    finally:
        await rt.close()
    gateway = Gateway(settings, {})
    await gateway.start()
    return gateway


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig()


@pytest.fixture
async def emulator(emulator_config: EmulatorConfig) -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(emulator_config)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
def gateway_options() -> dict[str, Any]:
    return {}


@pytest.fixture
async def gateway(
    tmp_path: Path, emulator: RunningEmulator, gateway_options: dict[str, Any]
) -> AsyncIterator[GatewayHarness]:
    key1, key2 = emulator.keys()
    gw = await start_gateway(tmp_path, emulator.url, key1, **gateway_options)
    harness = GatewayHarness(gw, gw.proxy_url, emulator, secrets=[key1, key2])
    try:
        yield harness
    finally:
        await gw.stop()


@pytest.fixture
async def app_key(gateway: GatewayHarness) -> str:
    return (await gateway.new_key())[1]
