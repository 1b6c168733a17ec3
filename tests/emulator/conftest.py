"""Fixtures for the emulator's tests: official SDK clients of the shared ``emulator`` fixture
(tests/support/fixtures.py; its ``emulator_config`` is overridden per test with
``pytest.mark.parametrize``), and an emulator reading a settable clock: ``clocked`` reads the
shared ``clock``, which tests move with ``clock.advance``, never by sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from keyguard.emulator import EmulatorConfig, RunningEmulator, start_emulator
from tests.support.clock import FakeClock
from tests.support.emulators import API_VERSION

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hello, world!"},
]


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
