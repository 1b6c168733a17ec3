"""Gateways with a ``limits:`` section in front of emulators, and what the limits tests look at:
the in-process counters, the emulator's usage and faults, a Redis server to stop and restart."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from keyguard.emulator.server import RunningEmulator
from keyguard.limits.admission import LimitAdmission
from keyguard.limits.backend import MemoryBackend
from keyguard.server import Gateway
from tests.support.gateway import running_gateway
from tests.support.settings import upstream

# The deployments of a limited gateway: the models the budget tests give prices (a budget
# needs a price for every model served).
LIMITED = ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "dall-e-3")


@asynccontextmanager
async def limited_gateway(
    tmp: Path,
    emulators: dict[str, RunningEmulator],
    limits: dict[str, Any],
    *,
    upstreams: Sequence[dict[str, Any]] | None = None,
    **options: Any,
) -> AsyncIterator[Gateway]:
    """A running gateway in front of ``emulators`` (each an upstream of that name serving the
    :data:`LIMITED` deployments, unless ``upstreams`` says otherwise), its limits clock frozen
    now so that no test straddles a window."""
    async with running_gateway(
        tmp,
        upstreams=upstreams
        or [upstream(emu.url, name=name, deployments=LIMITED) for name, emu in emulators.items()],
        vault={f"upstream/{name}": emu.keys()[0] for name, emu in emulators.items()},
        limits=limits,
        **options,
    ) as gateway:
        freeze(gateway)
        yield gateway


def freeze(gateway: Gateway, at: float | None = None) -> float:
    """Stop the limits clock of ``gateway`` at ``at`` (default: now)."""
    moment = time.time() if at is None else at
    if gateway.admission is not None:
        gateway.admission._clock = lambda: moment
    return moment


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
