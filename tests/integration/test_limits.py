"""Limits end to end (in-process backend): reserve, refuse in Azure's shape, settle on usage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from keyguard.emulator.config import EmulatorConfig
from keyguard.emulator.server import RunningEmulator
from keyguard.events import Event, SecurityEvent
from keyguard.limits.tokenizer import load_encoding
from keyguard.limits.windows import window
from keyguard.server import Gateway
from tests.support.gateway import azure_client, new_key

from .limited import counter, emulator_usage, freeze, limited_gateway, memory

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
HI_PROMPT = 3 + 1 + 1 + 3  # message overhead, "user", "hi", reply priming (o200k_base)


@pytest.fixture
def limits() -> dict[str, Any]:
    return {"rules": [{"scope": "key", "tpm": 1000, "rpm": 100}], "journal_max_len": 1000}


@pytest.fixture
async def gw(
    tmp_path: Path, emulator: RunningEmulator, limits: dict[str, Any]
) -> AsyncIterator[Gateway]:
    async with limited_gateway(tmp_path, {"emu": emulator}, limits) as gateway:
        yield gateway


@pytest.mark.parametrize(
    "limits",
    [
        {"rules": [{"scope": "key", "tpm": 1000, "rpm": 100}], "journal_max_len": 1000},
        # every prompt counted in the worker thread, as a large one would be
        {"rules": [{"scope": "key", "tpm": 1000, "rpm": 100}], "large_prompt_chars": 0},
    ],
    ids=["on-the-loop", "in-a-thread"],
)
async def test_admitted_requests_are_settled_on_the_reported_usage(gw: Gateway) -> None:
    key_id, key = await new_key(gw)
    async with azure_client(gw, key) as c:
        raw = await c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=HI, max_tokens=7
        )
    answer = raw.parse()
    assert answer.usage is not None
    # Reserved: prompt estimate + max_tokens; settled: what Azure reported.
    assert raw.headers["x-ratelimit-remaining-tokens"] == str(1000 - HI_PROMPT - 7)
    assert raw.headers["x-ratelimit-remaining-requests"] == "99"
    assert counter(gw, f"key:{key_id}:tpm:") == answer.usage.total_tokens
    assert counter(gw, f"key:{key_id}:rpm:") == 1


async def test_over_the_limit_is_azures_429_and_reserves_nothing(gw: Gateway) -> None:
    key_id, key = await new_key(gw)
    async with azure_client(gw, key) as c:
        await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=900)
        used = counter(gw, f"key:{key_id}:tpm:")
        with pytest.raises(openai.RateLimitError) as caught:
            await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=1000 - used)
        err = caught.value
        assert err.status_code == 429
        assert err.body is not None and err.body["code"] == "429"  # type: ignore[index]
        assert "tokens per minute of key" in err.message
        seconds = int(err.response.headers["retry-after"])
        assert 1 <= seconds <= 60
        assert 0 < int(err.response.headers["retry-after-ms"]) <= seconds * 1000
        assert err.response.headers["x-ratelimit-remaining-tokens"] == str(1000 - used)
        assert counter(gw, f"key:{key_id}:tpm:") == used  # the refusal charged nothing
        # What still fits, fits exactly.
        fits = 1000 - used - HI_PROMPT
        await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=fits)


async def test_a_request_that_can_never_fit_says_so(gw: Gateway) -> None:
    _, key = await new_key(gw)
    async with azure_client(gw, key) as c:
        with pytest.raises(openai.RateLimitError) as caught:
            await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=5000)
    assert "can never pass" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    "limits", [{"rules": [{"scope": "app", "tpm": 100_000}], "default_max_tokens": 5}]
)
async def test_the_default_cap_is_injected_when_the_app_sets_none(
    gw: Gateway, emulator: RunningEmulator
) -> None:
    _, key = await new_key(gw, "capped")
    async with azure_client(gw, key) as c:
        answer = await c.chat.completions.create(model="gpt-4o", messages=HI)
        stream = await c.chat.completions.create(model="gpt-4o", messages=HI, stream=True)
        chunks = [chunk async for chunk in stream]
    assert answer.usage is not None and answer.usage.completion_tokens == 5  # the emulator obeyed
    assert answer.choices[0].finish_reason == "length"
    assert all(chunk.usage is None for chunk in chunks)  # the usage chunk stays stripped
    assert (
        counter(gw, "app:capped:tpm:") == (await emulator_usage(emulator))["total"]["total_tokens"]
    )


async def test_streaming_settles_on_the_usage_chunk_even_when_stripped(
    gw: Gateway, emulator: RunningEmulator
) -> None:
    key_id, key = await new_key(gw)
    async with azure_client(gw, key) as c:
        stream = await c.chat.completions.create(
            model="gpt-4o", messages=HI, stream=True, max_tokens=12
        )
        chunks = [chunk async for chunk in stream]
        assert all(chunk.usage is None for chunk in chunks)
        stream = await c.chat.completions.create(
            model="gpt-4o",
            messages=HI,
            stream=True,
            max_tokens=9,
            stream_options={"include_usage": True},
        )
        reported = [chunk.usage async for chunk in stream if chunk.usage is not None]
    assert len(reported) == 1
    total = (await emulator_usage(emulator))["total"]["total_tokens"]
    assert counter(gw, f"key:{key_id}:tpm:") == total
    assert reported[0].total_tokens == HI_PROMPT + 9 - 1  # the emulator counts "hi" as 1 + 2x3 + 3


# Streams of 200 chunks 50 ms apart: long enough to leave or to overlap.
SLOW = EmulatorConfig(stream_delay=0.05, default_completion_tokens=200)


@pytest.mark.parametrize("emulator_config", [SLOW], ids=["slow-stream"])
async def test_a_client_that_disconnects_mid_stream_is_charged_for_what_it_received(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    # the guardrails off: their hold-back releases text in steps, so what a client has read
    # lags what was written by up to a step (their own tests: test_guardrails_answers.py)
    async with limited_gateway(
        tmp_path,
        {"emu": emulator},
        {"rules": [{"scope": "app", "tpm": 100_000}]},
        guardrails={"enabled": False},
    ) as gateway:
        backend = memory(gateway)
        settled = asyncio.Event()
        original = backend.settle_now

        def settle_and_tell(*args: Any) -> tuple[int, ...]:
            result = original(*args)
            settled.set()
            return result

        backend.settle_now = settle_and_tell  # type: ignore[method-assign,assignment]
        _, key = await new_key(gateway, "leaver")
        received: list[str] = []
        async with azure_client(gateway, key) as c:
            stream = await c.chat.completions.create(
                model="gpt-4o", messages=HI, stream=True, max_tokens=200
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
                if len(received) == 5:
                    break
            await stream.close()
        # Settlement runs when the gateway notices the disconnect: wait for it.
        async with asyncio.timeout(30):
            await settled.wait()
        enc = load_encoding("o200k_base")
        got = len(enc.encode_ordinary("".join(received)))
        prefix = "app:leaver:tpm:"
        charged = counter(gateway, prefix) - HI_PROMPT
        # What was written before the gateway saw the disconnect: what the client read,
        # plus at most the two events in flight (one token each).
        assert got <= charged <= got + 2, (got, charged)


@pytest.mark.parametrize(
    "limits",
    [
        {
            "rules": [{"scope": "app", "concurrent": 1}],
            "budgets": [{"scope": "app", "per_day": "0.001", "soft_percent": 50}],
            "prices": {
                "gpt-4o": {"input": "2.5", "output": "10"},
                "text-embedding-3-small": {"input": "0.02", "output": 0},
                "dall-e-3": {"input": 0, "output": 0},
            },
        }
    ],
)
async def test_budgets_alert_at_the_soft_threshold_and_refuse_at_the_hard_one(
    gw: Gateway,
) -> None:
    events: list[Event] = []
    assert gw.runtime is not None
    gw.runtime.events.subscribe(events.append)
    # the limits' clock at noon UTC: the budget's day ends hours later (frozen at the real
    # moment, a run in the last minute before midnight would be told to retry within it)
    freeze(gw, window("day", time.time())[0] + 12 * 3600)
    _, key = await new_key(gw, "spender")
    # Reserved per request: 8 prompt tokens (tiktoken) * 2.5 + 30 * 10 = 320 micro-dollars;
    # settled: the emulator's 7 prompt tokens * 2.5 + 20 completion tokens * 10 = 217.5 -> 218.
    async with azure_client(gw, key) as c:
        await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=30)
        assert [e.kind for e in events if isinstance(e, SecurityEvent)] == []
        # 218 settled + 320 reserved passes 500 (50%): one alert, never repeated in the window.
        for _ in range(2):
            await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=30)
        alerts = [e for e in events if isinstance(e, SecurityEvent)]
        assert [e.kind for e in alerts] == ["budget_soft_threshold"]
        assert alerts[0].app == "spender" and alerts[0].evidence["limit_micro"] == 1000
        await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=10)  # 118
        with pytest.raises(openai.RateLimitError) as caught:  # 772 + 320 > 1000
            await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=30)
    assert "budget per day of app 'spender'" in caught.value.message
    assert "(0.001 USD) is spent" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"  # hours away
    assert len([e for e in events if isinstance(e, SecurityEvent)]) == 1
    assert counter(gw, "app:spender:costd:") == 3 * 218 + 118


@pytest.mark.parametrize(
    "limits",
    [
        {"prices": {"gpt-4o": {"input": "2.5", "output": "10"}}, "default_max_tokens": 5},
        {
            "rules": [{"scope": "app", "tpm": 100_000}],
            "prices": {"gpt-4o": {"input": "2.5", "output": "10"}},
        },
    ],
    ids=["prices-only", "with-rules"],
)
async def test_the_cost_of_each_request_reaches_the_metrics(gw: Gateway) -> None:
    prices_only = not gw.settings.limits.rules
    _, key = await new_key(gw, "payer")
    async with azure_client(gw, key) as c:
        for _ in range(2):
            await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=30)
        raw = await c.chat.completions.with_raw_response.create(model="gpt-4o", messages=HI)
    answer = raw.parse()
    assert answer.usage is not None and answer.usage.completion_tokens == 20
    if prices_only:  # prices alone change nothing: no default cap (5 here) is written
        assert answer.choices[0].finish_reason == "stop"
    assert gw.monitoring is not None and gw.monitoring.recorder is not None
    await gw.monitoring.recorder.drain()
    async with aiohttp.ClientSession() as http:
        async with http.get(gw.admin_url + "/metrics") as resp:
            text = await resp.text()
    costs = {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "keyguard_cost_total"
    }
    # Each: the emulator's 7 prompt tokens * 2.5 + 20 completion tokens * 10 per million
    # = 217.5 micro-dollars, charged as 218.
    assert costs[(("app", "payer"), ("deployment", "gpt-4o"))] == pytest.approx(3 * 218e-6)


@pytest.mark.parametrize("emulator_config", [SLOW], ids=["slow-stream"])
async def test_concurrency_slots_are_held_until_settlement(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with limited_gateway(
        tmp_path, {"emu": emulator}, {"rules": [{"scope": "app", "concurrent": 1}]}
    ) as gateway:
        _, key = await new_key(gateway, "one-at-a-time")
        async with azure_client(gateway, key) as c:
            stream = await c.chat.completions.create(
                model="gpt-4o", messages=HI, stream=True, max_tokens=10
            )
            with pytest.raises(openai.RateLimitError) as caught:
                await c.chat.completions.create(model="gpt-4o", messages=HI)
            assert "concurrent requests of app 'one-at-a-time' (1)" in caught.value.message
            assert caught.value.response.headers["retry-after"] == "1"
            _ = [chunk async for chunk in stream]
            await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=1)
        assert memory(gateway).counters.get("app:one-at-a-time:conc", 0) == 0
