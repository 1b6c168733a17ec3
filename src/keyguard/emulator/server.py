"""Starting and stopping the emulator: the library API and the CLI entry function.

::

    emulator = await start_emulator(EmulatorConfig())        # a free port on 127.0.0.1
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=emulator.url, api_key=emulator.keys()[0], api_version="2024-10-21"
    )
    ...
    await emulator.stop()

``async with await start_emulator(...) as emulator:`` stops it on exit as well.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from keyguard.emulator.app import build_app
from keyguard.emulator.config import EmulatorConfig, load_config
from keyguard.emulator.control import CONTROL_HEADER
from keyguard.emulator.state import Clock, EmulatorState
from keyguard.emulator.tls import TlsFiles, ensure_certificates, server_ssl_context

__all__ = ["RunningEmulator", "start_emulator", "run_emulator_cli"]


@dataclass(slots=True)
class RunningEmulator:
    """A started emulator. ``url`` has no trailing slash (``azure_endpoint`` for the SDK)."""

    url: str
    config: EmulatorConfig
    state: EmulatorState
    tls: TlsFiles | None
    _runner: web.AppRunner

    def keys(self) -> tuple[str, str]:
        """The current key1 and key2 (they change when a key is regenerated)."""
        return self.state.keys()

    @property
    def ca_file(self) -> Path | None:
        """The CA certificate clients must trust when serving HTTPS, else ``None``."""
        return self.tls.ca_cert if self.tls is not None else None

    @property
    def control_headers(self) -> dict[str, str]:
        """Headers for the ``/_emulator`` endpoints."""
        return {CONTROL_HEADER: self.config.control_token}

    def identity_env(self) -> dict[str, str]:
        """Environment variables pointing azure-identity's ManagedIdentityCredential here."""
        return {
            "IDENTITY_ENDPOINT": f"{self.url}/msi/token",
            "IDENTITY_HEADER": self.config.identity_header,
        }

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> RunningEmulator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


async def start_emulator(
    config: EmulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    tls_dir: str | Path | None = None,
    clock: Clock = time.time,
    access_log: bool = False,
    shutdown_timeout: float = 60.0,
) -> RunningEmulator:
    """Serve an emulator on ``host:port`` (0 = a free port) and return once it accepts.
    ``stop()`` waits up to ``shutdown_timeout`` seconds for requests in progress (an injected
    latency among them), then cancels them."""
    config = config or EmulatorConfig()
    state = EmulatorState(config, clock)
    tls = ensure_certificates(tls_dir, [host]) if tls_dir is not None else None
    app = build_app(state)
    logs: dict[str, Any] = {} if access_log else {"access_log": None}
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout, **logs)
    await runner.setup()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    bound = sock.getsockname()[1]
    site = web.SockSite(runner, sock, ssl_context=server_ssl_context(tls) if tls else None)
    try:
        await site.start()
    except BaseException:
        sock.close()
        await runner.cleanup()
        raise
    scheme = "https" if tls else "http"
    return RunningEmulator(f"{scheme}://{_url_host(host)}:{bound}", config, state, tls, runner)


def _banner(emulator: RunningEmulator) -> list[str]:
    key1, key2 = emulator.keys()
    deployments = ", ".join(f"{n} ({s.kind})" for n, s in emulator.config.deployments.items())
    env = emulator.identity_env()
    lines = [
        "Keyguard Azure OpenAI emulator",
        f"  endpoint:       {emulator.url}",
        f"  key1:           {key1}",
        f"  key2:           {key2}",
        f"  deployments:    {deployments}",
        f"  control token:  {emulator.config.control_token}  (header {CONTROL_HEADER})",
        f"  identity:       IDENTITY_ENDPOINT={env['IDENTITY_ENDPOINT']}",
        f"                  IDENTITY_HEADER={env['IDENTITY_HEADER']}",
        f"  ARM account:    /subscriptions/{emulator.config.subscription_id}/resourceGroups/"
        f"{emulator.config.resource_group}/providers/Microsoft.CognitiveServices/accounts/"
        f"{emulator.config.account_name}",
    ]
    if emulator.ca_file is not None:
        lines.append(f"  CA certificate: {emulator.ca_file}  (SSL_CERT_FILE / REQUESTS_CA_BUNDLE)")
    lines.append("Press Ctrl-C to stop.")
    return lines


async def _serve_until_signal(
    config: EmulatorConfig,
    host: str,
    port: int,
    tls: str | Path | None,
    echo: Callable[[str], None],
) -> None:
    emulator = await start_emulator(config, host, port, tls_dir=tls, access_log=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for line in _banner(emulator):
            echo(line)
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await emulator.stop()


def _print_flushed(line: str) -> None:
    print(line, flush=True)


def run_emulator_cli(
    *,
    port: int = 8090,
    host: str = "127.0.0.1",
    config: str | Path | None = None,
    legacy_keys: bool = False,
    tls: str | Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> int:
    """``keyguard emulator``: print the endpoint and keys, serve until Ctrl-C; exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = load_config(config) if config is not None else EmulatorConfig()
    if legacy_keys:
        settings = replace(settings, key_format="legacy")
    asyncio.run(_serve_until_signal(settings, host, port, tls, echo or _print_flushed))
    return 0
