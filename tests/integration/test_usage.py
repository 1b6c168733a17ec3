"""``GET /admin/usage`` over real sockets: who may read it, what it refuses, that reading
charges nothing, and that it shows what the limits enforce (a key-scope budget spent through
the official SDK included)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from keyguard.cli.support import cli_actor
from keyguard.emulator.server import RunningEmulator
from keyguard.events import Event, SecurityEvent
from keyguard.limits.windows import window
from keyguard.server import Gateway
from keyguard.wiring.access import open_admin_service
from tests.support.gateway import azure_client, new_key, running_gateway, runtime
from tests.support.settings import free_port
from tests.support.stored import audit_texts, stored_bytes

from .limited import RedisServer, emulator_usage, limited_gateway, memory

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
PRICE = 1000  # per 1,000,000 tokens: 1000 micro-units a token, $0.001
PRICES = {
    name: {"input": PRICE, "output": PRICE}
    for name in ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "dall-e-3")
}
LIMITS: dict[str, Any] = {
    "teams": {"payments": ["spender", "other"]},
    "rules": [
        {"scope": "key", "tpm": 5000, "rpm": 50, "concurrent": 4},
        {"scope": "app", "tokens_per_day": 100_000},
        {"scope": "team", "name": "payments", "rpm": 500},
        {"scope": "deployment", "name": "gpt-4o", "tpm": 900_000},
        {"scope": "global", "rpm": 10_000},
    ],
    "budgets": [{"scope": "key", "per_day": "0.08", "soft_percent": 60}],
    "prices": PRICES,
}


async def admin_token(gateway: Gateway, role: str) -> str:
    service = await open_admin_service(runtime(gateway))
    return (await service.create_admin_token(cli_actor(), name=f"u-{role}", role=role))[1]


class Usage:
    def __init__(self, gateway: Gateway, http: aiohttp.ClientSession, token: str) -> None:
        self.gateway, self.http, self.token = gateway, http, token

    async def get(self, query: str = "", token: str | None = "") -> tuple[int, Any]:
        headers = {}
        if token != "":
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
        else:
            headers["Authorization"] = f"Bearer {self.token}"
        url = f"{self.gateway.admin_url}/admin/usage{query}"
        async with self.http.get(url, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)


@pytest.fixture
async def usage(tmp_path: Path, emulator: RunningEmulator) -> AsyncIterator[Usage]:
    async with (
        limited_gateway(tmp_path, {"emu": emulator}, LIMITS) as gateway,
        aiohttp.ClientSession() as http,
    ):
        yield Usage(gateway, http, await admin_token(gateway, "viewer"))


def line(answer: dict[str, Any], scope: str, label: str) -> dict[str, Any]:
    found = [x for x in answer["limits"] if x["scope"] == scope and x["label"] == label]
    assert len(found) == 1, (scope, label, answer["limits"])
    only: dict[str, Any] = found[0]
    return only


def since(spend: dict[str, Any]) -> float:
    """The start of a read-out's spend period, in epoch seconds."""
    return datetime.fromisoformat(spend["since"].replace("Z", "+00:00")).timestamp()


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> None:
    async with asyncio.timeout(seconds):
        while not await check():
            await asyncio.sleep(0.05)


async def test_no_or_invalid_credential_reads_nothing(usage: Usage) -> None:
    for token in (None, "kga_" + "A" * 40, "not-a-token"):
        status, body = await usage.get("", token=token)
        assert status == 401, body
        assert "limits" not in body and "spend" not in body


