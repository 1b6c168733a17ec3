"""Several backends per deployment: failover on 429 and on connection failure, never mid-answer."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from keyguard.emulator.config import EmulatorConfig
from keyguard.emulator.server import RunningEmulator, start_emulator
from keyguard.server import Gateway
from tests.support.gateway import azure_client, new_key
from tests.support.settings import upstream

from .limited import add_fault, emulator_usage, limited_gateway

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def pair() -> AsyncIterator[tuple[RunningEmulator, RunningEmulator]]:
    first = await start_emulator(EmulatorConfig())
    second = await start_emulator(EmulatorConfig(stream_delay=0.01))
    try:
        yield first, second
    finally:
        await first.stop()
        await second.stop()


@pytest.fixture
async def gw(
    tmp_path: Path, pair: tuple[RunningEmulator, RunningEmulator]
) -> AsyncIterator[Gateway]:
    first, second = pair
    async with limited_gateway(
        tmp_path,
        {"east": first, "west": second},
        {},
        upstreams=[
            upstream(first.url, name="east", deployments={"gpt-4o": {"priority": 0}}),
            upstream(second.url, name="west", deployments={"gpt-4o": {"priority": 1}}),
        ],
    ) as gateway:
        yield gateway


async def requests(emulator: RunningEmulator) -> tuple[int, int]:
    total = (await emulator_usage(emulator))["total"]
    return total["requests"], total["failed"]


async def test_a_429_fails_over_and_the_backend_stays_out_for_its_retry_after(
    gw: Gateway, pair: tuple[RunningEmulator, RunningEmulator]
) -> None:
    first, second = pair
    _, key = await new_key(gw)
    async with azure_client(gw, key) as c:
        await c.chat.completions.create(model="gpt-4o", messages=HI)
        assert await requests(first) == (1, 0)  # priority 0 first
        await add_fault(first, {"status": 429, "retry_after": 30, "count": 1})
        answer = await c.chat.completions.create(model="gpt-4o", messages=HI)
        assert answer.choices[0].message.content
        assert await requests(first) == (1, 1)
        assert await requests(second) == (1, 0)
        # The first backend is out for 30 s: the next requests go straight to the second.
        await c.chat.completions.create(model="gpt-4o", messages=HI)
        assert await requests(first) == (1, 1)
        assert await requests(second) == (2, 0)


async def test_when_every_backend_is_out_the_client_gets_azures_429(
    gw: Gateway, pair: tuple[RunningEmulator, RunningEmulator]
) -> None:
    first, second = pair
    _, key = await new_key(gw)
    await add_fault(first, {"status": 429, "retry_after": 20})
    await add_fault(second, {"status": 429, "retry_after": 10})
    async with azure_client(gw, key) as c:
        with pytest.raises(openai.RateLimitError) as caught:
            await c.chat.completions.create(model="gpt-4o", messages=HI)
        assert caught.value.response.headers["retry-after"] == "10"  # the last backend's own
        with pytest.raises(openai.RateLimitError) as caught:
            await c.chat.completions.create(model="gpt-4o", messages=HI)
    assert "Every backend of this deployment is" in caught.value.message
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 10
    assert await requests(first) == (0, 1) and await requests(second) == (0, 1)


async def test_an_unreachable_backend_fails_over(
    gw: Gateway, pair: tuple[RunningEmulator, RunningEmulator]
) -> None:
    first, second = pair
    _, key = await new_key(gw)
    await first.stop()
    async with azure_client(gw, key) as c:
        await c.chat.completions.create(model="gpt-4o", messages=HI)
    assert await requests(second) == (1, 0)


async def test_a_connection_cut_before_the_answer_fails_over(
    gw: Gateway, pair: tuple[RunningEmulator, RunningEmulator]
) -> None:
    first, second = pair
    _, key = await new_key(gw)
    await add_fault(first, {"drop": "before_response"})
    async with azure_client(gw, key) as c:
        await c.chat.completions.create(model="gpt-4o", messages=HI)
    assert await requests(second) == (1, 0)


async def test_nothing_is_retried_once_the_client_has_received_bytes(
    tmp_path: Path, pair: tuple[RunningEmulator, RunningEmulator]
) -> None:
    first, second = pair
    async with limited_gateway(
        tmp_path,
        {"east": first, "west": second},
        {},
        upstreams=[
            upstream(second.url, name="west", deployments={"gpt-4o": {"priority": 0}}),
            upstream(first.url, name="east", deployments={"gpt-4o": {"priority": 1}}),
        ],
    ) as gateway:
        _, key = await new_key(gateway)
        await add_fault(second, {"drop": "mid_stream", "after_chunks": 3})
        async with azure_client(gateway, key) as c:
            stream = await c.chat.completions.create(model="gpt-4o", messages=HI, stream=True)
            with pytest.raises(openai.APIError):
                _ = [chunk async for chunk in stream]
        assert await requests(first) == (0, 0)  # the broken stream was not replayed elsewhere


async def test_weights_spread_requests_among_equal_priorities(
    tmp_path: Path, pair: tuple[RunningEmulator, RunningEmulator]
) -> None:
    first, second = pair
    async with limited_gateway(
        tmp_path,
        {"east": first, "west": second},
        {},
        upstreams=[
            upstream(first.url, name="east", deployments={"gpt-4o": {"weight": 3}}),
            upstream(second.url, name="west", deployments={"gpt-4o": {"weight": 1}}),
        ],
    ) as gateway:
        assert gateway.pool is not None
        gateway.pool._rng = random.Random(7)  # a fixed draw: the test is deterministic
        _, key = await new_key(gateway)
        async with azure_client(gateway, key) as c:
            for _ in range(40):
                await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=1)
        east, west = (await requests(first))[0], (await requests(second))[0]
        assert east + west == 40
        assert east > west > 0
