"""The replica bus over a real Redis: delivery between replicas, and what a hostile writer of
that Redis (who lacks the vault's bus key) or an outage can do to it."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from keyguard.bus import Message, sign
from keyguard.bus.redis import RedisBus
from tests.support.settings import free_port

pytestmark = pytest.mark.redis

KEY = secrets.token_bytes(32)


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[tuple[RedisBus, RedisBus, str]]:
    channel = f"keyguard-test:{secrets.token_hex(6)}"
    a = RedisBus(redis_url, KEY, "a", channel=channel)
    b = RedisBus(redis_url, KEY, "b", channel=channel)
    await a.start()
    await b.start()
    try:
        yield a, b, channel
    finally:
        await a.close()
        await b.close()


async def until(condition: object, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_a_message_reaches_the_other_replica_and_not_its_sender(
    pair: tuple[RedisBus, RedisBus, str],
) -> None:
    a, b, _ = pair
    got_a: list[Message] = []
    got_b: list[Message] = []
    a.subscribe("key", got_a.append)
    b.subscribe("key", got_b.append)
    a.publish("key", {"id": "abcdefghijkl"})
    await until(lambda: got_b)
    assert got_b[0].data == {"id": "abcdefghijkl"} and got_b[0].sender == "a"
    assert got_a == [] and a.sent == 1 and b.received == 1 and a.connected


async def test_forged_and_replayed_messages_from_a_hostile_redis_writer_are_refused(
    pair: tuple[RedisBus, RedisBus, str], redis_url: str
) -> None:
    a, b, channel = pair
    applied: list[Message] = []
    b.subscribe("block", applied.append)
    hostile = aioredis.Redis.from_url(redis_url)
    try:
        forged = sign(b"not-the-key" * 3, Message("block", "a", {}, time.time(), "n" * 16))
        await hostile.publish(channel, forged)
        await hostile.publish(channel, b"garbage")
        recorded: list[bytes] = []
        async with hostile.pubsub() as sniffer:  # a writer who can also read the channel
            await sniffer.subscribe(channel)
            a.publish("block", {"kind": "key", "name": "k", "until": 1})
            async with asyncio.timeout(10):
                async for item in sniffer.listen():
                    if isinstance(item.get("data"), bytes):
                        recorded.append(item["data"])
                        break
        await until(lambda: len(applied) == 1)
        for _ in range(3):  # replayed verbatim
            await hostile.publish(channel, recorded[0])
        await until(lambda: b.receiver.refused["replayed"] == 3)
    finally:
        await hostile.aclose()
    assert b.receiver.refused["forged"] == 2
    assert len(applied) == 1  # only the genuine message was applied, once


async def test_with_redis_down_publishing_never_waits_and_loss_is_bounded_and_counted() -> None:
    bus = RedisBus(f"redis://127.0.0.1:{free_port()}/0", KEY, "lonely", flush_s=0.5)
    began = time.monotonic()
    await bus.start()  # does not fail: it keeps trying in the background
    assert not bus.connected
    published = time.monotonic()
    for i in range(20_000):
        bus.publish("key", {"id": f"{i:012d}"})
    assert time.monotonic() - published < 2.0  # no request ever waits on the bus
    assert bus.lost >= 10_000 - 1  # the queue holds 10,000; the rest is dropped and counted
    await bus.close()
    assert time.monotonic() - began < 10.0
