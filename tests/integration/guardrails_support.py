"""What the guardrails' end-to-end tests share: a policy with one app per way of acting, a
gateway in front of the emulator with it, and the searches for a planted value."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from keyguard.azure_keys import generate_identifiable_key
from keyguard.cli.support import cli_actor
from keyguard.emulator import RunningEmulator
from keyguard.wiring.access import open_admin_service
from tests.support.gateway import running_gateway
from tests.support.stored import audit_texts, stored_bytes

from .harness import GatewayHarness

POLICY = """
version: 1
roles:
  strict:
    operations: ["*"]
    deployments: ["*"]
  redactor:
    operations: ["*"]
    deployments: ["*"]
    guardrails: {secret: redact, personal: redact, restore: true}
  masker:
    operations: ["*"]
    deployments: ["*"]
    guardrails: {secret: redact, personal: redact}
  watcher:
    operations: ["*"]
    deployments: ["*"]
    guardrails: {secret: alert, personal: log}
bindings:
  - {name: strict, role: strict, subjects: ["app:strict-app"]}
  - {name: redactor, role: redactor, subjects: ["app:redact-app"]}
  - {name: masker, role: masker, subjects: ["app:mask-app"]}
  - {name: watcher, role: watcher, subjects: ["app:watch-app"]}
  - {name: both-redact, role: redactor, subjects: ["app:both-app"]}
  - {name: both-strict, role: strict, subjects: ["app:both-app"]}
"""


def canary() -> str:
    """A fresh Azure OpenAI key (identifiable format, checksum valid): the planted secret."""
    return generate_identifiable_key()


@asynccontextmanager
async def guarded_gateway(
    tmp: Path, emulator: RunningEmulator, **options: Any
) -> AsyncIterator[GatewayHarness]:
    options.setdefault("policy", POLICY)
    async with running_gateway(tmp, emulator, **options) as gw:
        yield GatewayHarness(gw, emulator, secrets=list(emulator.keys()))


def received(emulator: RunningEmulator) -> str:
    """Everything the emulator's data plane received, as text."""
    return repr(list(emulator.state.received))


def pieces(secret: str, size: int = 20) -> list[str]:
    """Overlapping pieces of ``secret``: none may show up where the secret must not."""
    return [secret[i : i + size] for i in range(0, max(1, len(secret) - size + 1), size // 2)]


def nowhere(secret: str, texts: Iterable[str]) -> bool:
    joined = "\n".join(texts)
    return not any(piece in joined for piece in pieces(secret))


def audit_rows(tmp: Path) -> list[str]:
    return audit_texts(tmp / "keyguard.db")


def database_bytes(tmp: Path) -> bytes:
    return stored_bytes(tmp)


async def admin_get(gateway: GatewayHarness, path: str) -> Any:
    """GET ``path`` on the admin port with a fresh viewer token."""
    service = await open_admin_service(gateway.runtime)
    _, token = await service.create_admin_token(cli_actor(), name="guard-test", role="viewer")
    async with aiohttp.ClientSession() as http:
        async with http.get(
            gateway.gateway.admin_url + path, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


async def metrics_text(gateway: GatewayHarness) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.gateway.admin_url + "/metrics") as resp:
            return await resp.text()