async def test_filters_are_validated_and_unknown_names_are_404(
    usage: Usage, tmp_path: Path
) -> None:
    key_id, key = await new_key(usage.gateway, "spender")
    status, body = await usage.get("?app=spender&key=" + key_id)
    assert status == 400
    assert "at most one of app, key, team or deployment (got app and key)" in str(body)
    status, body = await usage.get("?ap=spender")
    assert status == 400 and "unknown query parameter 'ap'" in str(body)
    status, body = await usage.get("?period=year")
    assert status == 400 and "'period' must be one of hour, day, week, month" in str(body)
    status, body = await usage.get("?app=")
    assert status == 400
    status, body = await usage.get("?app=nobody")
    assert status == 404 and "no app 'nobody'" in body["error"]["message"]
    status, body = await usage.get("?key=AAAAAAAAAAAA")
    assert status == 404 and "no key with id 'AAAAAAAAAAAA'" in body["error"]["message"]
    status, body = await usage.get("?team=nobody")
    assert status == 404 and "no team 'nobody'" in body["error"]["message"]
    status, body = await usage.get("?deployment=gpt-5")
    assert status == 404 and "no deployment 'gpt-5'" in body["error"]["message"]
    # A whole key pasted where its id belongs: refused, and never repeated back.
    status, body = await usage.get("?key=" + key)
    assert status == 404 and key not in str(body) and key[4:16] not in str(body)
    azure_like = "a" * 84  # a long secret pasted as a name: refused, not repeated
    for name in ("app", "team", "deployment"):
        for pasted in (key, azure_like):
            status, body = await usage.get(f"?{name}={pasted}")
            assert status in (400, 404) and pasted[:24] not in str(body), body

    async def recorded() -> bool:
        texts = audit_texts(tmp_path / "keyguard.db", ["admin"])
        return sum('"usage.read"' in t for t in texts) == 11  # those past the query's check

    await until(recorded)  # every read is audited, the pasted key in none of them
    for secret in (key, key[4:], azure_like):
        assert secret.encode() not in stored_bytes(tmp_path)


async def test_reading_changes_no_counter_and_is_audited(usage: Usage, tmp_path: Path) -> None:
    key_id, key = await new_key(usage.gateway, "spender")
    async with azure_client(usage.gateway, key) as c:
        await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=10)
    backend = memory(usage.gateway)
    before = (dict(backend.counters), dict(backend.expiry))
    for query in ("", "?key=" + key_id, "?app=spender", "?team=payments", "?deployment=gpt-4o"):
        status, body = await usage.get(query)
        assert status == 200, body
    assert (dict(backend.counters), dict(backend.expiry)) == before

    def reads() -> list[dict[str, Any]]:
        texts = audit_texts(tmp_path / "keyguard.db", ["admin"])
        return [r for r in map(json.loads, texts) if r["action"] == "usage.read"]

    async def all_audited() -> bool:
        return len(reads()) == 5

    await until(all_audited)
    assert [r["target"] for r in reads()] == [
        "usage",
        f"key:{key_id}",
        "app:spender",
        "team:payments",
        "deployment:gpt-4o",
    ]
    assert all(r["actor"].startswith("admin-token:") for r in reads())


