"""A new key judged against what its own limit rule and role declare, end to end: the official
SDK against a running gateway, the alert read from ``GET /admin/alerts``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import openai

from keyguard.emulator.server import RunningEmulator
from tests.support.gateway import running_gateway

from .guardrails_support import admin_get
from .harness import GatewayHarness
from .test_detection_families import _mature_peers, chat, drain

KEY_20K = {"rules": [{"scope": "key", "tpm": 20_000}]}
LONG = "lorem ipsum " * 700  # ~1,400 tokens; ~1,450 with the answer


@asynccontextmanager
async def gateway(
    tmp: Path, emulator: RunningEmulator, **options: Any
) -> AsyncIterator[GatewayHarness]:
    async with running_gateway(tmp, emulator, **options) as gw:
        yield GatewayHarness(gw, emulator, secrets=list(emulator.keys()))


async def spend(gw: GatewayHarness, key: str, n: int, text: str, **kw: Any) -> int:
    """Up to ``n`` requests one after the other, each handed to the monitor before the next;
    how many were served (a refusal, by the limiter or a throttle, ends the run)."""
    served = 0
    async with gw.azure(key) as client:
        for _ in range(n):
            try:
                await chat(client, text, **kw)
            except openai.RateLimitError:
                break
            served += 1
            await drain(gw)
    return served


async def velocity_alerts(gw: GatewayHarness, key_id: str) -> list[dict[str, Any]]:
    alerts = await admin_get(gw, "/admin/alerts?since=1d")
    return [
        i
        for i in alerts["incidents"]
        if i["rule"] == "velocity" and i["subject"] == f"key:{key_id}"
    ]


async def test_a_new_key_bursting_to_its_declared_tpm_is_flagged_in_its_first_minute(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """No peers at all (the defaults allow 300,000 tokens a minute): a fresh key whose rule
    says 20,000 a minute tries ~41,000 at once."""
    async with gateway(tmp_path, emulator, limits=KEY_20K) as gw:
        key_id, key = await gw.new_key("fresh-app")
        started = time.time()
        served = await spend(gw, key, 28, LONG, max_tokens=50)  # 28 x ~1,460: ~41,000
        [alert] = await velocity_alerts(gw, key_id)
    first = alert["evidence"]["first"]
    assert first["judged_against"] == "declared: key limit tpm 20000"
    assert first["tokens_in_window"] >= 16_000 and first["declared_tokens_per_minute"] == 20_000
    assert alert["created_at"] - started < 60  # within the key's first minute
    assert served < 28 and "throttle" in alert["actions"]


async def test_a_new_key_well_below_its_declaration_raises_nothing(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with gateway(tmp_path, emulator, limits=KEY_20K) as gw:
        key_id, key = await gw.new_key("steady-app")
        assert await spend(gw, key, 4, LONG, max_tokens=50) == 4  # ~5,800: 29 %
        assert await velocity_alerts(gw, key_id) == []
        alerts = await admin_get(gw, "/admin/alerts?since=1d")
    assert [i for i in alerts["incidents"] if i["subject"] == f"key:{key_id}"] == []


async def test_other_apps_keys_do_not_judge_a_key_below_most_of_its_declaration(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """A generous rule (200,000 a minute) is what the operator allows the key: the
    deployment's keys, other apps' with ceilings of their own, judge a fresh key only from
    ``velocity.declared_share`` (0.8) of it, so ~44,000 tokens, far above their ~5,000, raise
    nothing (a new batch app at half its rule is not an incident)."""
    generous = {"rules": [{"scope": "key", "tpm": 200_000}]}
    async with gateway(tmp_path, emulator, limits=generous) as gw:
        await _mature_peers(gw, 5)  # about 5,000 tokens a minute at their busiest
        key_id, key = await gw.new_key("fresh-app")
        assert await spend(gw, key, 30, LONG, max_tokens=50) == 30
        assert await velocity_alerts(gw, key_id) == []


POLICY = """
version: 1
roles:
  bounded:
    operations: [chat]
    deployments: [gpt-4o]
    max_prompt_chars: 600
    max_output_tokens: 20
bindings:
  - {name: bounded, role: bounded, subjects: ["app:bounded-app"]}
"""


async def test_a_role_s_request_cap_times_the_rule_s_rpm_is_a_declaration(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """The role lets one request carry 620 tokens, the rule 30 requests a minute: 18,600
    tokens a minute declared; a fresh key filling every request at once is flagged."""
    limits = {"rules": [{"scope": "key", "rpm": 30}]}
    async with gateway(tmp_path, emulator, limits=limits, policy=POLICY) as gw:
        key_id, key = await gw.new_key("bounded-app")
        dense = "!" * 590  # one token per character
        await spend(gw, key, 29, dense, max_tokens=20)
        [alert] = await velocity_alerts(gw, key_id)
    judged = alert["evidence"]["first"]["judged_against"]
    assert judged == "declared: role bounded (620 tokens a request) x key limit rpm 30"
