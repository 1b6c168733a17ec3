"""Acknowledging an incident: an operator's status lives in the store and every replica's
responder defers to it. Hostile callers first (a viewer, an unknown or malformed id, a second
acknowledgement, a resolved incident), then what repeats do: an acknowledged incident stays
acknowledged and counts them; a resolved one is followed by a new incident. Over the admin API
on a running gateway, the CLI, and two responders sharing one store."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from click.testing import CliRunner

from keyguard.cli.main import cli
from keyguard.cli.support import cli_actor
from keyguard.config import load_settings
from keyguard.detect.detection import Detection
from keyguard.emulator import RunningEmulator
from keyguard.events import AdminAction, Event, EventBus
from keyguard.monitor.store import MonitorStore
from keyguard.respond.blocks import BlockList
from keyguard.respond.incidents import IncidentBook
from keyguard.respond.responder import Responder
from keyguard.respond.settings import RespondSettings
from keyguard.server import Gateway
from keyguard.wiring.runtime import runtime as open_runtime
from tests.console.support import admin_token, console_gateway
from tests.support.gateway import azure_client, new_key, runtime

T = 1_800_000_000.0
DECOY = "honey"


def finding(at: float) -> Detection:
    return Detection("velocity", "high", "key:KEYAAAAAAAA1", "too fast", at, key_id="KEYAAAAAAAA1")


# -- the responder and the store, as two replicas see them -----------------------------------


async def test_every_replicas_responder_keeps_an_operators_status(config_path: Path) -> None:
    async with open_runtime(load_settings(config_path), {}) as rt:
        store = MonitorStore(rt.store.engine)  # type: ignore[attr-defined]
        settings = RespondSettings(policy={"velocity": {"high": ["throttle"]}})
        blocks = BlockList(clock=lambda: T)

        def replica() -> Responder:
            return Responder(settings, IncidentBook(3600), events=EventBus(), blocks=blocks,
                             store=store, clock=lambda: T)  # fmt: skip

        here, there = replica(), replica()
        opened = await here.handle(finding(T))
        theirs = await there.handle(finding(T))  # each replica's book opens its own
        assert opened.status == theirs.status == "open"
        acked = await store.acknowledge(opened.id, "admin-token:AAAAAAAAAAAA", datetime.now(UTC))
        assert acked is not None and acked.status == "acknowledged"
        here.status_changed(opened.id)  # told where the operator acted: the next repeat reads
        again = await here.handle(finding(T + 1))
        assert (again.id, again.status, again.count) == (opened.id, "acknowledged", 2)
        assert again.acknowledged_by == "admin-token:AAAAAAAAAAAA"
        (stored,) = [i for i in await store.incidents() if i.id == opened.id]
        assert (stored.status, stored.count) == ("acknowledged", 2)
        assert stored.acknowledged_at == acked.acknowledged_at

        # the other replica was not told (a lost message): its next save still keeps the status
        acked_there = await store.acknowledge(
            theirs.id, "admin-token:BBBBBBBBBBBB", datetime.now(UTC)
        )
        assert acked_there is not None
        for n in range(2, 5):
            later = await there.handle(finding(T + 20 * n))
        assert later.id == theirs.id and later.status == "acknowledged" and later.count == 4
        (stored,) = [i for i in await store.incidents() if i.id == theirs.id]
        assert stored.status == "acknowledged" and stored.count == 4

        # resolved: the next finding is a new incident, with the policy's actions again
        await store.set_status(opened.id, "resolved", datetime.now(UTC))
        blocks.remove("key", "KEYAAAAAAAA1")
        here.status_changed(opened.id)
        reopened = await here.handle(finding(T + 2))
        assert reopened.id != opened.id and reopened.status == "open" and reopened.count == 1
        assert reopened.actions == ("throttle",) and blocks.until("key", "KEYAAAAAAAA1")
        by_id = {i.id: i for i in await store.incidents()}
        assert by_id[opened.id].status == "resolved" and by_id[opened.id].count == 2
        assert by_id[reopened.id].status == "open"


# -- the admin API on a running gateway ------------------------------------------------------


@pytest.fixture
async def gw(tmp_path: Path, emulator: RunningEmulator) -> AsyncIterator[Gateway]:
    monitor = {"detect": {"decoy_apps": [DECOY]}}
    async with console_gateway(tmp_path, emulator, monitor=monitor) as gateway:
        yield gateway


async def present(gw: Gateway, key: str) -> None:
    """Use a decoy key (refused; a finding of the decoy rule), and wait for its incident."""
    async with azure_client(gw, key) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            )
    assert gw.monitoring is not None
    await gw.monitoring.recorder.drain()


async def stored_incident(gw: Gateway, rule: str) -> Any:
    assert gw.access is not None
    listed = await gw.access.api.service.list_incidents(cli_actor())
    (found,) = [i for i in listed if i.rule == rule]
    return found


async def call(
    http: aiohttp.ClientSession, gw: Gateway, token: str, method: str, path: str
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.request(method, gw.admin_url.rstrip("/") + path, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_acknowledge_over_the_api(gw: Gateway) -> None:
    events: list[Event] = []
    runtime(gw).events.subscribe(events.append)
    _, decoy = await new_key(gw, DECOY)
    await present(gw, decoy)
    incident = await stored_incident(gw, "decoy")
    viewer, operator = await admin_token(gw, "viewer"), await admin_token(gw, "operator")
    async with aiohttp.ClientSession() as http:
        ack = f"/admin/alerts/{incident.id}/acknowledge"
        # hostile first: a viewer changes nothing; unknown and malformed ids are 404s
        status, body = await call(http, gw, viewer, "POST", ack)
        assert status == 403 and "error" in body
        assert (await stored_incident(gw, "decoy")).status == "open"
        for bad in ("0123456789abcdef", "ZZZ", "%3Cscript%3E", "0" * 400):
            status, body = await call(
                http, gw, operator, "POST", f"/admin/alerts/{bad}/acknowledge"
            )
            assert status == 404 and "<script>" not in json.dumps(body), bad
        status, body = await call(http, gw, viewer, "GET", "/admin/alerts?status=bogus")
        assert status == 400

        status, first = await call(http, gw, operator, "POST", ack)
        assert status == 200 and first["status"] == "acknowledged"
        assert first["acknowledged_by"].startswith("admin-token:") and first["acknowledged_at"]
        status, second = await call(http, gw, operator, "POST", ack)  # idempotent
        assert status == 200 and second == first

        # a repeat of the finding keeps it acknowledged and counts on it
        await present(gw, decoy)
        deadline = time.monotonic() + 10
        while (now := await stored_incident(gw, "decoy")).count < 2:
            assert time.monotonic() < deadline, "the repeat was never counted"
            await asyncio.sleep(0.05)
        assert now.id == incident.id and now.status == "acknowledged"
        assert now.updated_at >= incident.updated_at
        assert now.acknowledged_by == first["acknowledged_by"]
        status, listed = await call(http, gw, viewer, "GET", "/admin/alerts?status=acknowledged")
        assert status == 200 and [i["id"] for i in listed["incidents"]] == [incident.id]
        status, listed = await call(http, gw, viewer, "GET", "/admin/alerts?status=open")
        assert listed["incidents"] == []

        # resolved: it cannot be acknowledged; the next finding opens a new incident
        status, _ = await call(http, gw, operator, "POST", f"/admin/alerts/{incident.id}/resolve")
        assert status == 200
        status, body = await call(http, gw, operator, "POST", ack)
        assert status == 409 and body["error"]["code"] == "IncidentResolved"
        await present(gw, decoy)
        status, listed = await call(http, gw, viewer, "GET", "/admin/alerts?status=unresolved")
        (new,) = listed["incidents"]
        assert new["id"] != incident.id and new["status"] == "open" and new["count"] == 1
        status, spec = await call(http, gw, viewer, "GET", "/admin/openapi.json")
        assert "/admin/alerts/{incident_id}/acknowledge" in spec["paths"]
    done = [(e.action, e.target) for e in events if isinstance(e, AdminAction)]
    assert done.count(("alerts.acknowledge", f"incident:{incident.id}")) == 3  # 2 + refused


# -- the CLI ---------------------------------------------------------------------------------


def test_acknowledge_from_the_cli(config_path: Path) -> None:
    async def open_one() -> str:
        async with open_runtime(load_settings(config_path), {}) as rt:
            store = MonitorStore(rt.store.engine)  # type: ignore[attr-defined]
            incident, _ = IncidentBook(3600).take(finding(T), T)
            await store.save_incident(incident)
            return incident.id

    incident_id = asyncio.run(open_one())
    runner = CliRunner()
    unknown = runner.invoke(
        cli, ["alerts", "acknowledge", "0123456789abcdef", "-c", str(config_path)]
    )
    assert unknown.exit_code == 1 and "no incident" in unknown.output
    out = runner.invoke(cli, ["alerts", "acknowledge", incident_id, "-c", str(config_path)])
    assert out.exit_code == 0 and "acknowledged by cli:" in out.output, out.output
    again = runner.invoke(cli, ["alerts", "acknowledge", incident_id, "-c", str(config_path)])
    assert again.exit_code == 0 and again.output == out.output  # who and when stay the first
    listed = runner.invoke(cli, ["alerts", "list", "--json", "-c", str(config_path)])
    (shown,) = json.loads(listed.output)  # the default list: open and acknowledged
    assert shown["status"] == "acknowledged" and shown["acknowledged_by"].startswith("cli:")
    only_open = runner.invoke(cli, ["alerts", "list", "--status", "open", "-c", str(config_path)])
    assert "no incidents" in only_open.output
    table = runner.invoke(cli, ["alerts", "list", "-c", str(config_path)])
    assert "acknowledged" in table.output and incident_id in table.output
    runner.invoke(cli, ["alerts", "resolve", incident_id, "-c", str(config_path)])
    refused = runner.invoke(cli, ["alerts", "acknowledge", incident_id, "-c", str(config_path)])
    assert refused.exit_code == 1 and "resolved" in refused.output
    audit = runner.invoke(cli, ["audit", "export", "-c", str(config_path)])
    lines = [json.loads(line) for line in audit.output.splitlines()]
    actions = [line["data"]["action"] for line in lines if line.get("kind") == "admin"]
    assert actions.count("alerts.acknowledge") == 3
