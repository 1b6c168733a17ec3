"""Rate limits: the pure window arithmetic, then 429s over loopback with a fake clock."""

from __future__ import annotations

from types import MappingProxyType

import aiohttp
import openai
import pytest

from keyguard.emulator import DeploymentSpec, EmulatorConfig, RunningEmulator
from keyguard.emulator.ratelimit import UNLIMITED, Limits, Windows, decide, estimate_cost
from tests.support.clock import FakeClock
from tests.support.emulators import API_VERSION, CHAT_PATH

T0 = 1_800_000_000.0  # a minute boundary


def test_estimate_cost() -> None:
    assert estimate_cost(10, 5) == 15
    assert estimate_cost(10, None, default_max_tokens=100) == 110
    assert estimate_cost(10, 5, choices=3) == 25


def test_token_window_charges_until_the_minute_ends() -> None:
    limits = Limits(tpm=100)
    first = decide(Windows(), limits, T0 + 1, 60)
    assert first.allowed and first.remaining_tokens == 40
    assert first.remaining_requests == UNLIMITED
    refused = decide(first.windows, limits, T0 + 59.5, 50)
    assert not refused.allowed and refused.exceeded == "token"
    assert refused.retry_after_ms == 500
    assert refused.windows.tokens_used == 60  # a refused request is not charged
    exact = decide(refused.windows, limits, T0 + 59.9, 40)
    assert exact.allowed and exact.remaining_tokens == 0
    fresh = decide(exact.windows, limits, T0 + 60, 100)
    assert fresh.allowed and fresh.remaining_tokens == 0


def test_request_windows_are_ten_seconds_of_rpm_over_six() -> None:
    limits = Limits(rpm=60)  # 10 per 10 s
    windows = Windows()
    for count in range(10):
        decision = decide(windows, limits, T0 + 3, 0)
        assert decision.allowed and decision.remaining_requests == 9 - count
        windows = decision.windows
    refused = decide(windows, limits, T0 + 3, 0)
    assert not refused.allowed and refused.exceeded == "call"
    assert refused.retry_after_ms == 7000
    assert decide(refused.windows, limits, T0 + 10, 0).allowed


def test_small_rpm_uses_a_minute_window() -> None:
    limits = Limits(rpm=2)
    first = decide(Windows(), limits, T0, 0)
    second = decide(first.windows, limits, T0 + 30, 0)
    third = decide(second.windows, limits, T0 + 45, 0)
    assert first.allowed and second.allowed and not third.allowed
    assert third.retry_after_ms == 15_000


def test_rpm_is_derived_from_tpm_like_azure() -> None:
    assert DeploymentSpec("chat", "m", tpm=10_000).effective_rpm == 60
    assert DeploymentSpec("chat", "m", tpm=10_000, rpm=0).effective_rpm == 0


TINY = EmulatorConfig(
    deployments=MappingProxyType(
        {
            "gpt-4o": DeploymentSpec("chat", "gpt-4o-2024-11-20", tpm=100, rpm=0),
            "slow": DeploymentSpec("chat", "gpt-4o-2024-11-20", rpm=6),
        }
    )
)
BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 40}  # 7 + 40 = 47


@pytest.mark.parametrize("emulator_config", [TINY])
async def test_tpm_429_over_loopback(
    clocked: RunningEmulator, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    headers = {"api-key": clocked.keys()[0]}
    remaining = []
    for _ in range(2):
        async with http.post(clocked.url + CHAT_PATH, json=BODY, headers=headers) as response:
            assert response.status == 200
            remaining.append(response.headers["x-ratelimit-remaining-tokens"])
    assert remaining == ["53", "6"]
    clock.advance(15.2)
    async with http.post(clocked.url + CHAT_PATH, json=BODY, headers=headers) as response:
        assert response.status == 429
        body = await response.json()
        got = response.headers
    assert got["retry-after"] == "45"
    assert got["retry-after-ms"] == "44800"
    assert got["x-ratelimit-reset-tokens"] == "45"
    assert body == {
        "error": {
            "code": "429",
            "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API "
            f"version {API_VERSION} have exceeded token rate limit of your current OpenAI S0 "
            "pricing tier. Please retry after 45 seconds. Please go here: "
            "https://aka.ms/oai/quotaincrease if you would like to further increase the "
            "default rate limit.",
        }
    }
    clock.advance(45)
    async with http.post(clocked.url + CHAT_PATH, json=BODY, headers=headers) as response:
        assert response.status == 200
    usage = clocked.state.usage_view()["deployments"]["gpt-4o"]
    assert usage["requests"] == 3 and usage["failed"] == 1


@pytest.mark.parametrize("emulator_config", [TINY])
async def test_rpm_429_through_the_sdk(clocked: RunningEmulator, clock: FakeClock) -> None:
    client = openai.AsyncOpenAI(
        base_url=clocked.url + "/openai/v1/", api_key=clocked.keys()[0], max_retries=0
    )
    async with client:
        await client.chat.completions.create(model="slow", messages=BODY["messages"])  # type: ignore[call-overload]
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="slow", messages=BODY["messages"])  # type: ignore[call-overload]
        assert "exceeded call rate limit" in caught.value.message
        assert "API version v1" in caught.value.message
        assert caught.value.response.headers["x-ratelimit-reset-requests"] == "10"
        clock.advance(10)
        await client.chat.completions.create(model="slow", messages=BODY["messages"])  # type: ignore[call-overload]
