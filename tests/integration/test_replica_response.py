"""Three replicas on one store and one Redis: stuffing spread over them is counted as one, and
a block or a suspension made by one replica is in force on the others within 100 ms (the
replica bus), not at their next poll."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from keyguard.config import settings_from_mapping
from keyguard.emulator.server import RunningEmulator
from keyguard.server import Gateway
from keyguard.vault.master import create_master_key_file
from keyguard.wiring.runtime import open_runtime
from tests.support.emulators import API_VERSION

pytestmark = pytest.mark.redis
CHAT = f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"
BODY: dict[str, Any] = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5}
ATTACKER = "127.0.0.5"


@dataclass
class Cluster:
    replicas: list[Gateway]

    def urls(self) -> list[str]:
        return [g.proxy_url for g in self.replicas]


@pytest.fixture
async def cluster(
    tmp_path: Path, emulator: RunningEmulator, redis_url: str
) -> AsyncIterator[Cluster]:
    create_master_key_file(tmp_path / "master.key")
    settings = settings_from_mapping(
        {
            "listen": {"proxy": "127.0.0.1:0", "admin": "127.0.0.1:0"},
            "store": f"sqlite:///{tmp_path / 'keyguard.db'}",
            "master_key_file": str(tmp_path / "master.key"),
            "cluster": {"bus": redis_url, "channel": f"keyguard-test:{secrets.token_hex(6)}"},
            "monitor": {"respond": {"blocks_poll_s": 60}},  # the poll would be far too late
            "upstreams": [
                {
                    "name": "emulator",
                    "endpoint": emulator.url,
                    "credential": {"vault": "upstream/emulator"},
                    "deployments": ["gpt-4o"],
                }
            ],
        }
    )
    rt = await open_runtime(settings, {})
    try:
        await rt.vault.put("upstream/emulator", emulator.keys()[0])
    finally:
        await rt.close()
    replicas = []
    try:
        for _ in range(3):
            gateway = Gateway(settings, {})
            await gateway.start()
            replicas.append(gateway)
        yield Cluster(replicas)
    finally:
        for gateway in replicas:
            await gateway.stop()


def when_applied(
    target: Any, name: str, match: Callable[..., bool]
) -> tuple[asyncio.Event, list[float]]:
    """Wrap ``target.name`` to note when it is called with arguments ``match`` accepts."""
    applied, times = asyncio.Event(), []
    real = getattr(target, name)

    def wrapper(*args: Any) -> Any:
        if match(*args):
            times.append(time.monotonic())
            applied.set()
        return real(*args)

    setattr(target, name, wrapper)
    return applied, times


async def test_stuffing_over_three_replicas_is_blocked_on_all_within_100_ms(
    cluster: Cluster,
) -> None:
    seen = []
    for gateway in cluster.replicas:
        assert gateway.monitoring is not None
        seen.append(
            when_applied(
                gateway.monitoring.blocks, "add", lambda kind, name, until: name == ATTACKER
            )
        )
    connector = aiohttp.TCPConnector(local_addr=(ATTACKER, 0))
    statuses = []
    async with aiohttp.ClientSession(connector=connector) as http:
        for i in range(60):  # random key-shaped strings, round robin over the replicas
            url = cluster.urls()[i % 3]
            garbage = "kgk_" + secrets.token_urlsafe(38)[:50]
            async with http.post(url + CHAT, json=BODY, headers={"api-key": garbage}) as resp:
                statuses.append(resp.status)
            if all(applied.is_set() for applied, _ in seen):
                break
        await asyncio.wait_for(asyncio.gather(*(a.wait() for a, _ in seen)), 10)
        first = min(t for _, times in seen for t in times)
        last = max(times[0] for _, times in seen)
        assert last - first < 0.1, f"the block reached the last replica after {last - first:.3f} s"
        # Caught at the 20th refused credential counted; each replica hears of the others'
        # refusals over the bus, a few requests late on a loaded machine, so up to 10 more.
        assert statuses.count(401) <= 40
        for url in cluster.urls():  # the next request from that address, on every replica
            async with http.post(url + CHAT, json=BODY, headers={"api-key": "x" * 60}) as resp:
                assert resp.status == 429
    # another address is not affected
    gateway = cluster.replicas[0]
    assert gateway.runtime is not None
    _, key = await gateway.runtime.keys.create("bystander", now=_now())
    async with openai.AsyncAzureOpenAI(
        azure_endpoint=cluster.urls()[1], api_key=key, api_version=API_VERSION, max_retries=0
    ) as client:
        await client.chat.completions.create(model="gpt-4o", messages=BODY["messages"])


async def test_a_suspension_on_one_replica_is_in_force_on_the_others_at_once(
    cluster: Cluster,
) -> None:
    a, b, _ = cluster.replicas
    assert a.runtime is not None and b.authenticator is not None
    record, key = await a.runtime.keys.create("victim", now=_now())
    clients = [
        openai.AsyncAzureOpenAI(
            azure_endpoint=url, api_key=key, api_version=API_VERSION, max_retries=0
        )
        for url in cluster.urls()
    ]
    try:
        for client in clients:  # every replica has the active record cached (ttl 2 s)
            await client.chat.completions.create(model="gpt-4o", messages=BODY["messages"])
        dropped, times = when_applied(b.authenticator, "invalidate", lambda k: k == record.key_id)
        with pytest.raises(openai.AuthenticationError):  # a key checker's probe, on replica a
            await clients[0].chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": ""}], max_tokens=1
            )
        started = time.monotonic()
        await asyncio.wait_for(dropped.wait(), 10)  # a suspended it and told the others
        with pytest.raises(openai.AuthenticationError, match="suspended"):
            await clients[1].chat.completions.create(model="gpt-4o", messages=BODY["messages"])
        assert times[0] - started < 2.0  # far inside the 2 s cache lifetime it used to take
    finally:
        for client in clients:
            await client.close()


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
