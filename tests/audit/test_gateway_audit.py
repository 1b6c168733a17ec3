"""End to end: requests through the gateway and admin actions land in the chained audit log;
``keyguard audit verify`` passes, names a tampered record, and checks an export offline."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from click.testing import CliRunner, Result
from openai.types.chat import ChatCompletionMessageParam

from keyguard.cli.main import cli
from keyguard.emulator.server import RunningEmulator
from keyguard.events import AdminAction
from keyguard.store.packing import unpack
from tests.support.emulators import CHAT_PATH
from tests.support.gateway import azure_client, new_key, running_gateway, runtime
from tests.support.settings import write_config

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


async def invoke(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), catch_exceptions=False)


def rows(db: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn, conn:
        found = conn.execute("select seq, kind, data, packed from audit_records order by seq")
        return [(seq, kind, data or unpack(packed)) for seq, kind, data, packed in found]


async def test_requests_and_admin_actions_are_audited_and_verify(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with running_gateway(tmp_path, emulator) as gw:
        key_id, key = await new_key(gw, "audited-app")
        async with azure_client(
            gw, key, default_headers={"User-Agent": "audit-test/1.0"}
        ) as client:
            await client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=5)
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=HI, stream=True
            )
            async for _ in stream:
                pass
        async with aiohttp.ClientSession() as http:
            bad = key[:-1] + ("0" if key[-1] != "0" else "1")
            async with http.post(
                gw.proxy_url + CHAT_PATH,
                headers={"api-key": bad},
                json={"messages": HI},
            ) as resp:
                assert resp.status == 401
        runtime(gw).events.emit(
            AdminAction(datetime.now(UTC), "cli:tester", "keys.revoke", f"key:{key_id}")
        )
        monitoring = gw.monitoring
        assert monitoring is not None
        await monitoring.recorder.drain()
        secrets = [key, *emulator.keys()]
    db = tmp_path / "keyguard.db"
    found = rows(db)
    requests = [orjson.loads(d) for _, kind, d in found if kind == "request"]
    assert len(requests) == 3, requests
    ok = next(r for r in requests if r["deployment"] == "gpt-4o")
    assert ok["key_id"] == key_id and ok["app"] == "audited-app" and ok["status"] == 200
    assert ok["operation"] == "chat" and ok["prompt_tokens"] > 0 and ok["completion_tokens"] > 0
    assert ok["decision"] == "allow" and ok["reason"] == "ok" and ok["source"] == "127.0.0.1"
    assert ok["user_agent"] == "audit-test/1.0" and ok["latency_ms"] > ok["upstream_ms"] > 0
    assert ok["client"].startswith("python/")  # the SDK's X-Stainless-* fingerprint
    streamed = next(r for r in requests if r["deployment"] == "gpt-4o-mini")
    assert streamed["stream"] is True and streamed["completion_tokens"] > 0
    denied = next(r for r in requests if r["status"] == 401)
    assert denied["decision"] == "deny" and denied["key_id"] is None
    admin = [orjson.loads(d) for _, kind, d in found if kind == "admin"]
    assert admin[0]["action"] == "keys.revoke" and admin[0]["actor"] == "cli:tester"
    blob = "\n".join(d for _, _, d in found)
    for secret in secrets:
        assert secret not in blob and secret[16:48] not in blob
    assert "hello" not in blob  # prompts are not recorded by default

    config = write_config(tmp_path, gw.settings)
    result = await invoke("audit", "verify", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert "ok: every chain is intact" in result.output
    assert f"audit log: {len(found)} records in 1 writers' chains" in result.output
    pub = tmp_path / "audit.pub"
    result = await invoke("audit", "public-key", "-c", str(config))
    pub.write_text(result.output)
    export = tmp_path / "export.jsonl"
    result = await invoke("audit", "export", "--since", "1h", "-o", str(export), "-c", str(config))
    assert result.exit_code == 0 and len(export.read_text().splitlines()) > len(found)
    result = await invoke("audit", "verify", "--file", str(export), "--public-key", str(pub))
    assert result.exit_code == 0, result.output

    seq, data = next((n, d) for n, kind, d in found if kind == "request" and '"status":401' in d)
    with closing(sqlite3.connect(db)) as conn, conn:  # an insider turns a refusal into a success
        conn.execute(
            "update audit_records set data = ?, packed = NULL where seq = ?",
            (data.replace('"status":401', '"status":200'), seq),
        )
    result = await invoke("audit", "verify", "-c", str(config), "--public-key", str(pub))
    assert result.exit_code == 1
    assert f"record {seq}" in result.output and f"first bad record: seq {seq}" in result.output


async def test_prompts_recorded_only_when_enabled_and_redacted(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    monitor = {"audit": {"record_content": True}}
    # the guardrails off: the audit's own redaction is what is tested (with them on, the
    # request is refused and its prompt withheld: tests/integration/test_guardrails.py)
    guardrails = {"enabled": False}
    async with running_gateway(tmp_path, emulator, monitor=monitor, guardrails=guardrails) as gw:
        _, key = await new_key(gw, "chatty")
        _, leaked = await new_key(gw, "other")
        async with azure_client(gw, key) as client:
            await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"my key is {leaked}"}]
            )
        assert gw.monitoring is not None
        await gw.monitoring.recorder.drain()
    data = [orjson.loads(d) for _, kind, d in rows(tmp_path / "keyguard.db") if kind == "request"]
    content = data[0]["content"]
    assert "my key is [REDACTED:keyguard_key]" in content["prompt"]
    assert leaked not in orjson.dumps(data).decode()
    assert content["completion"]  # the emulator's answer
