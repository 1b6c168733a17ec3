"""Fair share of the upstream pool, end to end: one app holding hundreds of slow requests
leaves room for the others.

The emulator is made slow with an injected latency on one deployment; every request that
reaches it takes the fault, so the fault's ``remaining`` count says how many the gateway let
through. At the end the emulator is stopped with a short shutdown timeout, which cuts the
held answers (the gateway answers them 502) instead of waiting for the latency to pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from keyguard.emulator import EmulatorConfig, RunningEmulator, start_emulator
from keyguard.server import Gateway
from tests.support.emulators import API_VERSION
from tests.support.gateway import start_gateway

from .sockets import chat, metric, sdk

SLOW = "gpt-4o"  # the deployment made slow; the other app calls another one
CHAT = f"/openai/deployments/{SLOW}/chat/completions?api-version={API_VERSION}"
BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


@pytest.fixture
async def slow_emulator() -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(EmulatorConfig(), shutdown_timeout=0.5)
    try:
        yield running
    finally:
        await running.stop()


async def make_slow(emulator: RunningEmulator, count: int) -> None:
    fault = {"latency_ms": 300_000, "count": count, "deployment": SLOW}
    async with aiohttp.ClientSession(headers=emulator.control_headers) as http:
        async with http.post(f"{emulator.url}/_emulator/faults", json=fault) as resp:
            assert resp.status == 201


async def reached(emulator: RunningEmulator, count: int) -> int:
    """How many requests have reached the emulator's slow deployment."""
    async with aiohttp.ClientSession(headers=emulator.control_headers) as http:
        async with http.get(f"{emulator.url}/_emulator/faults") as resp:
            faults = (await resp.json())["faults"]
    remaining: int = sum(f["remaining"] for f in faults)
    return count - remaining


async def new_key(gw: Gateway, app: str) -> str:
    """A new key, used once (so a burst on it finds it known)."""
    assert gw.runtime is not None
    key = (await gw.runtime.keys.create(app, now=datetime.now(UTC)))[1]
    assert await chat(gw.proxy_url, key, model="gpt-4o-mini")
    return key


class Flood:
    """Slow requests in flight, each a task that ends with (status, answer)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.tasks: list[asyncio.Task[tuple[int, Any]]] = []

    def send(self, key: str, count: int) -> None:
        for _ in range(count):
            self.tasks.append(asyncio.create_task(self._one(key)))

    async def _one(self, key: str) -> tuple[int, Any]:
        async with self._http.post(self._url + CHAT, headers={"api-key": key}, json=BODY) as r:
            return r.status, (await r.json(content_type=None), r.headers.get("retry-after"))

    def answered(self) -> list[tuple[int, Any]]:
        return [t.result() for t in self.tasks if t.done()]

    def held(self) -> list[asyncio.Task[tuple[int, Any]]]:
        return [t for t in self.tasks if not t.done()]

    async def wait(self, emulator: RunningEmulator, count: int) -> int:
        """Until every request is either answered or held upstream; how many are held."""
        async with asyncio.timeout(60):
            while True:
                at_upstream = await reached(emulator, count)
                if at_upstream + len(self.answered()) == len(self.tasks):
                    return at_upstream
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self._http.close()


async def test_one_app_holding_300_slow_requests_leaves_room_for_another(
    tmp_path: Path, slow_emulator: RunningEmulator
) -> None:
    """The issue's case, with the default configuration: 256 upstream connections."""
    gw = await start_gateway(tmp_path, slow_emulator.url, slow_emulator.keys()[0])
    share = gw.share
    assert share is not None
    flood = Flood(gw.proxy_url)
    try:
        hog_keys = [await new_key(gw, "hog") for _ in range(6)]
        victim = await new_key(gw, "victim")
        await make_slow(slow_emulator, 300)
        for key in hog_keys:
            flood.send(key, 50)
        held = await flood.wait(slow_emulator, 300)
        assert held == share.per_app == 128
        refused = flood.answered()
        assert len(refused) == 300 - held
        assert all(status == 429 and retry == "1" for status, (_, retry) in refused)
        assert all("This app already has" in a["error"]["message"] for _, (a, _) in refused)
        # Another app is served promptly, on the same upstream, while the hog holds its share.
        assert await chat(gw.proxy_url, victim, model="gpt-4o-mini")
        assert len(flood.held()) == held, "the hog's requests ended before the check"
    finally:
        await slow_emulator.stop()  # cuts the held answers
        await flood.close()
        await gw.stop()
    assert share.in_flight == 0  # every share given back


async def test_a_caller_and_its_app_each_have_a_share(
    tmp_path: Path, slow_emulator: RunningEmulator
) -> None:
    gw = await start_gateway(
        tmp_path, slow_emulator.url, slow_emulator.keys()[0], max_upstream_connections=8
    )
    flood = Flood(gw.proxy_url)
    try:
        assert gw.share is not None and (gw.share.per_caller, gw.share.per_app) == (2, 4)
        first, second, third = [await new_key(gw, "busy") for _ in range(3)]
        await make_slow(slow_emulator, 100)
        flood.send(first, 3)
        assert await flood.wait(slow_emulator, 100) == 2
        ((status, (answer, _)),) = flood.answered()
        assert status == 429 and "This credential already has 2" in answer["error"]["message"]
        flood.send(second, 2)
        assert await flood.wait(slow_emulator, 100) == 4
        # The app's share is used up: its third key is refused, through the SDK as well.
        async with sdk(gw.proxy_url, third) as client:
            with pytest.raises(openai.RateLimitError) as refused:
                await client.chat.completions.create(
                    model=SLOW, messages=[{"role": "user", "content": "hi"}], max_tokens=3
                )
        assert refused.value.response.headers["retry-after"] == "1"
        assert "This app already has 4" in refused.value.message
        other = await new_key(gw, "other")
        assert await chat(gw.proxy_url, other, model="gpt-4o-mini")  # another app is served
        assert len(flood.held()) == 4
        assert await metric(gw.admin_url, "keyguard_upstream_in_flight") == 4
        assert await metric(gw.admin_url, "keyguard_fair_share_refused") == 2
    finally:
        await slow_emulator.stop()
        await flood.close()
        await gw.stop()
