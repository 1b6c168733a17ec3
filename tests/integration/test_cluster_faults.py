"""Faults under load, three ``keyguard serve`` replicas on one PostgreSQL store and one Redis of
the test's own (limits and the replica bus):

1. a replica is killed with SIGKILL while streams run through it, then started again;
2. another replica's config file is changed (``proxy.max_body_bytes``) and it is reloaded with
   SIGHUP under load: the new value is in force there (a larger body is refused with 413
   naming it) and every worker serves the new generation;
3. Redis restarts empty (no persistence) while clients keep sending.

Clients send chat requests, half of them streamed, round robin over the replicas, against a
per-app monthly token quota, until the quota refuses everything. Asserted:

* nothing is admitted above the quota: the tokens the upstream served stay within it;
* no audit record is lost for an answered request (a request answered by the killed replica
  in its last ``flush_interval_s`` before the kill excepted: that bound is documented);
* clients only ever see answers, 429, 503 with ``Retry-After`` and, from the killed replica
  while it is down, connection errors: all of them retryable.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from keyguard.emulator.config import EmulatorConfig
from keyguard.emulator.server import RunningEmulator
from keyguard.limits.windows import window
from keyguard.store.schema import audit_records, limit_counters
from tests.support.settings import free_port
from tests.support.stored import record_text

from .cluster import CHAT, Cluster, Replica, gateway_cluster
from .limited import RedisServer, emulator_usage

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

QUOTA = 12_000  # tokens per month for the app (a calendar window: see windows_spanned)
WORKERS = 6
FLUSH_S = 0.2  # monitor.audit.flush_interval_s


@dataclass
class Outcome:
    replica: int
    status: int  # 0: a connection error or a stream cut
    request_id: str
    answered_at: float
    retry_after: str | None = None


class Load:
    """Clients sending round robin over the replicas until stopped."""

    def __init__(self, cluster: Cluster, key: str) -> None:
        self.cluster = cluster
        self.key = key
        self.outcomes: list[Outcome] = []
        self.in_flight = [0] * len(cluster.replicas)
        self._next = itertools.count()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._stop.clear()
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(WORKERS)]

    async def stop(self) -> None:
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        await asyncio.gather(*tasks)

    def statuses(self, since: int = 0) -> list[int]:
        return [o.status for o in self.outcomes[since:]]

    async def _worker(self) -> None:
        while not self._stop.is_set():
            n = next(self._next)
            index = n % len(self.cluster.replicas)
            await self._send(index, self.cluster.replicas[index], stream=n % 2 == 0)

    async def _send(self, index: int, replica: Replica, *, stream: bool) -> None:
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": 20,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        self.in_flight[index] += 1
        try:
            if not replica.url:
                raise aiohttp.ClientConnectionError("the replica is down")
            async with self.cluster.http.post(
                replica.url + CHAT, json=body, headers={"api-key": self.key}
            ) as resp:
                await resp.read()
                self.outcomes.append(
                    Outcome(
                        index,
                        resp.status,
                        resp.headers.get("x-keyguard-request-id", ""),
                        time.monotonic(),
                        resp.headers.get("retry-after"),
                    )
                )
        except (aiohttp.ClientError, ConnectionError):
            self.outcomes.append(Outcome(index, 0, "", time.monotonic()))
            await asyncio.sleep(0.05)  # as a client backs off before retrying
        finally:
            self.in_flight[index] -= 1
        if self.outcomes[-1].status in (429, 503):
            await asyncio.sleep(0.02)


NEW_MAX_BODY = 2048  # proxy.max_body_bytes after the reload (the load's bodies are far smaller)


async def reload_configuration(cluster: Cluster, index: int, key: str) -> int:
    """Change a value in one replica's config file, SIGHUP it, and wait until the new value is
    in force there: a body over the new ``proxy.max_body_bytes`` is refused with 413 naming it,
    and every worker serves the new generation (``/livez``). The generation it serves now."""
    replica = cluster.replicas[index]
    before = await generation(cluster, replica)
    config = yaml.safe_load(replica.config.read_text())
    config.setdefault("proxy", {})["max_body_bytes"] = NEW_MAX_BODY
    replica.config.write_text(yaml.safe_dump(config))
    await replica.signal(signal.SIGHUP)
    body = {"messages": [{"role": "user", "content": "x" * (2 * NEW_MAX_BODY)}], "max_tokens": 1}

    async def refused() -> bool:
        async with cluster.http.post(
            replica.url + CHAT, json=body, headers={"api-key": key}
        ) as resp:
            text = await resp.text()
        assert resp.status in (200, 413, 429), (resp.status, text)  # the old value or the new
        return resp.status == 413 and f"limit of {NEW_MAX_BODY} bytes" in text

    await until(refused, 120, f"max_body_bytes {NEW_MAX_BODY} in force after SIGHUP")
    await until(lambda: _newer(cluster, replica, before), 120, "every worker on the new generation")
    return await generation(cluster, replica)


async def generation(cluster: Cluster, replica: Replica) -> int:
    async with cluster.http.get(replica.admin_url + "/livez") as resp:
        found = (await resp.json())["generation"]
    assert isinstance(found, int)
    return found


async def _newer(cluster: Cluster, replica: Replica, before: int) -> bool:
    # several answers in a row: a connection to a retiring worker would still say ``before``
    seen = [await generation(cluster, replica) for _ in range(8)]
    return all(g > before for g in seen)


async def until(condition: Any, seconds: float, what: str) -> None:
    try:
        async with asyncio.timeout(seconds):
            while not await condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.mark.parametrize(
    "emulator_config",
    [EmulatorConfig(stream_delay=0.02, default_completion_tokens=20)],
    ids=["streams-of-20-chunks"],
)
async def test_no_admission_above_the_limit_no_audit_lost_and_only_retryable_errors(
    tmp_path: Path, emulator: RunningEmulator, postgres_database: str
) -> None:
    redis = RedisServer(free_port(), tmp_path)
    await redis.start()
    limits = {
        "backend": redis.url,
        "persist_interval_s": 0.2,
        "rules": [{"scope": "app", "name": "load", "tokens_per_month": QUOTA}],
    }
    store = create_async_engine(postgres_database.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with gateway_cluster(
            tmp_path,
            emulator,
            postgres_database,
            redis,
            limits=limits,
            monitor={"detect": {"enabled": False}, "audit": {"flush_interval_s": FLUSH_S}},
        ) as c:
            status, body = await c.admin(0, "POST", "/admin/keys", {"app": "load"})
            assert status == 201, body
            load = Load(c, body["key"])
            started = time.time()
            load.start()
            try:
                # 1. SIGKILL a replica while streams run through it, then start it again
                await until(lambda: _true(load.in_flight[2] >= 2), 30, "streams in flight on r2")
                await asyncio.sleep(0.1)  # some of them mid-stream
                killed_at = time.monotonic()
                await c.replicas[2].kill()
                c.replicas[2].url = ""
                await c.replicas[2].start()
                back_at = time.monotonic()

                # 2. change the configuration of another replica and reload it (SIGHUP)
                reloaded = await reload_configuration(c, 0, body["key"])

                # 3. Redis restarts empty while clients keep sending
                await load.stop()
                await until(lambda: saved_everything(redis, store), 30, "the counters saved")
                before_restart = len(load.outcomes)
                await redis.stop()
                load.start()
                await until(lambda: _true(503 in load.statuses(before_restart)), 30, "a 503")
                await redis.start()
                # until the quota refuses every request
                await until(lambda: _true(exhausted(load)), 120, "the quota to be used up")
                await load.stop()
            finally:
                await load.stop()
            ended = time.time()
        # the cluster is stopped: every surviving replica flushed its audit
        usage = (await emulator_usage(emulator))["total"]
        recorded = await audit_request_ids(store)
    finally:
        await store.dispose()
        await redis.stop()

    outcomes = load.outcomes
    statuses = {o.status for o in outcomes}
    assert statuses <= {0, 200, 429, 503}, statuses
    assert all(o.retry_after for o in outcomes if o.status in (429, 503))
    down = [o for o in outcomes if o.status == 0]
    assert all(o.replica == 2 and killed_at - 1 <= o.answered_at <= back_at for o in down)
    # nothing above the quota: the upstream served no more tokens than the quota holds (in
    # each window the run saw: a run across the turn of a month gets a fresh quota there)
    assert usage["total_tokens"] <= QUOTA * windows_spanned(started, ended), usage
    assert usage["total_tokens"] > QUOTA - 200  # and the quota was indeed used up
    # no audit record lost for an answered request
    answered = [o for o in outcomes if o.status == 200]
    missing = [o for o in answered if o.request_id not in recorded]
    excused = [o for o in missing if o.replica == 2 and o.answered_at <= killed_at]
    assert [o for o in missing if o not in excused] == []
    assert all(killed_at - o.answered_at <= FLUSH_S + 0.5 for o in excused)
    print(
        f"\n{len(outcomes)} requests: {len(answered)} answered, "
        f"{sum(o.status == 429 for o in outcomes)} 429, {sum(o.status == 503 for o in outcomes)} "
        f"503, {len(down)} connection errors; {usage['total_tokens']} of {QUOTA} tokens; "
        f"{len(excused)} records lost with the killed replica; r0 reloaded to generation "
        f"{reloaded}"
    )


async def _true(value: bool) -> bool:
    return value


def exhausted(load: Load) -> bool:
    last = load.statuses()[-3 * WORKERS :]
    return len(last) == 3 * WORKERS and all(s == 429 for s in last)


def windows_spanned(started: float, ended: float) -> int:
    """How many month windows the quota counted in between ``started`` and ``ended``."""
    return 1 if window("month", started) == window("month", ended) else 2


async def saved_everything(redis: RedisServer, store: Any) -> bool:
    """Whether the store holds every quota counter at its level in Redis."""
    client = aioredis.Redis.from_url(redis.url)
    try:
        live = {}
        async for key in client.scan_iter(match="*:tpmo:*"):
            value = await client.get(key)
            live[key.decode().split("}:", 1)[-1]] = int(value or 0)
    finally:
        await client.aclose()
    async with store.connect() as conn:
        rows = (await conn.execute(select(limit_counters.c.key, limit_counters.c.level))).all()
    saved = {key: int(level) for key, level in rows}
    return bool(live) and all(saved.get(k) == v for k, v in live.items())


async def audit_request_ids(store: Any) -> set[str]:
    async with store.connect() as conn:
        rows = (await conn.execute(select(audit_records.c.data, audit_records.c.packed))).all()
    found = set()
    for data, packed in rows:
        record = orjson.loads(record_text(data, packed))
        rid = record.get("request_id") if isinstance(record, dict) else None
        if isinstance(rid, str):
            found.add(rid)
    return found
