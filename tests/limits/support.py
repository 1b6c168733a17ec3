"""Helpers for the limits tests: gateways with a ``limits:`` section in front of emulators."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from keyguard.config import Settings, settings_from_mapping
from keyguard.emulator.server import RunningEmulator
from keyguard.limits.admission import LimitAdmission
from keyguard.limits.backend import MemoryBackend
from keyguard.server import Gateway
from keyguard.vault.master import create_master_key_file
from keyguard.wiring.runtime import open_runtime

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
    """A started gateway whose limits clock is frozen now (no test straddles a window)."""
    ups = upstreams or [upstream(name, emu) for name, emu in emulators.items()]
    settings = limited_settings(tmp, ups, limits)
    await prepare(settings, {f"upstream/{n}": e.keys()[0] for n, e in emulators.items()})
    gateway = Gateway(settings, {})
    await gateway.start()
    freeze(gateway)
    return gateway


def freeze(gateway: Gateway, at: float | None = None) -> float:
    """Stop the limits clock of ``gateway`` at ``at`` (default: now)."""
    moment = time.time() if at is None else at
    if gateway.admission is not None:
        gateway.admission._clock = lambda: moment
    return moment


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


class RedisServer:
    """A private ``redis-server`` on a free loopback port, to stop and restart in a test."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._workdir = workdir
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not installed")
        self._proc = await asyncio.create_subprocess_exec(
            exe,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._workdir),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self._proc.stdout is not None
        async with asyncio.timeout(10):
            while True:
                line = await self._proc.stdout.readline()
                if not line:
                    raise RuntimeError("redis-server exited at start")
                if b"Ready to accept connections" in line:
                    break
        self._drain = asyncio.create_task(self._proc.stdout.read())

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()
            await self._drain
        self._proc = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
