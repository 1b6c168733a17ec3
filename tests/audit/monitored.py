"""A gateway in front of the emulator with monitoring settings chosen by the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from keyguard.config import Settings, settings_from_mapping
from keyguard.emulator.server import RunningEmulator
from keyguard.server import Gateway
from keyguard.vault.master import create_master_key_file
from keyguard.wiring.runtime import open_runtime
from tests.integration.conftest import GatewayHarness, gateway_settings


def monitored_settings(tmp: Path, upstream: str, monitor: dict[str, Any] | None = None) -> Settings:
    base = gateway_settings(tmp, upstream).model_dump(mode="json", exclude_defaults=True)
    base["monitor"] = monitor or {}
    return settings_from_mapping(base)


@asynccontextmanager
async def monitored_gateway(
    tmp: Path, emulator: RunningEmulator, monitor: dict[str, Any] | None = None
) -> AsyncIterator[GatewayHarness]:
    if not (tmp / "master.key").exists():
        create_master_key_file(tmp / "master.key")
    settings = monitored_settings(tmp, emulator.url, monitor)
    rt = await open_runtime(settings, {})
    try:
        await rt.vault.put("upstream/emulator", emulator.keys()[0])
    finally:
        await rt.close()
    gw = Gateway(settings, {})
    await gw.start()
    harness = GatewayHarness(gw, gw.proxy_url, emulator, secrets=list(emulator.keys()))
    try:
        yield harness
    finally:
        await gw.stop()


def write_config(tmp: Path, settings: Settings) -> Path:
    """The settings as a YAML file, for CLI commands."""
    import yaml

    path = tmp / "keyguard.yaml"
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude_defaults=True)))
    return path
