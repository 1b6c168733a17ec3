"""A Redis that restarts without persistence comes back empty: the quotas, budgets and the
current windows are restored from the levels the store keeps before anything is admitted, so
the restart never grants a second allowance. Each test runs its own ``redis-server`` on a free
port (``--save '' --appendonly no``) and restarts that one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import openai
import pytest
import redis.asyncio as aioredis
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import select

from keyguard.emulator.server import RunningEmulator
from keyguard.limits.keeper import KeptRedisBackend
from keyguard.server import Gateway
from keyguard.store.schema import limit_counters
from tests.support.gateway import azure_client, new_key, runtime
from tests.support.settings import free_port

from .limited import RedisServer, admission, limited_gateway

pytestmark = pytest.mark.redis

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def kept(gw: Gateway) -> KeptRedisBackend:
    backend = admission(gw)._backend
    assert isinstance(backend, KeptRedisBackend)
    return backend


async def saved(gw: Gateway, metric: str) -> dict[str, int]:
    engine = runtime(gw).engine
    assert engine is not None
    async with engine.connect() as conn:
        rows = (await conn.execute(select(limit_counters.c.key, limit_counters.c.level))).all()
    return {key: int(level) for key, level in rows if f":{metric}:" in key}


async def live(server: RedisServer, metric: str) -> dict[str, int]:
    """The counters of ``metric`` in Redis now (keys without the prefix)."""
    client = aioredis.Redis.from_url(server.url)
    try:
        found = {}
        async for key in client.scan_iter(match=f"*:{metric}:*"):
            found[key.decode().split("}:", 1)[-1]] = int(await client.get(key) or 0)
        return found
    finally:
        await client.aclose()


async def wait_until_saved(
    gw: Gateway, server: RedisServer, metric: str, seconds: float = 15.0
) -> None:
    """Until the periodic save has written every ``metric`` counter at its level in Redis
    (the charges of the last save interval are the documented exposure: none here)."""
    async with asyncio.timeout(seconds):
        while True:
            now, kept = await live(server, metric), await saved(gw, metric)
            if now and all(kept.get(k) == v for k, v in now.items()):
                return
            await asyncio.sleep(0.05)


@pytest.fixture
async def private_redis(tmp_path: Path) -> Any:
    server = RedisServer(free_port(), tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("rule", "metric"),
    [
        ({"scope": "app", "tokens_per_day": 60}, "tpd"),  # a day quota
        ({"scope": "app", "rpm": 3}, "rpm"),  # the current minute's window
    ],
)
async def test_a_filled_limit_stays_filled_across_a_redis_restart(
    tmp_path: Path,
    emulator: RunningEmulator,
    private_redis: RedisServer,
    rule: dict[str, Any],
    metric: str,
) -> None:
    limits = {"backend": private_redis.url, "persist_interval_s": 0.2, "rules": [rule]}
    async with limited_gateway(tmp_path, {"emu": emulator}, limits) as gateway:
        _, key = await new_key(gateway, "restarted")
        admitted = 0
        async with azure_client(gateway, key) as client:
            for _ in range(20):  # fill the limit
                try:
                    await client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=5)
                except openai.RateLimitError:
                    break
                admitted += 1
            assert 0 < admitted < 20
            await wait_until_saved(gateway, private_redis, metric)
            await private_redis.stop()
            await private_redis.start()  # empty: no RDB, no AOF
            refusals: list[int] = []
            for _ in range(10):
                with pytest.raises(openai.APIStatusError) as caught:
                    await client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=5)
                refusals.append(caught.value.status_code)
                if caught.value.status_code == 429:
                    break
                await asyncio.sleep(0.2)  # 503 while the probe reconnects and restores
            assert refusals[-1] == 429, refusals  # refused by the restored count, not admitted
            assert set(refusals) <= {429, 503}  # retryable answers only
        assert kept(gateway).restores >= 2  # the first start, then after the restart


async def test_nothing_is_admitted_between_the_restart_and_the_restore(
    tmp_path: Path, emulator: RunningEmulator, private_redis: RedisServer
) -> None:
    """A store that cannot be read keeps the backend refusing: no restore, no admission."""
    limits = {
        "backend": private_redis.url,
        "persist_interval_s": 0.2,
        "rules": [{"scope": "app", "tokens_per_day": 60}],
    }
    async with limited_gateway(tmp_path, {"emu": emulator}, limits) as gateway:
        _, key = await new_key(gateway, "waiting")
        backend = kept(gateway)
        async with azure_client(gateway, key) as client:
            await client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=5)
            await wait_until_saved(gateway, private_redis, "tpd")

            async def broken() -> list[tuple[str, int, float]]:
                raise OSError("the store is down")

            backend.restore = broken
            await private_redis.stop()
            await private_redis.start()
            for _ in range(5):
                with pytest.raises(openai.InternalServerError) as caught:
                    await client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=5)
                assert caught.value.status_code == 503
                await asyncio.sleep(0.2)
            assert not backend.healthy
