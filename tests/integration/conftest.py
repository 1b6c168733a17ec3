"""Real sockets end to end: the Azure emulator, the gateway in front of it, official SDK clients.

``gateway`` is a gateway on embedded defaults (SQLite store, local vault with a fresh 0600
master key file) whose one upstream is the ``emulator`` fixture; ``gateway_options`` are its
``proxy`` settings. Every secret the harness creates is recorded in ``gateway.secrets`` so the
canary tests can look for it in logs, rows and error bodies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from keyguard.emulator import RunningEmulator
from tests.support.gateway import running_gateway

from .harness import GatewayHarness


@pytest.fixture
def gateway_options() -> dict[str, Any]:
    return {}


@pytest.fixture
async def gateway(
    tmp_path: Path, emulator: RunningEmulator, gateway_options: dict[str, Any]
) -> AsyncIterator[GatewayHarness]:
    async with running_gateway(tmp_path, emulator, proxy=gateway_options) as gw:
        yield GatewayHarness(gw, emulator, secrets=list(emulator.keys()))


@pytest.fixture
async def app_key(gateway: GatewayHarness) -> str:
    return (await gateway.new_key())[1]
