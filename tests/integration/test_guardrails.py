"""The guardrails on requests, end to end: the official SDK, the gateway, the emulator.

Hostile cases first: a secret hidden in multi-part content, a tool result, the Responses API's
input, an embeddings input, base64; a prompt too large to read; a body whose texts cannot be
read. Each must be refused with Azure's content-filter error (the SDK raises
``BadRequestError`` with ``code == "content_filter"``) and nothing may reach the emulator.
Then the actions per role: redact (the emulator receives a placeholder, never the value),
alert (forwarded, an incident in ``/admin/alerts``), the strictest of two roles, and the
audit record, the metrics and the repeated-hits rule; canaries searched everywhere.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from keyguard.emulator import RunningEmulator
from tests.support.emulators import CHAT_PATH as CHAT
from tests.support.logs import LogCapture

from .guardrails_support import (
    admin_get,
    audit_rows,
    canary,
    database_bytes,
    guarded_gateway,
    metrics_text,
    nowhere,
    received,
)

pytestmark = pytest.mark.filterwarnings("error")


def _content_filter(exc: openai.BadRequestError, category: str) -> None:
    assert exc.status_code == 400
    assert exc.code == "content_filter"
    body: Any = exc.body
    assert body["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    result = body["innererror"]["content_filter_result"]
    assert result[category]["filtered"] is True


async def test_hidden_secrets_are_blocked_wherever_they_sit_and_never_forwarded(
    tmp_path: Path, emulator: RunningEmulator, logs: LogCapture
) -> None:
    secret = canary()
    encoded = base64.b64encode(f"api_key={secret}".encode()).decode()
    async with guarded_gateway(tmp_path, emulator) as gw:
        _, key = await gw.new_key("strict-app")
        errors: list[str] = []
        async with gw.azure(key) as client, gw.v1(key) as v1:
            attempts: list[Any] = [
                client.chat.completions.create(  # multi-part content
                    model="gpt-4o",
                    messages=[
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "summarise"},
                                {"type": "text", "text": f"config: {secret}"},
                            ],
                        }
                    ],
                ),
                client.chat.completions.create(  # a tool result
                    model="gpt-4o",
                    messages=[
                        {"role": "user", "content": "what does the tool say?"},
                        {
                            "role": "assistant",
                            "tool_calls": [
                                {
                                    "id": "call_1",
                                    "type": "function",
                                    "function": {"name": "env", "arguments": "{}"},
                                }
                            ],
                        },
                        {"role": "tool", "tool_call_id": "call_1", "content": f"KEY={secret}"},
                    ],
                ),
                client.chat.completions.create(  # a system message, base64
                    model="gpt-4o",
                    messages=[
                        {"role": "system", "content": f"decode this: {encoded}"},
                        {"role": "user", "content": "hi"},
                    ],
                ),
                v1.responses.create(model="gpt-4o", input=f"my key is {secret}"),
                v1.responses.create(  # Responses input items
                    model="gpt-4o",
                    input=[{"role": "user", "content": [{"type": "input_text", "text": secret}]}],
                ),
                client.embeddings.create(
                    model="text-embedding-3-small", input=["fine", f"leak {secret}"]
                ),
            ]
            for attempt in attempts:
                with pytest.raises(openai.BadRequestError) as info:
                    await attempt
                _content_filter(info.value, "azure_openai_key")
                errors.append(f"{info.value} {info.value.body}")
        assert gw.gateway.monitoring is not None
        await gw.gateway.monitoring.recorder.drain()
        rows = audit_rows(tmp_path)
        metrics = await metrics_text(gw)
    assert list(emulator.state.received) == []  # nothing was forwarded
    assert nowhere(secret, errors), "the secret was echoed in an error"
    assert nowhere(secret, logs.lines), "the secret reached a log"
    assert nowhere(secret, rows), "the secret reached the audit"
    assert nowhere(secret, [metrics]), "the secret reached the metrics"
    assert nowhere(secret, [database_bytes(tmp_path).decode("latin-1")])
    decisions = [
        hit for row in rows for hit in json.loads(row).get("guardrails", []) if "category" in hit
    ]
    assert {h["category"] for h in decisions} == {"azure_openai_key"}
    assert {h["action"] for h in decisions} == {"block"}
    roles = {h["role"] for h in decisions}
    assert {"user", "tool", "system"} <= roles
    assert all(len(h["fingerprint"]) == 64 for h in decisions)
    assert (
        'keyguard_guardrail_decisions_total{action="block",category="azure_openai_key",'
        'family="secret",where="request"} 6.0' in metrics
    )


async def test_a_prompt_too_large_to_read_is_refused_not_forwarded_unread(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    huge = "lorem ipsum " * 1000  # 12,000 characters; the detectors read 1,000 of a text
    async with guarded_gateway(tmp_path, emulator, guardrails={"max_text_chars": 1000}) as gw:
        _, key = await gw.new_key("strict-app")
        async with gw.azure(key) as client:
            with pytest.raises(openai.BadRequestError) as info:
                await client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": huge}]
                )
    _content_filter(info.value, "unscanned")
    assert list(emulator.state.received) == []


async def test_a_body_the_guardrails_cannot_read_is_refused(
    tmp_path: Path, emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch, logs: LogCapture
) -> None:
    secret = canary()

    def broken(operation: str, body: Any) -> Any:
        raise RecursionError(f"too deep near {secret}")

    monkeypatch.setattr("keyguard.proxy.guardrails.request_slots", broken)
    async with guarded_gateway(tmp_path, emulator) as gw:
        _, key = await gw.new_key("strict-app")
        async with gw.azure(key) as client:
            with pytest.raises(openai.BadRequestError) as info:
                await client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
                )
    assert info.value.code == "GuardrailsUnreadable"
    assert list(emulator.state.received) == []
    assert nowhere(secret, logs.lines)


async def test_redact_forwards_a_typed_placeholder_never_the_value(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    secret = canary()
    async with guarded_gateway(tmp_path, emulator) as gw:
        _, key = await gw.new_key("mask-app")
        async with gw.azure(key) as client:
            answer = await client.chat.completions.create(
                model="gpt-4o",
                messages=[
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": f"is {secret} valid? and {secret} again"},
                ],
            )
    assert answer.choices[0].message.content
    seen = received(emulator)
    assert nowhere(secret, [seen])
    assert "is [AZURE_OPENAI_KEY_1] valid? and [AZURE_OPENAI_KEY_1] again" in seen


async def test_redacted_values_come_back_in_the_answer_only_with_restore(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    secret = canary()
    messages: Any = [{"role": "user", "content": f"remember {secret}"}]
    async with guarded_gateway(tmp_path, emulator) as gw:
        _, restorer = await gw.new_key("redact-app")
        _, masker = await gw.new_key("mask-app")
        emulator.state.script_answer("You said ", "[AZURE_OPENAI_KEY_1]", ".")
        emulator.state.script_answer("You said [AZURE_OPENAI_KEY_1].")
        async with gw.azure(restorer) as client:
            restored = await client.chat.completions.create(model="gpt-4o", messages=messages)
        async with gw.azure(masker) as client:
            masked = await client.chat.completions.create(model="gpt-4o", messages=messages)
    assert restored.choices[0].message.content == f"You said {secret}."
    assert masked.choices[0].message.content == "You said [AZURE_OPENAI_KEY_1]."
    assert nowhere(secret, [received(emulator)])


async def test_the_strictest_of_two_granting_roles_wins(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with guarded_gateway(tmp_path, emulator) as gw:
        _, key = await gw.new_key("both-app")  # bound to a redacting and a blocking role
        async with gw.azure(key) as client:
            with pytest.raises(openai.BadRequestError) as info:
                await client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": canary()}]
                )
    _content_filter(info.value, "azure_openai_key")


async def test_alert_forwards_and_raises_an_incident_in_admin_alerts(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    secret = canary()
    async with guarded_gateway(tmp_path, emulator) as gw:
        key_id, key = await gw.new_key("watch-app")
        async with gw.azure(key) as client:
            answer = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"use {secret}"}]
            )
        assert answer.choices[0].message.content
        assert secret in received(emulator)  # alert forwards as sent
        assert gw.gateway.monitoring is not None
        await gw.gateway.monitoring.recorder.drain()
        alerts = await admin_get(gw, "/admin/alerts?since=1d")
    found = [i for i in alerts["incidents"] if i["rule"] == "guardrail_alert"]
    assert len(found) == 1 and found[0]["subject"] == f"key:{key_id}"
    assert found[0]["evidence"]["first"]["category"] == "azure_openai_key"
    assert nowhere(secret, [json.dumps(alerts)])


async def test_a_key_that_keeps_sending_secrets_is_an_incident(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with guarded_gateway(tmp_path, emulator) as gw:
        key_id, key = await gw.new_key("strict-app")
        async with gw.azure(key) as client:
            for _ in range(5):
                with pytest.raises(openai.BadRequestError):
                    await client.chat.completions.create(
                        model="gpt-4o", messages=[{"role": "user", "content": canary()}]
                    )
        assert gw.gateway.monitoring is not None
        await gw.gateway.monitoring.recorder.drain()
        alerts = await admin_get(gw, "/admin/alerts?since=1d")
    found = [i for i in alerts["incidents"] if i["rule"] == "guardrail_repeat"]
    assert len(found) == 1
    assert found[0]["subject"] == f"key:{key_id}" and found[0]["severity"] == "high"


async def test_guardrails_off_forward_everything_unread(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    secret = canary()
    async with guarded_gateway(tmp_path, emulator, guardrails={"enabled": False}) as gw:
        _, key = await gw.new_key("strict-app")
        async with gw.azure(key) as client:
            await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": secret}]
            )
    assert secret in received(emulator)


async def test_recorded_prompts_keep_no_value_the_guardrails_found(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    secret = canary()
    monitor = {"audit": {"record_content": True}}
    async with guarded_gateway(tmp_path, emulator, monitor=monitor) as gw:
        messages: Any = [{"role": "user", "content": f"here: {secret}"}]
        for app in ("strict-app", "watch-app", "mask-app"):
            _, key = await gw.new_key(app)
            async with gw.azure(key) as client:
                try:
                    await client.chat.completions.create(model="gpt-4o", messages=messages)
                except openai.BadRequestError:
                    assert app == "strict-app"
        assert gw.gateway.monitoring is not None
        await gw.gateway.monitoring.recorder.drain()
        rows = [json.loads(r) for r in audit_rows(tmp_path)]
    prompts = [r["content"]["prompt"] for r in rows if "content" in r]
    assert len(prompts) == 3
    assert sum("withheld" in p for p in prompts) == 2  # blocked, alerted: the value is in it
    assert any("[AZURE_OPENAI_KEY_1]" in p for p in prompts)  # redacted: kept as forwarded
    assert nowhere(secret, [json.dumps(rows)])


async def test_texts_where_no_api_puts_them_are_read_too(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    secret = canary()
    user: Any = {"role": "user", "content": "hello"}
    shapes: list[dict[str, Any]] = [
        {"messages": [{"role": "user", "content": {"text": secret}}]},  # an object for a text
        {"messages": [{"role": "user", "content": [{"type": "text", "text": {"t": secret}}]}]},
        {"messages": [user], "user": secret},
        {"messages": [user], "metadata": {"note": secret}},
        {
            "messages": [user],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "lookup",
                        "description": f"use {secret}",
                        "parameters": {},
                    },
                }
            ],
        },  # fmt: skip
        {"messages": [{**user, secret: 1}]},  # a value as an object's key
    ]
    async with guarded_gateway(tmp_path, emulator) as gw:
        _, strict = await gw.new_key("strict-app")
        _, masker = await gw.new_key("mask-app")
        async with aiohttp.ClientSession() as http:
            for body in shapes:
                for key in (strict, masker):
                    async with http.post(
                        gw.url + CHAT, json=body, headers={"api-key": key}
                    ) as resp:
                        answer = await resp.json()
                    if key == strict or secret in json.dumps(list(body["messages"][0])):
                        assert resp.status == 400, body
                        assert answer["error"]["code"] == "content_filter"
                    assert nowhere(secret, [json.dumps(answer)])
    assert nowhere(secret, [received(emulator)])  # blocked, or forwarded redacted
    assert "use [AZURE_OPENAI_KEY_1]" in received(emulator)
