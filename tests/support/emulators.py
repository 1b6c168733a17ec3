"""The Azure OpenAI emulator as the tests use it.

The plain emulator is ``keyguard.emulator.start_emulator``. The Azure SDKs need more: they send
bearer tokens over TLS only, and azure-identity finds its token endpoint in the environment.
:class:`AzureEmulator` is one emulator state served twice, over TLS for the SDKs (ARM, Key
Vault, managed identity) and over plain HTTP for the gateway's data plane.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from keyguard.emulator import EmulatorConfig
from keyguard.emulator.app import build_app
from keyguard.emulator.state import EmulatorState
from keyguard.emulator.tls import ensure_certificates, server_ssl_context

API_VERSION = "2024-10-21"
CHAT_PATH = f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"


@dataclass
class AzureEmulator:
    """One emulator state served over TLS at ``url`` (trust ``ca_file``) and over plain HTTP at
    ``http_url``. :meth:`identity_env` points azure-identity at ``url``."""

    url: str
    http_url: str
    ca_file: str
    state: EmulatorState
    app: web.Application

    def keys(self) -> tuple[str, str]:
        return self.state.keys()

    def identity_env(self) -> dict[str, str]:
        return {
            "IDENTITY_ENDPOINT": f"{self.url}/msi/token",
            "IDENTITY_HEADER": self.state.config.identity_header,
        }


@asynccontextmanager
async def azure_emulator_serving(
    config: EmulatorConfig, tls_dir: Path
) -> AsyncIterator[AzureEmulator]:
    """An :class:`AzureEmulator` on two free loopback ports, stopped on exit."""
    state = EmulatorState(config)
    app = build_app(state)
    tls = ensure_certificates(tls_dir, ["127.0.0.1"])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    secure = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(tls))
    plain = web.TCPSite(runner, "127.0.0.1", 0)
    try:
        await secure.start()
        await plain.start()
        ports = [address[1] for address in runner.addresses]  # in the order started
        yield AzureEmulator(
            f"https://127.0.0.1:{ports[0]}",
            f"http://127.0.0.1:{ports[1]}",
            str(tls.ca_cert),
            state,
            app,
        )
    finally:
        await runner.cleanup()


async def data_plane_status(base_url: str, key: str, body: Any = None) -> int:
    """The status of one chat call straight to an emulator (not through a gateway) with ``key``."""
    body = body or {"messages": [{"role": "user", "content": "hi"}]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(base_url + CHAT_PATH, json=body, headers={"api-key": key}) as response,
    ):
        await response.read()
        return response.status