async def test_a_key_budget_is_enforced_and_shown_as_the_limits_count_it(
    usage: Usage, emulator: RunningEmulator
) -> None:
    events: list[Event] = []
    runtime(usage.gateway).events.subscribe(events.append)
    key_id, key = await new_key(usage.gateway, "spender")
    other_id, other = await new_key(usage.gateway, "other")
    # the limits' clock is frozen (limited_gateway); the spend is read from the audit log
    # over the UTC day of the real clock
    day = window("day", time.time())[0]
    sent = 0
    async with azure_client(usage.gateway, key) as c:
        with pytest.raises(openai.RateLimitError) as caught:
            for _ in range(10):
                await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=20)
                sent += 1
    assert 1 <= sent < 10
    assert f"budget per day of key '{key_id}'" in caught.value.message
    spent = (await emulator_usage(emulator))["total"]["total_tokens"]
    (alert,) = [e for e in events if isinstance(e, SecurityEvent)]  # 60%: once in the window
    assert alert.kind == "budget_soft_threshold" and alert.key_id == key_id
    assert alert.evidence["budget"] == f"budget per day of key '{key_id}'"
    async with azure_client(usage.gateway, other) as c:  # its own budget: still open
        await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=5)

    status, answer = await usage.get("?key=" + key_id)
    assert status == 200, answer
    assert answer["scope"] == "key" and answer["name"] == key_id
    assert answer["now"].endswith("Z")
    (budget,) = answer["budgets"]
    assert budget["scope"] == "key" and budget["name"] == key_id
    assert budget["period"] == "day" and budget["currency"] == "USD"
    assert budget["limit"] == 0.08 and budget["soft_percent"] == 60
    assert budget["used"] == pytest.approx(spent * PRICE / 1e6, abs=1e-9)
    assert budget["remaining"] == pytest.approx(0.08 - budget["used"], abs=1e-9)
    assert budget["resets_at"].endswith("T00:00:00Z")
    tpm = line(answer, "key", "tokens per minute")
    assert (tpm["name"], tpm["limit"], tpm["used"]) == (key_id, 5000, spent)
    assert tpm["remaining"] == 5000 - spent and tpm["resets_at"].endswith(":00Z")
    assert line(answer, "key", "requests per minute")["used"] == sent  # the 429 charged none
    assert line(answer, "key", "concurrent requests")["used"] == 0
    assert line(answer, "key", "concurrent requests")["resets_at"] is None
    assert line(answer, "app", "tokens per day")["used"] == spent
    assert line(answer, "team", "requests per minute")["used"] == sent + 1  # both apps
    glob = line(answer, "global", "requests per minute")
    assert glob["name"] is None and glob["used"] == sent + 1
    assert not [x for x in answer["limits"] if x["scope"] == "deployment"]

    # The same numbers the backend holds, line by line.
    counters = memory(usage.gateway).counters
    assert counters[next(k for k in counters if k.startswith(f"key:{key_id}:tpm:"))] == spent

    async def audited() -> bool:
        spend = (await usage.get("?key=" + key_id))[1]["spend"]
        # a new UTC day's spend no longer has the requests sent before it: nothing to wait for
        return bool(spend["requests"] == sent + 1 or since(spend) != day)

    await until(audited)  # the refused request is audited too, at no cost
    spend = (await usage.get("?key=" + key_id))[1]["spend"]
    assert spend["period"] == "day" and spend["since"].endswith("T00:00:00Z")
    if since(spend) == day:  # read on the day the requests were sent
        assert spend["tokens"] == spent and spend["cost"] == pytest.approx(spent * PRICE / 1e6)
        assert [k["key_id"] for k in spend["by_key"]] == [key_id]
        assert spend["by_app"][0]["app"] == "spender" and not spend["truncated"]
    else:
        assert spend["tokens"] <= spent

    status, team = await usage.get("?team=payments")
    assert status == 200
    assert {(b["scope"], b["name"]) for b in team["budgets"]} == set()  # budgets are per key
    assert line(team, "team", "requests per minute")["used"] == sent + 1
    status, everything = await usage.get("?period=month")
    assert status == 200 and everything["scope"] == "all" and everything["name"] is None
    apps = {x["name"] for x in everything["limits"] if x["scope"] == "app"}
    assert {"spender", "other"} <= apps
    assert line(everything, "deployment", "tokens per minute")["name"] == "gpt-4o"
    assert everything["spend"]["period"] == "month"
    del other_id


