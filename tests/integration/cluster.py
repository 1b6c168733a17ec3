"""Several ``keyguard serve`` processes on one store and one private Redis: the harness of the
multi-replica tests (propagation over the replica bus, faults).

::

    async with gateway_cluster(tmp_path, emulator, store_url, redis, replicas=3) as c:
        status = await c.probe(c.replicas[1], key)
        await c.admin(0, "POST", f"/admin/keys/{key_id}/revoke")
        c.replicas[2].kill()          # SIGKILL
        await c.replicas[2].start()   # the same configuration again

Every replica listens on ports it picks (``127.0.0.1:0``) and prints them when it is ready;
the Redis server is the test's own (:class:`~.limited.RedisServer`), so it can be restarted.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from keyguard.cli.support import cli_actor
from keyguard.emulator.server import RunningEmulator
from keyguard.wiring.access import open_admin_service
from keyguard.wiring.bus import BUS_KEY
from keyguard.wiring.runtime import open_runtime
from tests.support.emulators import API_VERSION
from tests.support.settings import keyguard_config, keyguard_settings, upstream, write_config

from .limited import LIMITED, RedisServer

_READY = re.compile(r"keyguard proxy on (https?://[\w.:\[\]-]+), admin on (https?://[\w.:\[\]-]+)")
CHAT = f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"


class Replica:
    """One ``keyguard serve`` process; started, killed and started again by the test."""

    def __init__(self, config: Path, name: str) -> None:
        self.config = config
        self.name = name
        self.url = ""
        self.admin_url = ""
        self.log: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 240) -> None:
        ready = asyncio.Event()
        exe = Path(sys.executable).with_name("keyguard")
        self.url = self.admin_url = ""
        self.proc = await asyncio.create_subprocess_exec(
            str(exe),
            "serve",
            "--config",
            str(self.config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if not k.startswith("KEYGUARD_")},
        )
        self._reader = asyncio.create_task(self._read(self.proc, ready))
        async with asyncio.timeout(timeout):  # a busy 2-core machine starts several slowly
            await ready.wait()
        if not self.url:
            raise RuntimeError(f"replica {self.name} did not start: {self.log[-10:]}")

    async def _read(self, proc: asyncio.subprocess.Process, ready: asyncio.Event) -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            match = _READY.search(line)
            if match:
                self.url, self.admin_url = match.group(1), match.group(2)
                ready.set()
        ready.set()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        """SIGKILL: no drain, no clean-up, as a node lost."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        if self._reader is not None:
            await self._reader

    async def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                async with asyncio.timeout(30):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await self._reader


@dataclass
class Cluster:
    replicas: list[Replica]
    redis: RedisServer
    token: str  # an admin token (role admin)
    bus_key: bytes  # the vault's bus key (to publish as a replica would)
    settings: Any
    http: aiohttp.ClientSession = field(repr=False, default=None)  # type: ignore[assignment]

    async def admin(
        self, replica: int, method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        url = self.replicas[replica].admin_url + path
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.request(method, url, json=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def probe(self, replica: Replica, key: str, max_tokens: int = 1) -> int:
        """One small chat request through ``replica``: its status."""
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
        async with self.http.post(replica.url + CHAT, json=body, headers={"api-key": key}) as r:
            await r.read()
            return r.status


async def _prepare(settings: Any, emulator: RunningEmulator) -> tuple[str, bytes]:
    rt = await open_runtime(settings, {})
    try:
        await rt.vault.put("upstream/emu", emulator.keys()[0])
        bus_key = await rt.vault.get_or_create_random(BUS_KEY)
        service = await open_admin_service(rt)
        _, token = await service.create_admin_token(cli_actor(), name="cluster", role="admin")
        return token, bus_key
    finally:
        await rt.close()


@asynccontextmanager
async def gateway_cluster(
    tmp: Path,
    emulator: RunningEmulator,
    store: str,
    redis: RedisServer,
    *,
    replicas: int = 3,
    **sections: Any,
) -> AsyncIterator[Cluster]:
    """``replicas`` gateways on ``store`` with the replica bus (and whatever ``sections`` add,
    e.g. ``limits``) on ``redis``, started; stopped on exit."""
    options: dict[str, Any] = {
        "upstreams": [upstream(emulator.url, name="emu", deployments=LIMITED)],
        "store": store,
        "cluster": {"bus": redis.url, "channel": "keyguard-cluster-test"},
        "proxy": {"access_log": False},
        **sections,
    }
    settings = keyguard_settings(tmp, **options)
    token, bus_key = await _prepare(settings, emulator)
    config = keyguard_config(tmp, **options)
    started = [
        Replica(write_config(tmp, config, f"replica{i}.yaml"), f"r{i}") for i in range(replicas)
    ]
    try:
        await asyncio.gather(*(r.start() for r in started))
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200), timeout=aiohttp.ClientTimeout(total=60)
        ) as http:
            yield Cluster(started, redis, token, bus_key, settings, http)
    finally:
        await asyncio.gather(*(r.stop() for r in started), return_exceptions=True)


def now() -> datetime:
    return datetime.now(UTC)
