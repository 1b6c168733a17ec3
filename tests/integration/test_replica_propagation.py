"""How fast a change made on one replica is in force on the others: three ``keyguard serve``
processes on one PostgreSQL store and one Redis, every cache lifetime and poll set to a minute
so that only the replica bus can make a change visible in time.

For each kind of change (key created, revoked, suspended, resumed; policy granted and
withdrawn through the managed policy; a throttle put in place and lifted), ``CHANGES`` changes
are made, each on a different replica in turn, and the two other replicas are probed
concurrently until they answer as the change requires. The time from sending the change to
that answer is one sample; the 99th percentile of every kind must stay under 250 ms.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from keyguard.bus.redis import RedisBus
from keyguard.emulator.server import RunningEmulator
from tests.support.settings import free_port

from .cluster import Cluster, gateway_cluster
from .limited import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

CHANGES = 60  # 120 samples a kind: the p99 is the second slowest, not the slowest
P99_S = 0.250
SLOW_PROXY = {"access_log": False, "key_cache_ttl_s": 60}


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


async def visible(
    cluster: Cluster,
    origin: int,
    key: Callable[[], str],
    expected: set[int],
    change: Callable[[], Awaitable[Any]],
) -> list[tuple[float, float]]:
    """Make ``change`` (on replica ``origin``) and time, on each other replica, the first probe
    whose status is in ``expected``: (from the change's acknowledgement, from its sending)."""
    started = time.monotonic()
    done = asyncio.Event()

    acked = 0.0

    async def changed() -> None:
        nonlocal acked
        await change()
        acked = time.monotonic()
        done.set()

    async def watch(index: int) -> float:
        if not key():  # a key that the change itself creates
            await done.wait()
        while True:
            status = await cluster.probe(cluster.replicas[index], key())
            if status in expected:
                return time.monotonic()
            await asyncio.sleep(0.005)

    others = [i for i in range(len(cluster.replicas)) if i != origin]
    try:
        async with asyncio.timeout(30):
            change_done = asyncio.ensure_future(changed())
            seen = await asyncio.gather(*(watch(i) for i in others))
            await change_done
    except TimeoutError:
        tails = {r.name: r.log[-8:] for r in cluster.replicas}
        raise AssertionError(f"not visible within 30 s; the replicas' logs: {tails}") from None
    return [(max(0.0, at - acked), at - started) for at in seen]


async def test_every_kind_of_change_reaches_every_replica_within_250_ms_p99(
    tmp_path: Path, emulator: RunningEmulator, postgres_database: str
) -> None:
    redis = RedisServer(free_port(), tmp_path)
    await redis.start()
    policy = {"policy": {"managed": True, "reload_interval_s": 3600}}
    try:
        async with gateway_cluster(
            tmp_path,
            emulator,
            postgres_database,
            redis,
            access=policy,
            monitor={"respond": {"blocks_poll_s": 60}, "detect": {"enabled": False}},
            proxy=SLOW_PROXY,
        ) as c:
            role = {"operations": ["chat"], "deployments": ["gpt-4o"]}
            assert (await c.admin(0, "PUT", "/admin/policy/roles/chat", role))[0] == 200
            binding = {"role": "chat", "subjects": ["app:probe"]}
            assert (await c.admin(0, "PUT", "/admin/policy/bindings/probe", binding))[0] == 200
            publisher = RedisBus(
                redis.url,
                c.bus_key,
                "test-responder",
                channel=c.settings.cluster.channel,
                listen=False,
            )
            await publisher.start()
            samples: dict[str, list[tuple[float, float]]] = {}
            try:
                for i in range(CHANGES):
                    origin = i % 3
                    await one_round(c, origin, publisher, samples, i)
            finally:
                await publisher.close()
    finally:
        await redis.stop()
    report = {kind: summary(s) for kind, s in samples.items()}
    print("\npropagation, ms: p50 / p99 after the change was acknowledged, p99 after it was sent")
    for kind, (p50, p99_acked, p99_sent, n) in report.items():
        print(f"  {kind:18} {p50:7.1f} {p99_acked:7.1f} {p99_sent:7.1f}   ({n} samples)")
    slow = {kind: r for kind, r in report.items() if r[1] >= P99_S * 1000}
    assert not slow, f"p99 over 250 ms: {slow} (all: {report})"


def summary(samples: list[tuple[float, float]]) -> tuple[float, float, float, int]:
    acked = sorted(a for a, _ in samples)
    sent = [b for _, b in samples]
    return (
        round(acked[len(acked) // 2] * 1000, 1),
        round(p99(acked) * 1000, 1),
        round(p99(sent) * 1000, 1),
        len(samples),
    )


async def one_round(
    c: Cluster,
    origin: int,
    publisher: RedisBus,
    samples: dict[str, list[tuple[float, float]]],
    i: int,
) -> None:
    holder: dict[str, str] = {"key": "", "id": ""}

    async def create() -> None:
        status, body = await c.admin(origin, "POST", "/admin/keys", {"app": "probe"})
        assert status == 201, body
        holder["key"], holder["id"] = body["key"], body["key_id"]

    def key() -> str:
        return holder["key"]

    def note(kind: str, times: list[tuple[float, float]]) -> None:
        samples.setdefault(kind, []).extend(times)

    def change_key(change: str) -> Callable[[], Awaitable[Any]]:
        return lambda: c.admin(origin, "POST", f"/admin/keys/{holder['id']}/{change}")

    note("key created", await visible(c, origin, key, {200}, create))
    # every replica now holds the active record in its cache (a minute's lifetime)
    for path, expected, kind in (
        ("suspend", {401}, "key suspended"),
        ("resume", {200}, "key resumed"),
        ("revoke", {401}, "key revoked"),
    ):
        note(
            kind,
            await visible(
                c,
                origin,
                key,
                expected,
                change_key(path),
            ),
        )
    await create()
    for r in c.replicas:
        assert await c.probe(r, key()) == 200
    until = time.time() + 300

    async def block(until: float) -> None:
        publisher.publish("block", {"kind": "key", "name": holder["id"], "until": until})

    note("throttle", await visible(c, origin, key, {429}, lambda: block(until)))
    note("throttle lifted", await visible(c, origin, key, {200}, lambda: block(0)))
    # the policy: an app without a binding is refused (403) until one grants it
    app = f"p{i}-{secrets.token_hex(3)}"
    status, body = await c.admin(origin, "POST", "/admin/keys", {"app": app})
    holder["key"] = body["key"]
    for r in c.replicas:
        assert await c.probe(r, key()) == 403
    grant = {"role": "chat", "subjects": [f"app:{app}"]}
    note(
        "policy granted",
        await visible(
            c,
            origin,
            key,
            {200},
            lambda: c.admin(origin, "PUT", f"/admin/policy/bindings/{app}", grant),
        ),
    )
    note(
        "policy withdrawn",
        await visible(
            c,
            origin,
            key,
            {403},
            lambda: c.admin(origin, "DELETE", f"/admin/policy/bindings/{app}"),
        ),
    )
