"""The usage read-out across three ``keyguard serve`` replicas sharing the limits in Redis
(the real server at 127.0.0.1:6379): requests spread over the replicas through the official
SDK until a key's budget refuses them on every replica, and ``/admin/usage`` on any replica
shows exactly what the limits enforce: the counters in Redis, the tokens the upstream
reported, the refusal.

The replicas run on the real clock. The quotas and the budget count by the month, so that a
window practically never turns during the test; if one does, each read-out is compared with
the counters of the window it read, and every token is still found in the windows the test
spanned.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import openai
import pytest
import redis.asyncio as aioredis
from openai.types.chat import ChatCompletionMessageParam

from keyguard.emulator.server import RunningEmulator
from keyguard.limits.windows import window
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
        {"scope": "key", "rpm": 1000, "concurrent": 8, "tokens_per_month": 1_000_000},
        {"scope": "app", "tokens_per_month": 1_000_000},
    ],
    "budgets": [{"scope": "key", "per_month": "0.2"}],
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


def seconds(text: str) -> float:
    """Epoch seconds of a read-out's ``2026-03-01T12:00:00Z``."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def month_of(answer: dict[str, Any]) -> int:
    """The start of the month window the read-out ``answer`` read its counters in."""
    return window("month", seconds(answer["now"]))[0]


def steady(answer: dict[str, Any]) -> dict[str, Any]:
    """The lines whose windows do not turn during a test (not the per-minute ones)."""
    return {
        "limits": [x for x in answer["limits"] if x["period"] not in ("minute", None)],
        "budgets": answer["budgets"],
    }


async def redis_levels(url: str, prefix: str, owner: str) -> dict[tuple[str, int], int]:
    """The windowed counters of ``owner`` (``key:ID``, ``app:NAME``) as Redis holds them:
    (metric, window start) -> level."""
    direct = aioredis.Redis.from_url(url)
    try:
        found: dict[tuple[str, int], int] = {}
        async for raw in direct.scan_iter(match=f"{prefix}{owner}:*"):
            name = raw.decode()
            parts = name[len(prefix) :].split(":")
            if len(parts) == 4 and parts[2] != "conc":  # SCOPE:NAME:METRIC:WINDOW
                found[(parts[2], int(parts[3]))] = int(await direct.get(raw) or 0)
        return found
    finally:
        await direct.aclose()


def total(levels: dict[tuple[str, int], int], metric: str) -> int:
    """``metric`` summed over every window it was charged in."""
    return sum(level for (name, _), level in levels.items() if name == metric)


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
            started = time.time()
            try:
                for i in range(40):  # round robin until the budget refuses
                    try:
                        await clients[i % 3].chat.completions.create(
                            model="gpt-4o", messages=HI, max_tokens=MAX_TOKENS
                        )
                        sent += 1
                    except openai.RateLimitError as exc:
                        assert f"budget per month of key '{key_id}'" in exc.message
                        refused += 1
                        break
                assert refused == 1 and sent >= 3  # every replica admitted some
                # Spent on every replica alike: each refuses the next request.
                for each in clients:
                    with pytest.raises(openai.RateLimitError):
                        await each.chat.completions.create(
                            model="gpt-4o", messages=HI, max_tokens=MAX_TOKENS
                        )
                refused_in = window("month", time.time())[0]
            finally:
                for each in clients:
                    await each.close()

            tokens = (await emulator_usage(emulator))["total"]["total_tokens"]
            held = await redis_levels(redis_url, redis_prefix, f"key:{key_id}")
            app_held = await redis_levels(redis_url, redis_prefix, "app:spread")
            answers = [await read(c, i, f"?key={key_id}") for i in range(3)]
            ended = time.time()
            # One month, unless it turned during the test: then its requests were charged to
            # the two windows it spanned, each request to the one it was admitted in.
            spanned = {window("month", started)[0], window("month", ended)[0]}
            monthly = [w for m, w in [*held, *app_held] if m in ("tpmo", "costmo")]
            assert set(monthly) <= spanned
            assert total(held, "costmo") == tokens * PRICE
            assert total(held, "tpmo") == total(app_held, "tpmo") == tokens
            # Every replica shows the counters of the window it read, as Redis holds them.
            assert {month_of(a) for a in answers} <= spanned
            for answer in answers:
                month = month_of(answer)
                (budget,) = answer["budgets"]
                used = held.get(("costmo", month), 0)
                assert round(budget["used"] * 1_000_000) == used
                assert budget["limit"] == BUDGET_MICRO / 1_000_000
                assert round(budget["remaining"] * 1_000_000) == BUDGET_MICRO - used
                by_label = {(x["scope"], x["label"]): x for x in answer["limits"]}
                assert by_label[("key", "tokens per month")]["used"] == held.get(("tpmo", month), 0)
                assert by_label[("app", "tokens per month")]["used"] == app_held.get(
                    ("tpmo", month), 0
                )
                if month == refused_in:
                    # What is left is less than the next request's reservation (8 prompt
                    # tokens by the estimate, plus max_tokens): why every replica refused it.
                    assert 0 <= BUDGET_MICRO - used < (8 + MAX_TOKENS) * PRICE
            if len(spanned) == 1:  # no turn: all of it in the one window every replica read
                assert held[("costmo", month_of(answers[0]))] == tokens * PRICE
                assert month_of(answers[0]) == refused_in
            same_month = [steady(a) for a in answers if month_of(a) == month_of(answers[0])]
            assert all(each == same_month[0] for each in same_month)
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
                spend: dict[str, Any] = (await read(c, 2, "?app=spread&period=month"))["spend"]
                return spend

            async with asyncio.timeout(30):  # every replica's audit records, in one store
                while (spend := await audited())["requests"] != sent + 4:
                    if seconds(spend["since"]) != window("month", started)[0]:
                        break  # a month turned since the first request: the spend is its part
                    await asyncio.sleep(0.1)
            assert spend["period"] == "month"
            if seconds(spend["since"]) == window("month", started)[0]:
                assert spend["tokens"] == tokens
                assert round(spend["cost"] * 1_000_000) == tokens * PRICE
                assert spend["by_key"] == [
                    {
                        "key_id": key_id,
                        "requests": sent + 4,
                        "tokens": tokens,
                        "cost": spend["cost"],
                    }
                ]
            else:
                assert spend["tokens"] <= tokens
    finally:
        await bus.stop()
