"""The Redis backend end to end: shared counters, fail closed when Redis stops, recover."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
import redis.asyncio as aioredis
from openai.types.chat import ChatCompletionMessageParam

from keyguard.emulator.server import RunningEmulator
from keyguard.limits.redis_backend import RedisBackend
from keyguard.server import Gateway
from tests.support.gateway import azure_client, new_key, running_gateway
from tests.support.settings import free_port

from .limited import RedisServer, admission, emulator_usage, freeze, limited_gateway

pytestmark = pytest.mark.redis

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def redis_backend(gw: Gateway) -> RedisBackend:
    backend = admission(gw)._backend
    assert isinstance(backend, RedisBackend)
    return backend


async def test_two_gateways_share_one_count(
    tmp_path: Path, emulator: RunningEmulator, redis_url: str, redis_prefix: str
) -> None:
    limits: dict[str, Any] = {
        "backend": redis_url,
        "redis_key_prefix": redis_prefix,
        "journal_max_len": 1000,
        "rules": [{"scope": "app", "tpm": 100}],
    }
    async with (
        limited_gateway(tmp_path, {"emu": emulator}, limits) as one,
        running_gateway(tmp_path, settings=one.settings) as two,
    ):
        freeze(two, admission(one)._clock())
        _, key = await new_key(one, "shared")
        async with azure_client(one, key) as a, azure_client(two, key) as b:
            # Reserved 8 + 60 through one gateway, settled to the emulator's 7 + 20 = 27.
            await a.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=60)
            # 8 + 65 = 73 fits exactly in what is left (100 - 27) through the other; settled: 54.
            await b.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=65)
            with pytest.raises(openai.RateLimitError):  # 8 + 39 > 46
                await a.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=39)
            await b.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=38)
        backend = redis_backend(one)
        direct = aioredis.Redis.from_url(redis_url)
        try:
            entries: Any = await direct.xrange(backend.journal_key)
            ops = [orjson.loads(fields[b"d"])["op"] for _, fields in entries]
            keys = [k async for k in direct.scan_iter(match=redis_prefix + "app:shared:tpm:*")]
            level = int(await direct.get(keys[0]) or 0)
        finally:
            await direct.aclose()
        assert ops == ["reserve", "settle", "reserve", "settle", "refuse", "reserve", "settle"]
        total = (await emulator_usage(emulator))["total"]["total_tokens"]
        assert len(keys) == 1 and level == total


async def wait_until(condition: Any, seconds: float = 15.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("policy", ["refuse", "local"])
async def test_redis_down_fails_closed_or_falls_back_and_recovers_without_restart(
    tmp_path: Path, emulator: RunningEmulator, policy: str
) -> None:
    server = RedisServer(free_port(), tmp_path)
    await server.start()
    limits = {
        "backend": server.url,
        "on_backend_failure": policy,
        "local_fallback_fraction": 0.5,
        "rules": [{"scope": "app", "rpm": 4}],
    }
    try:
        async with limited_gateway(tmp_path, {"emu": emulator}, limits) as gateway:
            _, key = await new_key(gateway, "resilient")
            async with azure_client(gateway, key) as c:
                await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=1)
                await server.stop()
                if policy == "refuse":
                    for _ in range(2):
                        with pytest.raises(openai.InternalServerError) as caught:
                            await c.chat.completions.create(model="gpt-4o", messages=HI)
                        assert caught.value.status_code == 503
                        assert caught.value.response.headers["retry-after"] == "1"
                        assert "limits store is unreachable" in caught.value.message
                else:
                    # Each replica on its own, at half the limit: 2 requests per minute here.
                    for _ in range(2):
                        await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=1)
                    with pytest.raises(openai.RateLimitError):
                        await c.chat.completions.create(model="gpt-4o", messages=HI)
                await server.start()
                backend = redis_backend(gateway)
                await wait_until(lambda: backend.healthy)
                await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=1)
    finally:
        await server.stop()
