"""The usage read-out across three ``keyguard serve`` replicas sharing the limits in Redis
(the real server at 127.0.0.1:6379): requests spread over the replicas through the official
SDK until a key's budget refuses them on every replica, and ``/admin/usage`` on any replica
shows exactly what the limits enforce: the counters in Redis, the tokens the upstream
reported, the refusal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import openai
import pytest
import redis.asyncio as aioredis
from openai.types.chat import ChatCompletionMessageParam

from keyguard.emulator.server import RunningEmulator
from tests.support.emulators import API_VERSION
from tests.support.settings import free_port

from .cluster import Cluster, Replica, gateway_cluster
from .limited import LIMITED, RedisServer, emulator_usage

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
PRICE = 1000  # per 1,000,000 tokens: 1000 micro-units of a dollar a token
MAX_TOKENS = 20
BUDGET_MICRO = 200_000  # $0.20: about ten requests of the emulator's answer
LIMITS: dict[str, Any] = {
    "rules": [
        {"scope": "key", "rpm": 1000, "concurrent": 8, "tokens_per_day": 1_000_000},
        {"scope": "app", "tokens_per_hour": 1_000_000},
    ],
    "budgets": [{"scope": "key", "per_day": "0.2"}],
    "prices": {name: {"input": PRICE, "output": PRICE} for name in LIMITED},
}


def client(replica: Replica, key: str) -> openai.AsyncAzureOpenAI:
    return openai.AsyncAzureOpenAI(
        azure_endpoint=replica.url, api_key=key, api_version=API_VERSION, max_retries=0
    )


async def read(cluster: Cluster, replica: int, query: str) -> dict[str, Any]:
    status, body = await cluster.admin(replica, "GET", "/admin/usage" + query)
    assert status == 200, body
    answer: dict[str, Any] = body
    return answer


def steady(answer: dict[str, Any]) -> dict[str, Any]:
    """The lines whose windows do not turn during a test (not the per-minute ones)."""
    return {
        "limits": [x for x in answer["limits"] if x["period"] not in ("minute", None)],
        "budgets": answer["budgets"],
    }


async def redis_levels(url: str, prefix: str, key_id: str) -> dict[str, int]:
    """The key's counters as Redis holds them: metric -> level."""
    direct = aioredis.Redis.from_url(url)
    try:
        found: dict[str, int] = {}
        async for raw in direct.scan_iter(match=f"{prefix}key:{key_id}:*"):
            name = raw.decode()
            parts = name[len(prefix) :].split(":")
            if len(parts) == 4 and parts[2] != "conc":  # key:ID:METRIC:WINDOW
                found[parts[2]] = int(await direct.get(raw) or 0)
        return found
    finally:
        await direct.aclose()


async def test_the_read_out_on_any_replica_equals_what_the_limits_enforce(
    tmp_path: Path,
    emulator: RunningEmulator,
    postgres_database: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    bus = RedisServer(free_port(), tmp_path)  # the replica bus: the cluster's own
    await bus.start()
    limits = {**LIMITS, "backend": redis_url, "redis_key_prefix": redis_prefix}
    try:
        async with gateway_cluster(tmp_path, emulator, postgres_database, bus, limits=limits) as c:
            status, made = await c.admin(0, "POST", "/admin/keys", {"app": "spread"})
            assert status == 201, made
            key_id, key = made["key_id"], made["key"]
            clients = [client(r, key) for r in c.replicas]
            sent = refused = 0
            try:
                for i in range(40):  # round robin until the budget refuses
                    try:
                        await clients[i % 3].chat.completions.create(
                            model="gpt-4o", messages=HI, max_tokens=MAX_TOKENS
                        )
                        sent += 1
                    except openai.RateLimitError as exc:
                        assert f"budget per day of key '{key_id}'" in exc.message
                        refused += 1
                        break
                assert refused == 1 and sent >= 3  # every replica admitted some
                # Spent on every replica alike: each refuses the next request.
                for each in clients:
                    with pytest.raises(openai.RateLimitError):
                        await each.chat.completions.create(
                            model="gpt-4o", messages=HI, max_tokens=MAX_TOKENS
                        )
            finally:
                for each in clients:
                    await each.close()

            tokens = (await emulator_usage(emulator))["total"]["total_tokens"]
            held = await redis_levels(redis_url, redis_prefix, key_id)
            answers = [await read(c, i, f"?key={key_id}") for i in range(3)]
            assert steady(answers[0]) == steady(answers[1]) == steady(answers[2])
            answer = answers[0]
            (budget,) = answer["budgets"]
            assert round(budget["used"] * 1_000_000) == held["costd"] == tokens * PRICE
            assert budget["limit"] == BUDGET_MICRO / 1_000_000
            # What is left is less than the next request's reservation (8 prompt tokens by
            # the estimate, plus max_tokens): why every replica refused it.
            remaining = round(budget["remaining"] * 1_000_000)
            assert remaining == BUDGET_MICRO - held["costd"]
            assert 0 <= remaining < (8 + MAX_TOKENS) * PRICE
            by_label = {(x["scope"], x["label"]): x for x in answer["limits"]}
            assert by_label[("key", "tokens per day")]["used"] == held["tpd"] == tokens
            assert by_label[("app", "tokens per hour")]["used"] == tokens
            # Per-minute lines: the same on every replica within one minute.
            same_minute = [a for a in answers if a["now"][:16] == answers[0]["now"][:16]]
            rpm = {
                x["used"]
                for a in same_minute
                for x in a["limits"]
                if (x["scope"], x["label"]) == ("key", "requests per minute")
            }
            assert len(rpm) == 1

            async def audited() -> dict[str, Any]:
                spend: dict[str, Any] = (await read(c, 2, "?app=spread"))["spend"]
                return spend

            async with asyncio.timeout(30):  # every replica's audit records, in one store
                while (spend := await audited())["requests"] != sent + 4:
                    await asyncio.sleep(0.1)
            assert spend["tokens"] == tokens
            assert round(spend["cost"] * 1_000_000) == tokens * PRICE
            assert spend["by_key"] == [
                {"key_id": key_id, "requests": sent + 4, "tokens": tokens, "cost": spend["cost"]}
            ]
    finally:
        await bus.stop()
