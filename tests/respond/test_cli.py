"""``keyguard replay``, ``keyguard keys suspend/resume --app`` and ``GET /admin/alerts``."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web
from click.testing import CliRunner

from keyguard.cli.main import cli
from keyguard.config import load_settings
from keyguard.core.observation import Observation
from keyguard.detect.detection import Detection
from keyguard.monitor.store import MonitorStore
from keyguard.respond.incidents import IncidentBook
from keyguard.wiring.runtime import runtime
from tests.support.settings import keyguard_config, write_config

T = 1_800_000_000.0


def test_replay_prints_incidents_and_scores_labelled_traffic(tmp_path: Path) -> None:
    lines = []
    for i in range(30):  # ordinary use
        obs = Observation(
            at=T + i,
            key_id="KEYAAAAAAAA1",
            app="a",
            network="10.0.0.0/24",
            status=200,
            upstream_status=200,
            operation="chat",
            deployment="d",
        )
        lines.append({**obs.to_record(), "label": "benign"})
    probe = Observation(
        at=T + 40,
        key_id="KEYAAAAAAAA1",
        app="a",
        network="10.0.0.0/24",
        status=200,
        upstream_status=200,
        operation="chat",
        deployment="d",
        max_tokens=1,
        empty_prompt=True,
    )
    lines.append({**probe.to_record(), "label": "attack:probe:key_probe"})
    path = tmp_path / "traffic.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    result = CliRunner().invoke(cli, ["replay", str(path)])
    assert result.exit_code == 0, result.output
    assert "replayed 31 requests; 1 incidents" in result.output
    assert "| key_probe | 1 | 1 | 100% | 1 / 1 |" in result.output
    as_json = CliRunner().invoke(cli, ["replay", str(path), "--json"])
    assert json.loads(as_json.output)[0]["rule"] == "key_probe"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    failed = CliRunner().invoke(cli, ["replay", str(bad)])
    assert failed.exit_code == 1 and "line 1" in failed.output


def test_suspend_and_resume_an_app(config_path: Path) -> None:
    async def setup() -> list[str]:
        async with runtime(load_settings(config_path), {}) as rt:
            now = datetime.now(UTC)
            return [(await rt.keys.create("team", now=now))[0].key_id for _ in range(2)]

    ids = asyncio.run(setup())
    runner = CliRunner()
    out = runner.invoke(cli, ["keys", "suspend", "--app", "team", "-c", str(config_path)])
    assert out.exit_code == 0 and all(f"suspended key {i}" in out.output for i in ids)
    listed = runner.invoke(cli, ["keys", "list", "--all", "--json", "-c", str(config_path)])
    assert {k["state"] for k in json.loads(listed.output)} == {"suspended"}
    out = runner.invoke(cli, ["keys", "resume", "--app", "team", "-c", str(config_path)])
    assert out.exit_code == 0 and all(f"resumed key {i}" in out.output for i in ids)
    usage = runner.invoke(cli, ["keys", "suspend", "-c", str(config_path)])
    assert usage.exit_code == 2
    audit = runner.invoke(cli, ["audit", "export", "-c", str(config_path)])
    lines = [json.loads(line) for line in audit.output.splitlines()]
    actions = [line["data"]["action"] for line in lines if line.get("kind") == "admin"]
    assert actions.count("keys.suspend") == 2 and actions.count("keys.resume") == 2


async def test_admin_alerts_route_lists_incidents_for_an_admin(config_path: Path) -> None:
    from keyguard.admin.api import AdminApi
    from keyguard.admin.app import create_admin_app
    from keyguard.admin.auth import AdminAuthenticator
    from keyguard.cli.support import cli_actor
    from keyguard.wiring.access import open_admin_service

    async with runtime(load_settings(config_path), {}) as rt:
        store = MonitorStore(rt.store.engine)  # type: ignore[attr-defined]
        incident, _ = IncidentBook(3600).take(
            Detection("decoy", "critical", "key:DECOYDECOY01", "decoy used", T), T
        )
        await store.save_incident(incident)
        service = await open_admin_service(rt)
        _, token = await service.create_admin_token(cli_actor(), name="t", role="viewer")
        api = AdminApi(service, AdminAuthenticator(service.tokens, events=rt.events))
        app = create_admin_app(rt.store, api=api, allowed_hosts=())
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(url + "/admin/alerts") as resp:
                    assert resp.status == 401
                auth = {"Authorization": f"Bearer {token}"}
                async with http.get(url + "/admin/alerts?since=3650d", headers=auth) as resp:
                    body = await resp.json()
                async with http.get(url + "/admin/alerts?since=soon", headers=auth) as resp:
                    assert resp.status == 400
                async with http.get(url + "/admin/openapi.json") as resp:
                    spec = await resp.json()
                async with http.post(
                    url + f"/admin/alerts/{incident.id}/resolve", headers=auth
                ) as resp:
                    assert resp.status == 403  # a viewer cannot resolve
        finally:
            await runner.cleanup()
    assert "/admin/alerts" in spec["paths"] and "Incident" in spec["components"]["schemas"]
    assert [i["rule"] for i in body["incidents"]] == ["decoy"]


def test_replay_judges_new_keys_by_the_config_s_limit_rules(tmp_path: Path) -> None:
    """``keyguard replay -c`` uses the config's key and app rules: a new key spending its
    rule in its first minute is an incident with them, not without."""
    lines = []
    for i in range(10):  # 20,500 tokens in 27 s by a key never seen before
        obs = Observation(
            at=T + i * 3,
            key_id="KEYNEW000001",
            app="fresh",
            network="10.0.0.0/24",
            status=200,
            upstream_status=200,
            operation="chat",
            deployment="d",
            prompt_tokens=2000,
            completion_tokens=50,
        )
        lines.append(obs.to_record())
    path = tmp_path / "traffic.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    config = write_config(
        tmp_path, keyguard_config(tmp_path, limits={"rules": [{"scope": "key", "tpm": 20000}]})
    )
    without = CliRunner().invoke(cli, ["replay", str(path)])
    assert without.exit_code == 0 and "0 incidents" in without.output, without.output
    found = CliRunner().invoke(cli, ["replay", str(path), "-c", str(config), "--json"])
    assert found.exit_code == 0, found.output
    [incident] = json.loads(found.output)
    assert incident["rule"] == "velocity"
    assert incident["evidence"]["first"]["judged_against"] == "declared: key limit tpm 20000"
