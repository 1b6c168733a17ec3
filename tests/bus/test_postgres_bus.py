"""The replica bus over PostgreSQL LISTEN/NOTIFY: delivery between replicas, and what any role
that may connect (and so NOTIFY) can do to it without the vault's bus key."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import asyncpg  # type: ignore[import-untyped]
import pytest

from keyguard.bus import Message, sign
from keyguard.bus.postgres import PostgresBus
from tests.support.settings import free_port

pytestmark = pytest.mark.postgres

KEY = secrets.token_bytes(32)


@pytest.fixture
async def pair(postgres_url: str) -> AsyncIterator[tuple[PostgresBus, PostgresBus, str]]:
    channel = f"keyguard-test:{secrets.token_hex(6)}"
    a = PostgresBus(postgres_url, KEY, "a", channel=channel)
    b = PostgresBus(postgres_url, KEY, "b", channel=channel)
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
    pair: tuple[PostgresBus, PostgresBus, str],
) -> None:
    a, b, _ = pair
    got_a: list[Message] = []
    got_b: list[Message] = []
    a.subscribe("policy", got_a.append)
    b.subscribe("policy", got_b.append)
    a.publish("policy", {"version": 7})
    await until(lambda: got_b)
    assert got_b[0].data == {"version": 7} and got_b[0].sender == "a"
    assert got_a == [] and a.sent == 1 and a.connected and b.connected


async def test_forged_replayed_and_oversized_messages_are_refused(
    pair: tuple[PostgresBus, PostgresBus, str], postgres_url: str
) -> None:
    a, b, channel = pair
    applied: list[Message] = []
    b.subscribe("key", applied.append)
    genuine = sign(KEY, Message("key", "a", {"id": "abcdefghijkl"}, time.time(), "n" * 16))
    forged = sign(b"x" * 32, Message("key", "a", {"id": "abcdefghijkl"}, time.time(), "m" * 16))
    hostile = await asyncpg.connect(postgres_url)
    try:
        for payload in (forged, b"garbage", genuine, genuine, genuine):
            await hostile.execute("SELECT pg_notify($1, $2)", channel, payload.decode())
    finally:
        await hostile.close()
    await until(lambda: b.receiver.refused["replayed"] == 2)
    assert b.receiver.refused["forged"] == 2
    assert len(applied) == 1  # the genuine message once
    a.publish("key", {"id": "x" * 5000})  # too large to be read: never sent, counted
    assert a.lost == 1


async def test_with_the_database_down_publishing_never_waits() -> None:
    bus = PostgresBus(
        f"postgresql://nobody@127.0.0.1:{free_port()}/none", KEY, "lonely", flush_s=0.5
    )
    began = time.monotonic()
    await bus.start()
    assert not bus.connected
    published = time.monotonic()
    for i in range(20_000):
        bus.publish("key", {"id": f"{i:012d}"})
    assert time.monotonic() - published < 2.0
    assert bus.lost >= 10_000 - 1
    await bus.close()
    assert time.monotonic() - began < 10.0
