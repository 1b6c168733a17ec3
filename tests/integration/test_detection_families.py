"""Each detection family end to end through the official SDK, and the response in force from
the very next request: stuffing with garbage keys, a new key far above its peers, a prompt
replayed by a farm (as it is, and with a random id in each copy), enumeration, a key checker's
liveness probe ("hi", one token). (Key checkers' empty probes, decoys and raw Azure keys are
refused on the request itself: tests/respond and tests/rotation.)"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
import pytest

from keyguard.cli.support import cli_actor
from keyguard.detect.profile import Profile
from keyguard.detect.settings import DetectSettings
from keyguard.emulator.server import RunningEmulator
from keyguard.monitor.store import MonitorStore
from tests.integration.harness import harnessed

from .harness import GatewayHarness

DAY = 86400.0


def chat(client: openai.AsyncAzureOpenAI, text: str = "hello", **kw: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": text}], **kw
    )


@pytest.fixture
async def gw(tmp_path: Path, emulator: RunningEmulator) -> AsyncIterator[GatewayHarness]:
    async with harnessed(tmp_path, emulator) as harness:
        yield harness


async def drain(gw: GatewayHarness) -> None:
    assert gw.gateway.monitoring is not None
    await gw.gateway.monitoring.recorder.drain()


async def incidents(gw: GatewayHarness) -> list[Any]:
    assert gw.gateway.access is not None
    return await gw.gateway.access.api.service.list_incidents(cli_actor())


async def test_garbage_keys_from_one_address_are_blocked_from_the_next_request(
    gw: GatewayHarness,
) -> None:
    refused = 0
    for _ in range(60):
        garbage = "kgk_" + secrets.token_urlsafe(40)[:50]
        async with gw.azure(garbage) as client:
            try:
                await chat(client)
            except openai.AuthenticationError:
                refused += 1
                await drain(gw)  # the monitor's turn, as after any answer
                continue
            except openai.RateLimitError:
                break
    assert 20 <= refused <= 21  # the 20th different refused credential blocked the address
    found = [i for i in await incidents(gw) if i.rule == "stuffing"]
    assert found and "block_source" in found[0].actions
    _, key = await gw.new_key("bystander")
    async with gw.azure(key) as client:  # the address is blocked, whatever it presents
        with pytest.raises(openai.RateLimitError):
            await chat(client)


async def _mature_peers(gw: GatewayHarness, n: int) -> list[str]:
    """``n`` keys with weeks of ordinary history (about 5,000 tokens a minute at their busiest),
    as the baselines saved by a gateway that has run for a while."""
    assert gw.runtime.engine is not None
    store = MonitorStore(gw.runtime.engine)
    now = time.time()
    settings = DetectSettings()
    keys, saved = [], {}
    for i in range(n):
        key_id, key = await gw.new_key(f"peer-{i}")
        profile = Profile(settings, first_seen=now - 20 * DAY, last_seen=now - 60, requests=5000)
        profile.token_peak.value, profile.token_peak.at = 5000.0, now - 3600
        profile.networks["127.0.0.0/24"] = now - 60
        saved[f"key:{key_id}"] = profile.to_json()
        keys.append(key)
    await store.save_profiles(saved, now)
    monitoring = gw.gateway.monitoring
    assert monitoring is not None and monitoring.recorder.detector is not None
    monitoring.recorder.detector.load(await store.load_profiles())  # as at start-up
    for key in keys:  # each is seen on the deployment: the peer group forms
        async with gw.azure(key) as client:
            await chat(client)
    await drain(gw)
    return keys


async def test_a_new_key_far_above_its_peers_is_throttled_within_a_minute(
    gw: GatewayHarness,
) -> None:
    await _mature_peers(gw, 5)
    _, key = await gw.new_key("fresh-app")
    started, served = time.monotonic(), 0
    async with gw.azure(key) as client:
        for _ in range(40):  # ~2,000 tokens each: far above a typical key's busiest minute
            try:
                await chat(client, "lorem ipsum " * 700, max_tokens=50)
                served += 1
                await drain(gw)
            except openai.RateLimitError:
                break
    assert time.monotonic() - started < 60
    [velocity] = [i for i in await incidents(gw) if i.rule == "velocity"]
    assert velocity.evidence["first"]["judged_against"] == "peers: keys of gpt-4o"
    assert "throttle" in velocity.actions and served < 40


async def test_one_prompt_from_keys_of_several_apps_is_a_farm(gw: GatewayHarness) -> None:
    await _mature_peers(gw, 1)  # the detector has history: prompts new now are judged
    prompt = "Write a detailed product description for a stainless steel water bottle."
    for app in ("farm-a", "farm-b", "farm-c"):
        _, key = await gw.new_key(app)
        async with gw.azure(key) as client:
            await chat(client, prompt, max_tokens=20)
    await drain(gw)
    [found] = [i for i in await incidents(gw) if i.rule == "repetition"]
    assert found.subject.startswith("prompt:") and prompt not in str(found.to_json())


async def test_one_prompt_with_a_random_id_in_each_copy_is_a_farm(gw: GatewayHarness) -> None:
    await _mature_peers(gw, 1)
    prompt = "Write a detailed product description for a stainless steel water bottle."
    for app in ("farm-a", "farm-b", "farm-c"):
        _, key = await gw.new_key(app)
        nonce = f"req-{secrets.token_hex(4)}Z"  # letters and digits: a new id each time
        async with gw.azure(key) as client:
            await client.chat.completions.create(
                model="gpt-4o",
                messages=[
                    {"role": "system", "content": f"Session {secrets.token_hex(6)}."},
                    {"role": "user", "content": f"{nonce} {prompt}"},
                ],
                max_tokens=20,
            )
    await drain(gw)
    [found] = [i for i in await incidents(gw) if i.rule == "repetition"]
    assert nonce not in str(found.to_json()) and prompt not in str(found.to_json())


async def test_a_one_token_hi_from_a_new_network_and_client_suspends_the_key(
    gw: GatewayHarness,
) -> None:
    """A key with weeks of history from its app's network and client, validated by a key
    checker elsewhere ("hi", max_completion_tokens 1): suspended from the next request."""
    assert gw.runtime.engine is not None
    store = MonitorStore(gw.runtime.engine)
    now = time.time()
    key_id, key = await gw.new_key("checked")
    profile = Profile(DetectSettings(), first_seen=now - 20 * DAY, last_seen=now - 60)
    profile.requests = 5000
    profile.networks["10.20.30.0/24"] = now - 60  # the app's hosts, not this test's
    profile.clients["AppServer/2.1|"] = now - 60
    await store.save_profiles({f"key:{key_id}": profile.to_json()}, now)
    monitoring = gw.gateway.monitoring
    assert monitoring is not None and monitoring.recorder.detector is not None
    monitoring.recorder.detector.load(await store.load_profiles())
    async with gw.azure(key) as client:
        await chat(client, "hi", max_completion_tokens=1)
        await drain(gw)
        with pytest.raises(openai.AuthenticationError):  # suspended
            await chat(client, "hi", max_completion_tokens=1)
    [probe] = [i for i in await incidents(gw) if i.rule == "key_probe"]
    assert probe.severity == "high" and "suspend_key" in probe.actions


async def test_enumeration_is_throttled_from_the_next_request(gw: GatewayHarness) -> None:
    _, key = await gw.new_key("stolen")
    async with gw.azure(key) as client:
        await chat(client)
        for i in range(4):  # deployments this gateway does not serve
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(
                    model=f"probe-{i}", messages=[{"role": "user", "content": "hi"}]
                )
            await drain(gw)
        with pytest.raises(openai.RateLimitError):  # the very next request
            await chat(client)
    assert any(i.rule == "enumeration" for i in await incidents(gw))


def _now() -> datetime:
    return datetime.now(UTC)
