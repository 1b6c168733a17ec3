"""The integration tests' view of a running gateway: its emulator and the secrets it has seen."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai

from keyguard.emulator import RunningEmulator
from keyguard.server import Gateway
from keyguard.wiring.runtime import Runtime
from tests.support.gateway import azure_client, new_key, running_gateway, runtime, v1_client


@dataclass
class GatewayHarness:
    """A running gateway, its upstream emulator and every secret seen so far."""

    gateway: Gateway
    emulator: RunningEmulator
    secrets: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.gateway.proxy_url

    @property
    def runtime(self) -> Runtime:
        return runtime(self.gateway)

    async def new_key(
        self,
        app: str = "test-app",
        expires_in: timedelta | None = None,
        now: datetime | None = None,
    ) -> tuple[str, str]:
        key_id, key = await new_key(self.gateway, app, expires_in=expires_in, now=now)
        self.secrets.append(key)
        return key_id, key

    async def revoke(self, key_id: str) -> None:
        await self.runtime.keys.revoke(key_id, now=datetime.now(UTC))

    def azure(self, key: str, **kwargs: Any) -> openai.AsyncAzureOpenAI:
        return azure_client(self.gateway, key, **kwargs)

    def v1(self, key: str, **kwargs: Any) -> openai.AsyncOpenAI:
        return v1_client(self.gateway, key, **kwargs)


@asynccontextmanager
async def harnessed(
    tmp: Path, emulator: RunningEmulator, **options: Any
) -> AsyncIterator[GatewayHarness]:
    """:func:`running_gateway` in front of ``emulator``, seen as a :class:`GatewayHarness`
    (``options``: the settings builder's sections, e.g. ``monitor={...}``)."""
    async with running_gateway(tmp, emulator, **options) as gw:
        yield GatewayHarness(gw, emulator, secrets=list(emulator.keys()))
