"""Helpers for the limits tests: gateways with a ``limits:`` section in front of emulators."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from keyguard.config import Settings, settings_from_mapping
from keyguard.emulator.server import RunningEmulator
from keyguard.limits.admission import LimitAdmission
from keyguard.limits.backend import MemoryBackend
from keyguard.runtime import open_runtime
from keyguard.server import Gateway
from keyguard.vault.master import create_master_key_file

API_VERSION = "2024-10-21"
DEPLOYMENTS = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "dall-e-3"]


def upstream(name: str, emulator: RunningEmulator, **deployments: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "endpoint": emulator.url,
        "credential": {"vault": f"upstream/{name}"},
        "deployments": deployments or {d: {} for d in DEPLOYMENTS},
    }


def limited_settings(
    tmp: Path, upstreams: Sequence[dict[str, Any]], limits: dict[str, Any], **extra: Any
) -> Settings:
    return settings_from_mapping(
        {
            "listen": {"proxy": "127.0.0.1:0", "admin": "127.0.0.1:0"},
            "store": f"sqlite:///{tmp / 'keyguard.db'}",
            "master_key_file": str(tmp / "master.key"),
            "upstreams": list(upstreams),
            "limits": limits,
            **extra,
        }
    )


async def prepare(settings: Settings, keys: dict[str, str]) -> None:
    """Create the master key and store each upstream key in the vault."""
    assert settings.master_key_file is not None
    if not Path(settings.master_key_file).exists():
        create_master_key_file(Path(settings.master_key_file))
    rt = await open_runtime(settings, {})
    try:
        for name, value in keys.items():
            await rt.vault.put(name, value)
    finally:
        await rt.close()


async def start_limited_gateway(
    tmp: Path,
    emulators: dict[str, RunningEmulator],
    limits: dict[str, Any],
    *,
    upstreams: Sequence[dict[str, Any]] | None = None,
) -> Gateway:
    ups = upstreams or [upstream(name, emu) for name, emu in emulators.items()]
    settings = limited_settings(tmp, ups, limits)
    await prepare(settings, {f"upstream/{n}": e.keys()[0] for n, e in emulators.items()})
    gateway = Gateway(settings, {})
    await gateway.start()
    return gateway


async def new_key(gateway: Gateway, app: str = "app") -> tuple[str, str]:
    assert gateway.runtime is not None
    record, key = await gateway.runtime.keys.create(app, now=datetime.now(UTC))
    return record.key_id, key


def admission(gateway: Gateway) -> LimitAdmission:
    assert gateway.admission is not None
    return gateway.admission


def memory(gateway: Gateway) -> MemoryBackend:
    backend = admission(gateway)._backend
    assert isinstance(backend, MemoryBackend)
    return backend


def counter(gateway: Gateway, prefix: str) -> int:
    """The value of the one memory counter whose key starts with ``prefix``."""
    found = [v for k, v in memory(gateway).counters.items() if k.startswith(prefix)]
    assert len(found) == 1, (prefix, memory(gateway).counters)
    return found[0]


async def emulator_usage(emulator: RunningEmulator) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{emulator.url}/_emulator/usage", headers=emulator.control_headers
        ) as resp:
            assert resp.status == 200
            body: dict[str, Any] = await resp.json()
            return body


async def add_fault(emulator: RunningEmulator, fault: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{emulator.url}/_emulator/faults", json=fault, headers=emulator.control_headers
        ) as resp:
            assert resp.status == 201, await resp.text()
