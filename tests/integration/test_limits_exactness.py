"""Exactness across replicas: three ``keyguard serve`` processes, one Redis, one emulator.

400 concurrent requests of random sizes (streaming and not) against a 20,000 tokens-per-minute
limit. Every reservation and settlement is journaled by the Lua scripts themselves, in the
order Redis applied them; replaying the journal proves that:

* at every admission, the window's settled usage plus the estimates in flight plus the new
  estimate stayed within 20,000 (so the admitted estimates never exceeded the limit at any
  instant), and the levels Redis saw are the ones the replay computes;
* after settlement the recorded totals equal the emulator's own usage totals, to the token.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from keyguard.emulator.config import EmulatorConfig
from keyguard.emulator.server import RunningEmulator
from keyguard.wiring.runtime import open_runtime
from tests.support.emulators import API_VERSION
from tests.support.gateway import store_secrets
from tests.support.settings import keyguard_config, keyguard_settings, upstream, write_config

from .limited import LIMITED, emulator_usage

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TPM = 20_000
REQUESTS = 400
REPLICAS = 3
_READY = re.compile(r"keyguard proxy on (http://\S+),")


class Replica:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.url = ""
        self.log: list[str] = []
        self._ready = asyncio.Event()

    async def start(self) -> None:
        exe = Path(sys.executable).with_name("keyguard")
        self.proc = await asyncio.create_subprocess_exec(
            str(exe),
            "serve",
            "--config",
            str(self.config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if not k.startswith("KEYGUARD_")},
        )
        self._reader = asyncio.create_task(self._read())
        async with asyncio.timeout(240):  # a busy 2-core machine starts three slowly
            await self._ready.wait()

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            match = _READY.search(line)
            if match:
                self.url = match.group(1)
                self._ready.set()
        self._ready.set()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        await self._reader


async def send(
    http: aiohttp.ClientSession, base: str, key: str, rng: random.Random
) -> tuple[int, bool]:
    words = " ".join(
        rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(rng.randint(1, 600))
    )
    stream = rng.random() < 0.5
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": words}],
        "max_tokens": rng.randint(1, 400),
        "stream": stream,
    }
    if stream and rng.random() < 0.5:
        body["stream_options"] = {"include_usage": True}
    url = f"{base}/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"
    async with http.post(url, json=body, headers={"api-key": key}) as resp:
        await resp.read()
        return resp.status, stream


def replay(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Check the journal; return the settled total of every counter."""
    level: dict[str, int] = defaultdict(int)
    inflight: dict[str, dict[str, int]] = defaultdict(dict)  # key -> rid -> estimate
    for entry in entries:
        keys, amounts = entry["keys"], entry["amounts"]
        if entry["op"] == "reserve":
            for key, amount, seen, limit in zip(
                keys, amounts, entry["levels"], entry["limits"], strict=True
            ):
                assert seen == level[key], "Redis and the replay disagree"
                assert level[key] + amount <= limit, "admitted over the limit"
                level[key] += amount
                inflight[key][entry["rid"]] = amount
                assert sum(inflight[key].values()) <= limit
        elif entry["op"] in ("settle", "cancel"):
            for key, delta, after in zip(keys, amounts, entry["levels"], strict=True):
                level[key] += delta
                assert after == level[key]
                inflight[key].pop(entry["rid"])
        else:
            assert entry["op"] == "refuse"
            assert any(
                seen + amount > limit
                for seen, amount, limit in zip(
                    entry["levels"], amounts, entry["limits"], strict=True
                )
            )
    assert all(not rids for rids in inflight.values()), "a reservation was never settled"
    return dict(level)


@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(default_completion_tokens=40)], ids=["40-token-answers"]
)
async def test_three_replicas_hold_a_shared_tpm_limit_exactly(
    tmp_path: Path, emulator: RunningEmulator, redis_url: str, redis_prefix: str
) -> None:
    limits = {
        "backend": redis_url,
        "redis_key_prefix": redis_prefix,
        "journal_max_len": 100_000,
        "rules": [{"scope": "global", "tpm": TPM}],
    }
    options: dict[str, Any] = {
        "upstreams": [upstream(emulator.url, name="emu", deployments=LIMITED)],
        "limits": limits,
        "proxy": {"access_log": False},
    }
    settings = keyguard_settings(tmp_path, **options)
    await store_secrets(settings, {"upstream/emu": emulator.keys()[0]})
    rt = await open_runtime(settings, {})
    try:
        _, key = await rt.keys.create("exact", now=datetime.now(UTC))
    finally:
        await rt.close()
    replicas = [
        Replica(write_config(tmp_path, keyguard_config(tmp_path, **options), f"replica{i}.yaml"))
        for i in range(REPLICAS)
    ]
    try:
        await asyncio.gather(*(r.start() for r in replicas))
        assert all(r.url for r in replicas), [r.log[-5:] for r in replicas]
        rng = random.Random(20_000)
        connector = aiohttp.TCPConnector(limit=REQUESTS)
        async with aiohttp.ClientSession(connector=connector) as http:
            results = await asyncio.gather(
                *(send(http, replicas[i % REPLICAS].url, key, rng) for i in range(REQUESTS))
            )
        statuses = [status for status, _ in results]
        # 503 only if a replica could not reach Redis in time (fail closed; none expected).
        assert set(statuses) <= {200, 429, 503}, statuses
        admitted = statuses.count(200)
        assert admitted > 0 and statuses.count(429) > 0

        client = aioredis.Redis.from_url(redis_url)
        try:
            journal = redis_prefix + "journal"

            async def entries() -> list[dict[str, Any]]:
                raw: Any = await client.xrange(journal)
                return [orjson.loads(fields[b"d"]) for _, fields in raw]

            # A stream's settlement may land just after its last byte reached the client.
            async with asyncio.timeout(120):
                while True:
                    log = await entries()
                    ops = Counter(e["op"] for e in log)
                    if ops["settle"] + ops["cancel"] >= ops["reserve"]:
                        break
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        assert ops["reserve"] - ops["cancel"] == admitted, (ops, Counter(statuses))
        assert ops["settle"] == admitted
        assert ops["refuse"] == statuses.count(429)
        totals = replay(log)
        usage = (await emulator_usage(emulator))["total"]
        assert usage["requests"] == admitted and usage["failed"] == 0
        assert sum(totals.values()) == usage["total_tokens"]
    finally:
        await asyncio.gather(*(r.stop() for r in replicas))
