"""The /_emulator endpoints: usage totals, injected faults, reset, and their control token."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import openai
import pytest

from keyguard.emulator import CONTROL_HEADER, RunningEmulator
from tests.support.clock import FakeClock
from tests.support.emulators import CHAT_PATH

from .conftest import MESSAGES


async def _control(
    http: aiohttp.ClientSession,
    emulator: RunningEmulator,
    method: str,
    path: str,
    body: Any = None,
) -> tuple[int, Any]:
    async with http.request(
        method, emulator.url + path, json=body, headers=emulator.control_headers
    ) as response:
        return response.status, await response.json()


async def _chat(
    http: aiohttp.ClientSession, emulator: RunningEmulator, **extra: Any
) -> aiohttp.ClientResponse:
    body = {"messages": MESSAGES, **extra}
    async with http.post(
        emulator.url + CHAT_PATH, json=body, headers={"api-key": emulator.keys()[0]}
    ) as response:
        await response.read()
        return response


@pytest.mark.parametrize("path", ["/_emulator/usage", "/_emulator/keys", "/_emulator/faults"])
async def test_control_token_is_required(
    emulator: RunningEmulator, http: aiohttp.ClientSession, path: str
) -> None:
    async with http.get(emulator.url + path) as response:
        assert response.status == 401
    async with http.get(emulator.url + path, headers={CONTROL_HEADER: "wrong"}) as response:
        assert response.status == 401
    async with http.post(emulator.url + "/_emulator/reset") as response:
        assert response.status == 401
    async with http.get(emulator.url + "/_emulator/health") as response:
        assert response.status == 200


async def test_usage_per_deployment_and_key_slot(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    key1, key2 = emulator.keys()
    for key, deployment in ((key1, "gpt-4o"), (key2, "gpt-4o"), (key2, "gpt-4o-mini")):
        url = emulator.url + CHAT_PATH.replace("gpt-4o", deployment)
        async with http.post(
            url, json={"messages": MESSAGES, "max_tokens": 5}, headers={"api-key": key}
        ) as response:
            assert response.status == 200
    status, usage = await _control(http, emulator, "GET", "/_emulator/usage")
    assert status == 200
    one = {"prompt_tokens": 16, "completion_tokens": 5, "total_tokens": 21}
    assert usage["deployments"]["gpt-4o"] == {"requests": 2, "failed": 0} | {
        k: 2 * v for k, v in one.items()
    }
    assert usage["credentials"]["key1"] == {"requests": 1, "failed": 0} | one
    assert usage["credentials"]["key2"]["requests"] == 2
    assert usage["total"]["total_tokens"] == 63
    status, _ = await _control(http, emulator, "POST", "/_emulator/reset")
    assert status == 200
    _, usage = await _control(http, emulator, "GET", "/_emulator/usage")
    assert usage == {
        "deployments": {},
        "credentials": {},
        "total": {
            "requests": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "failed": 0,
        },
    }


async def test_reset_can_regenerate_keys(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    before = emulator.keys()
    await _control(http, emulator, "POST", "/_emulator/reset", {"keys": True})
    after = emulator.keys()
    assert before[0] != after[0] and before[1] != after[1]
    _, shown = await _control(http, emulator, "GET", "/_emulator/keys")
    assert (shown["key1"], shown["key2"]) == after


async def test_fault_429_for_the_next_requests(
    emulator: RunningEmulator, http: aiohttp.ClientSession, azure: openai.AsyncAzureOpenAI
) -> None:
    status, fault = await _control(
        http, emulator, "POST", "/_emulator/faults", {"status": 429, "retry_after": 3, "count": 2}
    )
    assert status == 201 and fault["remaining"] == 2
    for _ in range(2):
        response = await _chat(http, emulator)
        assert response.status == 429
        assert response.headers["retry-after"] == "3"
        assert response.headers["retry-after-ms"] == "3000"
    assert (await _chat(http, emulator)).status == 200
    await _control(http, emulator, "POST", "/_emulator/faults", {"status": 500})
    with pytest.raises(openai.InternalServerError):
        await azure.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    _, usage = await _control(http, emulator, "GET", "/_emulator/usage")
    assert usage["deployments"]["gpt-4o"]["failed"] == 3
    assert usage["deployments"]["gpt-4o"]["requests"] == 1


async def test_fault_for_one_deployment_and_listing(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    await _control(
        http, emulator, "POST", "/_emulator/faults", {"status": 503, "deployment": "gpt-4o-mini"}
    )
    assert (await _chat(http, emulator)).status == 200  # gpt-4o is not affected
    _, listed = await _control(http, emulator, "GET", "/_emulator/faults")
    assert [f["deployment"] for f in listed["faults"]] == ["gpt-4o-mini"]
    await _control(http, emulator, "DELETE", "/_emulator/faults")
    _, listed = await _control(http, emulator, "GET", "/_emulator/faults")
    assert listed == {"faults": []}


async def test_bad_fault_is_400(emulator: RunningEmulator, http: aiohttp.ClientSession) -> None:
    for bad in ({"status": 418}, {}, {"drop": "sideways"}, {"status": 500, "bogus": 1}):
        status, body = await _control(http, emulator, "POST", "/_emulator/faults", bad)
        assert status == 400 and body["error"]["code"] == "BadRequest"


async def test_fault_duration_uses_the_clock(
    clocked: RunningEmulator, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    await _control(http, clocked, "POST", "/_emulator/faults", {"status": 503, "duration_s": 5})
    for _ in range(3):
        assert (await _chat(http, clocked)).status == 503
    clock.advance(5)
    assert (await _chat(http, clocked)).status == 200


async def test_latency_fault(emulator: RunningEmulator, http: aiohttp.ClientSession) -> None:
    await _control(http, emulator, "POST", "/_emulator/faults", {"latency_ms": 200})
    started = time.monotonic()
    assert (await _chat(http, emulator)).status == 200
    assert time.monotonic() - started >= 0.2


async def test_drop_mid_stream(emulator: RunningEmulator, http: aiohttp.ClientSession) -> None:
    await _control(
        http, emulator, "POST", "/_emulator/faults", {"drop": "mid_stream", "after_chunks": 3}
    )
    async with http.post(
        emulator.url + CHAT_PATH,
        json={"messages": MESSAGES, "stream": True},
        headers={"api-key": emulator.keys()[0]},
    ) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    _, usage = await _control(http, emulator, "GET", "/_emulator/usage")
    assert usage["deployments"]["gpt-4o"] == {
        "requests": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "failed": 1,
    }
    # a non-streamed answer is cut half-way through its body
    await _control(http, emulator, "POST", "/_emulator/faults", {"drop": "mid_stream"})
    async with http.post(
        emulator.url + CHAT_PATH,
        json={"messages": MESSAGES},
        headers={"api-key": emulator.keys()[0]},
    ) as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_drop_before_response(
    emulator: RunningEmulator, azure: openai.AsyncAzureOpenAI
) -> None:
    async with aiohttp.ClientSession() as http:
        await _control(http, emulator, "POST", "/_emulator/faults", {"drop": "before_response"})
        with pytest.raises(aiohttp.ClientError):
            await _chat(http, emulator)
    await azure.chat.completions.create(model="gpt-4o", messages=MESSAGES)
