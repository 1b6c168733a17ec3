"""Fixtures for the emulator's tests: a running emulator on loopback and official SDK clients.

``emulator_config`` can be overridden per test with ``pytest.mark.parametrize``; ``clock`` is a
settable clock the emulator reads (tests move time with ``clock.advance``, never by sleeping).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import openai
import pytest

from keyguard.emulator import EmulatorConfig, RunningEmulator, start_emulator

API_VERSION = "2024-10-21"
CHAT_PATH = "/openai/deployments/gpt-4o/chat/completions?api-version=" + API_VERSION
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hello, world!"},
]


@dataclass
class FakeClock:
    now: float = 1_800_000_000.0  # on a minute boundary (divisible by 60)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig()


@pytest.fixture
async def emulator(emulator_config: EmulatorConfig) -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(emulator_config)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def clocked(
    emulator_config: EmulatorConfig, clock: FakeClock
) -> AsyncIterator[RunningEmulator]:
    """An emulator reading the fake ``clock``."""
    running = await start_emulator(emulator_config, clock=clock)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def azure(emulator: RunningEmulator) -> AsyncIterator[openai.AsyncAzureOpenAI]:
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=emulator.url,
        api_key=emulator.keys()[0],
        api_version=API_VERSION,
        max_retries=0,
    )
    async with client:
        yield client


@pytest.fixture
async def v1(emulator: RunningEmulator) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        base_url=emulator.url + "/openai/v1/", api_key=emulator.keys()[1], max_retries=0
    )
    async with client:
        yield client


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
