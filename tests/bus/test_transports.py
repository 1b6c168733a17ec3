"""The replica bus over each real transport (Redis pub/sub, PostgreSQL LISTEN/NOTIFY): delivery
between replicas, and what a hostile writer of the backend (who may publish or NOTIFY but lacks
the vault's bus key) or an outage can do to it."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped]
import pytest
import redis.asyncio as aioredis

from keyguard.bus import Message, sign
from keyguard.bus.postgres import PostgresBus
from keyguard.bus.redis import RedisBus
from keyguard.bus.transport import QueuedBus
from tests.support.settings import free_port

KEY = secrets.token_bytes(32)


@dataclass
class Backend:
    name: str
    url: str
    make: Callable[..., QueuedBus]
    down_url: str  # nothing listens there

    async def inject(self, channel: str, payloads: list[bytes]) -> None:
        """Publish raw payloads as a hostile writer of the backend would."""
        if self.name == "redis":
            hostile = aioredis.Redis.from_url(self.url)
            try:
                for payload in payloads:
                    await hostile.publish(channel, payload)
            finally:
                await hostile.aclose()
        else:
            conn = await asyncpg.connect(self.url)
            try:
                for payload in payloads:
                    await conn.execute("SELECT pg_notify($1, $2)", channel, payload.decode())
            finally:
                await conn.close()


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        return Backend("redis", url, RedisBus, f"redis://127.0.0.1:{free_port()}/0")
    url = request.getfixturevalue("postgres_url")
    return Backend(
        "postgres", url, PostgresBus, f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    )


@pytest.fixture
async def pair(backend: Backend) -> AsyncIterator[tuple[QueuedBus, QueuedBus, str]]:
    channel = f"keyguard-test:{secrets.token_hex(6)}"
    a = backend.make(backend.url, KEY, "a", channel=channel)
    b = backend.make(backend.url, KEY, "b", channel=channel)
    await a.start()
    await b.start()
    try:
        yield a, b, channel
    finally:
        await a.close()
        await b.close()


async def until(condition: Callable[[], object], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_message_reaches_the_other_replica_and_not_its_sender(
    pair: tuple[QueuedBus, QueuedBus, str],
) -> None:
    a, b, _ = pair
    got_a: list[Message] = []
    got_b: list[Message] = []
    a.subscribe("key", got_a.append)
    b.subscribe("key", got_b.append)
    a.publish("key", {"version": 7})
    await until(lambda: got_b)
    assert got_b[0].data == {"version": 7} and got_b[0].sender == "a"
    assert got_a == [] and a.sent == 1 and a.connected and b.connected


async def test_forged_garbage_and_replayed_messages_from_a_hostile_writer_are_refused(
    pair: tuple[QueuedBus, QueuedBus, str], backend: Backend
) -> None:
    a, b, channel = pair
    applied: list[Message] = []
    b.subscribe("key", applied.append)
    genuine = sign(KEY, Message("key", "a", {"id": "abcdefghijkl"}, time.time(), "n" * 16))
    forged = sign(b"x" * 32, Message("key", "a", {"id": "abcdefghijkl"}, time.time(), "m" * 16))
    await backend.inject(channel, [forged, b"garbage", genuine, genuine, genuine])
    await until(lambda: b.receiver.refused["replayed"] == 2)
    assert b.receiver.refused["forged"] == 2
    assert len(applied) == 1  # the genuine message, once
    a.publish("key", {"id": "x" * 5000})  # too large to be read: never sent, counted
    assert a.lost == 1


@pytest.mark.redis
async def test_a_message_recorded_off_the_wire_and_replayed_is_applied_once(
    redis_url: str,
) -> None:
    """A writer who can also read the channel (shown on Redis; a NOTIFY payload is the same
    signed message) records a genuine message and replays it verbatim."""
    backend = Backend("redis", redis_url, RedisBus, "")
    channel = f"keyguard-test:{secrets.token_hex(6)}"
    a = RedisBus(redis_url, KEY, "a", channel=channel)
    b = RedisBus(redis_url, KEY, "b", channel=channel)
    await a.start()
    await b.start()
    applied: list[Message] = []
    b.subscribe("block", applied.append)
    sniffer_client = aioredis.Redis.from_url(redis_url)
    recorded: list[bytes] = []
    try:
        async with sniffer_client.pubsub() as sniffer:
            await sniffer.subscribe(channel)
            a.publish("block", {"kind": "key", "name": "k", "until": 1})
            async with asyncio.timeout(10):
                async for item in sniffer.listen():
                    if isinstance(item.get("data"), bytes):
                        recorded.append(item["data"])
                        break
        await sniffer_client.aclose()
        await until(lambda: len(applied) == 1)
        await backend.inject(channel, recorded * 3)  # replayed verbatim
        await until(lambda: b.receiver.refused["replayed"] == 3)
        assert len(applied) == 1
    finally:
        await a.close()
        await b.close()


async def test_with_the_backend_down_publishing_never_waits_and_loss_is_counted(
    backend: Backend,
) -> None:
    bus = backend.make(backend.down_url, KEY, "lonely", flush_s=0.5)
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
