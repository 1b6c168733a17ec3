"""Limits as a new user meets them: an app that sets no max_tokens under a small tpm, the
Responses API's own cap name, a small budget's figure, and a request refused during a limits
store outage that would pass once the store is back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from keyguard.emulator.server import RunningEmulator
from keyguard.limits.admission import money
from keyguard.server import Gateway
from tests.support.gateway import azure_client, new_key
from tests.support.settings import free_port

from .limited import counter, emulator_usage, limited_gateway

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
HI_PROMPT = 8


@pytest.fixture
def limits() -> dict[str, Any]:
    return {"rules": [{"scope": "key", "tpm": 2000}]}


@pytest.fixture
async def gw(
    tmp_path: Path, emulator: RunningEmulator, limits: dict[str, Any]
) -> AsyncIterator[Gateway]:
    async with limited_gateway(tmp_path, {"emu": emulator}, limits) as gateway:
        yield gateway


async def test_no_max_tokens_under_a_tpm_below_the_default_cap_passes(
    gw: Gateway, emulator: RunningEmulator
) -> None:
    key_id, key = await new_key(gw)
    async with azure_client(gw, key) as c:
        answer = await c.chat.completions.create(model="gpt-4o", messages=HI)
        stream = await c.chat.completions.create(model="gpt-4o", messages=HI, stream=True)
        _ = [chunk async for chunk in stream]
    assert answer.choices[0].message.content
    total = (await emulator_usage(emulator))["total"]["total_tokens"]
    assert counter(gw, f"key:{key_id}:tpm:") == total <= 2000


async def test_an_explicit_cap_above_the_limit_still_can_never_pass(gw: Gateway) -> None:
    _, key = await new_key(gw)
    async with azure_client(gw, key) as c:
        with pytest.raises(openai.RateLimitError) as caught:
            await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=4096)
    assert "can never pass" in caught.value.message and "max_tokens" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"


async def test_the_responses_api_is_told_its_own_cap_name(gw: Gateway) -> None:
    _, key = await new_key(gw)
    async with azure_client(gw, key) as c:
        with pytest.raises(openai.RateLimitError) as caught:
            await c.responses.create(model="gpt-4o", input="hi", max_output_tokens=5000)
    assert "max_output_tokens" in caught.value.message
    assert "max_tokens " not in caught.value.message


@pytest.mark.parametrize(
    "limits",
    [
        {
            "budgets": [{"scope": "app", "per_day": "0.0005"}],
            "prices": {
                "gpt-4o": {"input": "2.5", "output": "10"},
                "text-embedding-3-small": {"input": "0.02", "output": 0},
                "dall-e-3": {"input": 0, "output": 0},
            },
        }
    ],
)
async def test_a_small_budget_is_shown_as_configured(gw: Gateway) -> None:
    _, key = await new_key(gw, "frugal")
    async with azure_client(gw, key) as c:
        with pytest.raises(openai.RateLimitError) as caught:
            await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=100)
    assert "0.00102 USD" in caught.value.message and "limit of 0.0005 USD" in caught.value.message


def test_money() -> None:
    from decimal import Decimal

    assert [money(Decimal(v)) for v in ("50", "0.005", "1.25", "0.000001", "0")] == [
        "50.00",
        "0.005",
        "1.25",
        "0.000001",
        "0.00",
    ]


async def test_a_request_above_the_share_during_an_outage_is_retryable(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    limits = {
        "backend": f"redis://127.0.0.1:{free_port()}",  # nothing listens: an outage from the start
        "on_backend_failure": "local",
        "local_fallback_fraction": 0.5,
        "rules": [{"scope": "key", "tpm": 1000}],
    }
    async with limited_gateway(tmp_path, {"emu": emulator}, limits) as gateway:
        _, key = await new_key(gateway)
        async with azure_client(gateway, key) as c:
            await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=100)
            with pytest.raises(openai.RateLimitError) as caught:  # fits 1000, not 500
                await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=700)
            with pytest.raises(openai.RateLimitError) as never:  # fits neither
                await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=1500)
    assert "can never pass" not in caught.value.message
    assert "unreachable" in caught.value.message
    assert caught.value.response.headers.get("x-should-retry") != "false"
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert "can never pass" in never.value.message
