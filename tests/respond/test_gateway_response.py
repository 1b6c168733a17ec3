"""End to end through the gateway: detections open incidents and the responses take effect
(suspension, throttling, decoy refusal, webhook alert); the CLI lists and undoes them."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import openai
import orjson
import pytest
from click.testing import CliRunner, Result
from openai.types.chat import ChatCompletionMessageParam

from keyguard.cli.main import cli
from keyguard.emulator.server import RunningEmulator
from tests.support.gateway import azure_client, new_key, running_gateway
from tests.support.settings import write_config
from tests.support.stored import audit_texts

from .conftest import WebhookReceiver

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


async def invoke(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), catch_exceptions=False)


async def test_key_probe_suspends_the_key_until_an_operator_resumes_it(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with running_gateway(tmp_path, emulator) as gw:
        key_id, key = await new_key(gw, "victim")
        monitoring = gw.monitoring
        assert monitoring is not None
        async with azure_client(gw, key) as client:
            await client.chat.completions.create(model="gpt-4o", messages=HI)
            # the reseller's key checker: an empty message and max_tokens 1, refused before it
            # is served, with the answer an invalid key gets (the checker learns nothing)
            with pytest.raises(openai.AuthenticationError, match="not valid"):
                await client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": ""}], max_tokens=1
                )
            assert emulator.state.usage_view()["total"]["requests"] == 1  # only the first came
            await monitoring.recorder.drain()
            with pytest.raises(openai.AuthenticationError, match="suspended"):
                await client.chat.completions.create(model="gpt-4o", messages=HI)
            config = write_config(tmp_path, gw.settings)
            listed = await invoke("alerts", "list", "--json", "-c", str(config))
            incidents = json.loads(listed.output)
            assert [i["rule"] for i in incidents] == ["key_probe"]
            assert incidents[0]["key_id"] == key_id and "suspend_key" in incidents[0]["actions"]
            table = await invoke("alerts", "list", "-c", str(config))
            assert "key_probe" in table.output and key_id in table.output
            resumed = await invoke("keys", "resume", key_id, "-c", str(config))
            assert resumed.exit_code == 0 and f"resumed key {key_id}" in resumed.output
            gw.authenticator.invalidate(key_id)  # type: ignore[union-attr]
            await client.chat.completions.create(model="gpt-4o", messages=HI)
        await monitoring.recorder.drain()
    with closing(sqlite3.connect(tmp_path / "keyguard.db")) as conn, conn:
        admin = [orjson.loads(d) for d in audit_texts(tmp_path / "keyguard.db", ["admin"])]
        security = [orjson.loads(d) for d in audit_texts(tmp_path / "keyguard.db", ["security"])]
    assert {(a["actor"], a["action"]) for a in admin} >= {
        ("system:monitor", "keys.suspend"),
    } and any(a["action"] == "keys.resume" and a["actor"].startswith("cli:") for a in admin)
    assert any(s["kind"] == "key_probe" and s["severity"] == "high" for s in security)


async def test_velocity_throttles_the_key_with_429(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    monitor = {"detect": {"velocity": {"learning_tokens": 5}}}
    async with running_gateway(tmp_path, emulator, monitor=monitor) as gw:
        _, key = await new_key(gw, "greedy")
        _, other = await new_key(gw, "innocent")
        assert gw.monitoring is not None
        async with azure_client(gw, key) as client, azure_client(gw, other) as bystander:
            await client.chat.completions.create(model="gpt-4o", messages=HI)
            await gw.monitoring.recorder.drain()
            with pytest.raises(openai.RateLimitError) as caught:
                await client.chat.completions.create(model="gpt-4o", messages=HI)
            assert int(caught.value.response.headers["retry-after"]) > 800
            await bystander.chat.completions.create(model="gpt-4o", messages=HI)


async def test_decoy_key_is_refused_like_an_unknown_key_and_alerts(
    tmp_path: Path, emulator: RunningEmulator, webhook: WebhookReceiver
) -> None:
    monitor = {
        "detect": {"decoy_apps": ["honey"]},
        "respond": {"webhooks": [{"name": "siem", "url": webhook.url, "min_severity": "high"}]},
    }
    async with running_gateway(tmp_path, emulator, monitor=monitor) as gw:
        decoy_id, decoy = await new_key(gw, "honey")
        async with azure_client(gw, decoy) as client:
            with pytest.raises(openai.AuthenticationError, match="not valid"):
                await client.chat.completions.create(model="gpt-4o", messages=HI)
        assert gw.monitoring is not None
        await gw.monitoring.recorder.drain()
        await asyncio.wait_for(webhook.arrived.wait(), 10)
    alert = webhook.received[0]
    assert alert["rule"] == "decoy" and alert["severity"] == "critical"
    assert alert["key_id"] == decoy_id and decoy not in json.dumps(alert)
    assert emulator.state is not None  # the decoy never reached Azure:
    assert not any(decoy in json.dumps(a) for a in webhook.received)
