"""``/livez`` and ``/readyz`` tell the truth, cheaply; ``/healthz`` answers as it always did."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from keyguard.emulator import RunningEmulator
from keyguard.server import Gateway
from keyguard.store.base import KeyRecord
from tests.support.gateway import new_key, running_gateway, runtime
from tests.support.settings import free_port, upstream


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


class CountingStore:
    """The gateway's store, counting the readiness probe's lookups (and able to hang)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lookups = 0
        self.hang = False

    async def get_key(self, key_id: str) -> KeyRecord | None:
        self.lookups += 1
        if self.hang:
            await asyncio.sleep(3600)
        result: KeyRecord | None = await self.inner.get_key(key_id)
        return result


def counting(gw: Gateway) -> CountingStore:
    assert gw.health is not None
    store = CountingStore(gw.health.store)
    gw.health.store = store  # type: ignore[assignment]
    return store


async def test_ready_live_and_healthz(tmp_path: Path, emulator: RunningEmulator) -> None:
    async with running_gateway(tmp_path, emulator) as gw, aiohttp.ClientSession() as http:
        status, body = await get(http, gw.admin_url + "/readyz")
        assert status == 200 and body["status"] == "ready"
        assert body["checks"] == {
            "store": {"ok": True},
            "upstreams": {"ok": True},
            "draining": {"ok": True},
        }
        status, body = await get(http, gw.admin_url + "/livez")
        assert status == 200 and body["status"] == "ok"
        assert await get(http, gw.admin_url + "/healthz") == (200, {"status": "ok"})
        assert gw.health is not None
        gw.health.draining = True
        status, body = await get(http, gw.admin_url + "/readyz")
        assert status == 503 and body["checks"]["draining"]["ok"] is False
        assert (await get(http, gw.admin_url + "/livez"))[0] == 200  # alive while draining


async def test_a_probe_flood_costs_about_one_store_lookup_a_second(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    connector = aiohttp.TCPConnector(limit=30)  # under the admin port's per-address bound
    async with (
        running_gateway(tmp_path, emulator) as gw,
        aiohttp.ClientSession(connector=connector) as http,
    ):
        store = counting(gw)
        started = asyncio.get_running_loop().time()
        answers = await asyncio.gather(*(get(http, gw.admin_url + "/readyz") for _ in range(300)))
        took = asyncio.get_running_loop().time() - started
        assert {status for status, _ in answers} == {200}
        assert store.lookups <= 1 + int(took)  # one round trip a second, however many probes


async def test_a_hung_store_makes_readiness_false_without_stalling_probes(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    connector = aiohttp.TCPConnector(limit=30)  # under the admin port's per-address bound
    async with (
        running_gateway(tmp_path, emulator) as gw,
        aiohttp.ClientSession(connector=connector) as http,
    ):
        store = counting(gw)
        store.hang = True
        async with asyncio.timeout(10):  # the probe's own bound is 2 s
            answers = await asyncio.gather(
                *(get(http, gw.admin_url + "/readyz") for _ in range(50))
            )
        for status, body in answers:
            assert status == 503 and body["status"] == "not ready"
            assert body["checks"]["store"] == {"ok": False, "reason": "no answer within 2 s"}
        assert store.lookups == 1
        assert (await get(http, gw.admin_url + "/livez"))[0] == 200


async def test_readiness_names_the_deployments_with_no_upstream_in_service(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    dead = upstream(f"http://127.0.0.1:{free_port()}", name="dead", deployments=["gpt-4o"])
    async with (
        running_gateway(
            tmp_path,
            upstreams=[dead, upstream(emulator.url, deployments=["gpt-4o-mini"])],
            vault={"upstream/dead": "0" * 32 + "x", "upstream/emulator": emulator.keys()[0]},
        ) as gw,
        aiohttp.ClientSession() as http,
    ):
        status, answer = await get(http, gw.admin_url + "/readyz")
        assert status == 503
        assert answer["checks"]["upstreams"] == {
            "ok": False,
            "reason": "no upstream in service for: gpt-4o",
        }
        assert answer["checks"]["store"] == {"ok": True}
        # the deployment an upstream still serves is fine; a request to it is served
        _, key = await new_key(gw)
        url = f"{gw.proxy_url}/openai/deployments/gpt-4o-mini/chat/completions"
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        async with http.post(
            url, params={"api-version": "2024-10-21"}, json=body, headers={"api-key": key}
        ) as resp:
            assert resp.status == 200


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
async def test_reload_needs_the_admin_role_and_keyguard_serve(
    tmp_path: Path, emulator: RunningEmulator, role: str
) -> None:
    from keyguard.cli.support import cli_actor
    from keyguard.wiring.access import open_admin_service

    async with running_gateway(tmp_path, emulator) as gw, aiohttp.ClientSession() as http:
        service = await open_admin_service(runtime(gw))
        token = (await service.create_admin_token(cli_actor(), name="t", role=role))[1]
        headers = {"Authorization": f"Bearer {token}"}
        async with http.post(gw.admin_url + "/admin/reload", headers=headers) as resp:
            body = await resp.json()
        if role == "admin":  # allowed, but this gateway has no supervisor to reload it
            assert resp.status == 409 and body["error"]["code"] == "ReloadUnavailable"
            assert "keyguard serve" in body["error"]["message"]
        else:
            assert resp.status == 403
        spec = (await get(http, gw.admin_url + "/admin/openapi.json"))[1]
        assert "post" in spec["paths"]["/admin/reload"]