async def keyguard(*args: str, token: str | None) -> tuple[int, str, str]:
    """Run the ``keyguard`` command in a process of its own: exit status, stdout, stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGUARD_")}
    if token is not None:
        env["KEYGUARD_ADMIN_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("keyguard")),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_usage_command_reads_the_admin_api(usage: Usage) -> None:
    key_id, key = await new_key(usage.gateway, "spender")
    async with azure_client(usage.gateway, key) as c:
        await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=10)
    url = usage.gateway.admin_url
    code, _, err = await keyguard("usage", "--url", url, "--app", "spender", token=None)
    assert code == 1 and err.startswith("error: set KEYGUARD_ADMIN_TOKEN to an admin token")
    code, _, err = await keyguard(
        "usage", "--url", url, "--app", "a", "--key", key_id, token=usage.token
    )
    assert code == 2 and "give at most one of --app, --key, --team, --deployment" in err
    code, _, err = await keyguard("usage", "--url", url, "--app", "nobody", token=usage.token)
    assert code == 1 and "usage refused (404): no app 'nobody'" in err
    code, _, err = await keyguard("usage", "--url", url, "--app", "x", token="kga_forged")
    assert code == 1 and "usage refused (401)" in err

    code, out, err = await keyguard("usage", "--url", url, "--key", key_id, token=usage.token)
    assert code == 0, err
    assert out.startswith(f"usage of key {key_id} at ")
    row = next(ln.split() for ln in out.splitlines() if ln.startswith("tokens per minute"))
    used = int(row[5])
    assert row[3:5] == ["key", key_id] and used > 0
    assert row[6:8] == ["5000", str(5000 - used)] and row[8] == "in"
    budget = next(ln.split() for ln in out.splitlines() if ln.startswith("per day"))
    assert budget[2:4] == ["key", key_id] and budget[6:8] == ["0.0800", "USD"]
    assert "spend this day (since " in out

    code, out, err = await keyguard(
        "usage", "--url", url, "--key", key_id, "--period", "month", "--json", token=usage.token
    )
    assert code == 0, err
    answer = json.loads(out)
    status, direct = await usage.get(f"?key={key_id}&period=month")
    assert status == 200
    assert answer["limits"] == direct["limits"] and answer["budgets"] == direct["budgets"]
    assert answer["spend"]["period"] == "month"


async def test_the_openapi_description_lists_the_read_out(usage: Usage) -> None:
    async with usage.http.get(usage.gateway.admin_url + "/admin/openapi.json") as resp:
        spec = await resp.json()
    operation = spec["paths"]["/admin/usage"]["get"]
    assert operation["x-keyguard-role"] == "viewer"
    assert [p["name"] for p in operation["parameters"]] == [
        "app",
        "key",
        "team",
        "deployment",
        "period",
    ]
    assert all(p["in"] == "query" for p in operation["parameters"])
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Usage"}
    usage_schema = spec["components"]["schemas"]["Usage"]
    assert {"scope", "name", "now", "limits", "budgets", "spend"} <= set(usage_schema["properties"])


async def test_without_limits_the_read_out_has_spend_only(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with running_gateway(tmp_path, emulator) as gateway, aiohttp.ClientSession() as http:
        usage = Usage(gateway, http, await admin_token(gateway, "viewer"))
        key_id, key = await new_key(gateway, "plain")
        month = window("month", time.time())[0]  # the spend's period, on the real clock
        async with azure_client(gateway, key) as c:
            await c.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=5)

        async def audited() -> bool:
            status, body = await usage.get("?app=plain&period=month")
            assert status == 200, body
            # a new month's spend no longer has the request: nothing to wait for
            return bool(body["spend"]["requests"] == 1 or since(body["spend"]) != month)

        await until(audited)
        status, body = await usage.get(f"?key={key_id}&period=month")
        assert status == 200 and body["limits"] == [] and body["budgets"] == []
        if since(body["spend"]) == month:
            assert body["spend"]["by_key"][0]["key_id"] == key_id


@pytest.mark.redis
async def test_the_read_out_refuses_to_guess_when_redis_is_down(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    server = RedisServer(free_port(), tmp_path)
    await server.start()
    limits = {**LIMITS, "backend": server.url, "on_backend_failure": "local"}
    try:
        async with (
            limited_gateway(tmp_path, {"emu": emulator}, limits) as gateway,
            aiohttp.ClientSession() as http,
        ):
            usage = Usage(gateway, http, await admin_token(gateway, "viewer"))
            key_id, _ = await new_key(gateway, "spender")
            status, body = await usage.get("?key=" + key_id)
            assert status == 200 and body["budgets"][0]["used"] == 0
            await server.stop()
            # Requests go on under the local fallback; the read-out cannot see the shared
            # counters, so it says so rather than show one replica's share as the truth.
            status, body = await usage.get("?key=" + key_id)
            assert status == 503, body
            assert "limits store is unreachable" in body["error"]["message"]
    finally:
        await server.stop()
