"""``keyguard serve`` as processes: workers on shared sockets, crashes, reloads, drains.

Every test runs the real command (a supervisor forking its workers) in front of the emulator,
drives it with the official SDK over loopback sockets, and sends it real signals.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import yaml
from sqlalchemy import select

from keyguard.emulator import RunningEmulator
from keyguard.emulator.config import EmulatorConfig
from keyguard.store.schema import audit_records
from keyguard.wiring.access import open_admin_service
from keyguard.wiring.runtime import open_runtime
from tests.support.emulators import API_VERSION
from tests.support.gateway import store_secrets
from tests.support.serve import Serve, serve_config, serving
from tests.support.settings import keyguard_settings, upstream
from tests.support.stored import record_text

from .limited import emulator_usage

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

STREAMING = EmulatorConfig(stream_delay=0.05, default_completion_tokens=60)  # ~3 s a stream
LIMITS = {"rules": [{"scope": "key", "tpm": 1_000_000, "tokens_per_day": 10_000_000}]}


async def key_for(tmp: Path, app: str = "app") -> str:
    rt = await open_runtime(keyguard_settings(tmp), {})
    try:
        return (await rt.keys.create(app, now=datetime.now(UTC)))[1]
    finally:
        await rt.close()


async def admin_token(tmp: Path, role: str) -> str:
    from keyguard.cli.support import cli_actor

    rt = await open_runtime(keyguard_settings(tmp), {})
    try:
        service = await open_admin_service(rt)
        return (await service.create_admin_token(cli_actor(), name=f"t-{role}", role=role))[1]
    finally:
        await rt.close()


async def audit(tmp: Path) -> list[dict[str, Any]]:
    rt = await open_runtime(keyguard_settings(tmp), {})
    try:
        assert rt.engine is not None
        async with rt.engine.connect() as conn:
            rows = await conn.execute(
                select(audit_records.c.data, audit_records.c.packed).order_by(audit_records.c.seq)
            )
            return [orjson.loads(record_text(data, packed)) for data, packed in rows]
    finally:
        await rt.close()


def client(kg: Serve, key: str) -> openai.AsyncAzureOpenAI:
    return openai.AsyncAzureOpenAI(
        azure_endpoint=kg.proxy_url, api_key=key, api_version=API_VERSION, max_retries=0
    )


async def livez(kg: Serve) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(kg.admin_url + "/livez") as resp,
    ):
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def chat(c: openai.AsyncAzureOpenAI) -> None:
    answer = await c.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert answer.choices[0].message.content


async def stream_to_end(c: openai.AsyncAzureOpenAI, started: asyncio.Event) -> str | None:
    stream = await c.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "tell"}], stream=True
    )
    finish = None
    async for chunk in stream:
        started.set()
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
    return finish


def rewrite(path: Path, **changes: Any) -> None:
    config = yaml.safe_load(path.read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config))


def mapped(pid: int) -> str:
    """The files process ``pid`` has mapped (its shared libraries and extension modules)."""
    return Path(f"/proc/{pid}/maps").read_text()


# -- workers --------------------------------------------------------------------------------


async def test_workers_share_the_ports_and_a_crashed_one_comes_back(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with serving(tmp_path, emulator, workers=2) as kg:
        key = await key_for(tmp_path)
        first = kg.workers()
        assert len(first) == 2
        async with client(kg, key) as c:
            await asyncio.gather(*(chat(c) for _ in range(20)))
            os.kill(first[0], signal.SIGKILL)  # a crash, as the supervisor sees it
            await kg.wait_for(r"restarting worker")
            await kg.wait_for(r"keyguard proxy on", times=3)
            await asyncio.gather(*(chat(c) for _ in range(20)))
        now = kg.workers()
        assert len(now) == 2 and first[1] in now and first[0] not in now
        # two workers share the gateway's modules: the supervisor imported them before forking
        assert "aiohttp/_http_parser" in mapped(kg.pid)


async def test_the_supervisor_of_one_worker_holds_no_copy_of_the_gateway(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """With one worker, the gateway's modules are imported by the worker after the fork: the
    supervisor, which only reads the config and keeps the sockets, adds tens of MB to the tree,
    not a second gateway (its HTTP server and store driver are never loaded there). Several
    workers share them copy-on-write from the supervisor (test above: it maps them then)."""
    async with serving(tmp_path, emulator, workers=1) as kg:
        key = await key_for(tmp_path)
        async with client(kg, key) as c:
            await chat(c)
        (worker,) = kg.workers()
        for module in ("aiohttp/_http_parser", "greenlet/_greenlet", "yarl/_quoting"):
            assert module in mapped(worker), module
            assert module not in mapped(kg.pid), module


@pytest.mark.parametrize("workers", [1, 2])
async def test_each_request_is_one_access_line(
    tmp_path: Path, emulator: RunningEmulator, workers: int
) -> None:
    """The worker sets logging up again after the supervisor's fork: it must replace the access
    log's handler it inherited, not add a second one (every line was written twice)."""
    async with serving(tmp_path, emulator, workers=workers) as kg:
        key = await key_for(tmp_path)
        async with client(kg, key) as c:
            await asyncio.gather(*(chat(c) for _ in range(6)))
        await kg.stop()  # the batched access log flushed at exit
    ids = [
        entry["request_id"]
        for entry in (orjson.loads(line) for line in kg.lines if line.startswith("{"))
        if entry["logger"] == "keyguard.access"
    ]
    assert len(ids) == 6 and len(set(ids)) == 6, ids


@pytest.mark.parametrize("how", ["flag", "config"])
async def test_many_workers_with_in_process_counters_are_refused(
    tmp_path: Path, emulator: RunningEmulator, how: str
) -> None:
    path, _ = await serve_config(tmp_path, emulator, limits=LIMITS)
    if how == "config":
        rewrite(path, workers=2)
    kg = Serve(path, ("--workers", "2") if how == "flag" else ())
    await kg.start(wait=False)
    assert await kg.wait() == 1
    errors = [line for line in kg.lines if "error" in line.lower()]
    assert len(errors) == 1, kg.log_tail()
    assert "limits.backend: redis://" in errors[0] and "workers: 1" in errors[0]
    assert not kg.count("keyguard proxy on")


@pytest.mark.slow
async def test_a_crash_loop_stops_the_supervisor_instead_of_forking_forever(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with serving(tmp_path, emulator) as kg:
        for crash in range(1, 6):
            await kg.wait_for(r"keyguard proxy on", times=crash)
            (worker,) = kg.workers()
            os.kill(worker, signal.SIGKILL)
            await kg.wait_for(r"exited \(signal 9\) without being asked", times=crash)
        assert await kg.wait() == 1
        assert kg.count("workers keep crashing") == 1
        assert kg.count("keyguard proxy on") == 5  # four restarts, then it gave up
        assert not kg.workers()


# -- reload ---------------------------------------------------------------------------------


@pytest.mark.parametrize("emulator_config", [STREAMING], ids=["slow-stream"])
@pytest.mark.parametrize("limits", [None, LIMITS], ids=["no-counters", "in-process-counters"])
async def test_a_stream_in_flight_completes_across_a_reload(
    tmp_path: Path, emulator: RunningEmulator, limits: dict[str, Any] | None
) -> None:
    async with serving(tmp_path, emulator, **({"limits": limits} if limits else {})) as kg:
        key = await key_for(tmp_path)
        assert (await livez(kg))["generation"] == 1
        async with client(kg, key) as c:
            started = asyncio.Event()
            stream = asyncio.create_task(stream_to_end(c, started))
            await started.wait()
            kg.signal(signal.SIGHUP)
            assert await stream == "stop"  # every chunk, to the end
            await kg.wait_for(r"reloaded \(generation 2\)")
            await chat(c)
        # the old generation retires once the new one serves: new connections soon reach only
        # the new one
        async with asyncio.timeout(30):
            while (await livez(kg))["generation"] != 2:
                await asyncio.sleep(0.05)


async def test_an_invalid_reload_changes_nothing(tmp_path: Path, emulator: RunningEmulator) -> None:
    async with serving(tmp_path, emulator) as kg:
        key = await key_for(tmp_path)
        before = await livez(kg)
        good = kg.config.read_text()
        rewrite(kg.config, upstreams=[{"name": "broken"}])  # no endpoint, no credential
        kg.signal(signal.SIGHUP)
        await kg.wait_for(r"reload refused, the running configuration stays: .*upstreams")
        async with client(kg, key) as c:
            await chat(c)
        assert await livez(kg) == before  # the same process, the same generation
        kg.config.write_text("listen: [not, a, mapping")
        kg.signal(signal.SIGHUP)
        await kg.wait_for(r"reload refused", times=2)
        assert await livez(kg) == before
        kg.config.write_text(good)
    rejected = [r for r in await audit(tmp_path) if r.get("kind") == "config_reload_rejected"]
    assert len(rejected) == 2 and "upstreams" in rejected[0]["summary"]


async def test_a_storm_of_sighups_is_a_reload_or_two(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with serving(tmp_path, emulator) as kg:
        key = await key_for(tmp_path)
        async with client(kg, key) as c:
            for _ in range(50):
                kg.signal(signal.SIGHUP)
            await kg.wait_for(r"reloaded \(generation 2\)")
            await chat(c)
            await asyncio.sleep(0)
        # whatever arrived during the first reload is one more, at most; then it settles
        async with asyncio.timeout(60):
            while len(kg.workers()) > 1:  # retiring workers (and audit writers) finish
                await asyncio.sleep(0.1)
        assert kg.count(r"reloaded \(generation") <= 2
        assert kg.count(r"keyguard proxy on") <= 3


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(stream_delay=0.005)], ids=["stream"])
async def test_a_reload_under_load_drops_no_request(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with serving(tmp_path, emulator) as kg:
        key = await key_for(tmp_path)
        done = asyncio.Event()
        served = 0

        async def load(c: openai.AsyncAzureOpenAI) -> None:
            nonlocal served
            while not done.is_set():
                if served % 2:
                    await chat(c)
                else:
                    assert await stream_to_end(c, asyncio.Event()) == "stop"
                served += 1

        async with client(kg, key) as c:
            workers = [asyncio.create_task(load(c)) for _ in range(6)]
            for generation in (2, 3):
                await asyncio.sleep(0.5)
                kg.signal(signal.SIGHUP)
                await kg.wait_for(rf"reloaded \(generation {generation}\)")
            await asyncio.sleep(0.5)
            done.set()
            await asyncio.gather(*workers)  # any failed request fails the test
        assert served > 20


async def test_a_reload_through_the_admin_api_is_authorized_and_audited(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    other = await _second_emulator()
    try:
        async with serving(tmp_path, emulator) as kg:
            key = await key_for(tmp_path)
            viewer, admin = (
                await admin_token(tmp_path, "viewer"),
                await admin_token(tmp_path, "admin"),
            )
            await store_secrets(keyguard_settings(tmp_path), {"upstream/other": other.keys()[0]})
            rewrite(kg.config, upstreams=[upstream(other.url, name="other")])
            async with aiohttp.ClientSession() as http:
                for token, expected in ((None, 401), (viewer, 403)):
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    async with http.post(kg.admin_url + "/admin/reload", headers=headers) as r:
                        assert r.status == expected
                assert (await livez(kg))["generation"] == 1  # nothing moved
                async with http.post(
                    kg.admin_url + "/admin/reload", headers={"Authorization": f"Bearer {admin}"}
                ) as r:
                    assert r.status == 202
                    answer = await r.json()
            assert answer["status"] == "reloading" and "upstreams" in answer["changed"]
            assert answer["upstream_endpoints"] == {"other": other.url}
            assert answer["restart_required"] == []
            await kg.wait_for(r"reloaded \(generation 2\)")
            async with client(kg, key) as c:
                await chat(c)
            assert (await emulator_usage(other))["total"][
                "requests"
            ] >= 1  # served by the new upstream
        rows = await audit(tmp_path)
        reloads = [r for r in rows if r.get("action") == "config.reload"]
        assert len(reloads) == 1 and reloads[0]["actor"].startswith("admin-token:")
        assert reloads[0]["after"]["upstream_endpoints"] == {"other": other.url}
    finally:
        await other.stop()


async def test_keyguard_reload_refuses_an_invalid_file_and_names_the_problem(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with serving(tmp_path, emulator) as kg:
        admin = await admin_token(tmp_path, "admin")
        rewrite(kg.config, store="mysql://nope")
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("keyguard")),
            "reload",
            "--url",
            kg.admin_url,
            "-c",
            str(kg.config),
            env={**os.environ, "KEYGUARD_ADMIN_TOKEN": admin},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 1
        assert err.decode().count("\n") == 1 and "store must be a sqlite" in err.decode()
        assert admin not in err.decode() + out.decode()
        assert (await livez(kg))["generation"] == 1


# -- drain ----------------------------------------------------------------------------------


@pytest.mark.parametrize("emulator_config", [STREAMING], ids=["slow-stream"])
async def test_sigterm_drains_a_stream_in_flight_and_exits_0(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    listen = {"proxy": "127.0.0.1:0", "admin": "127.0.0.1:0", "drain_grace_s": 1.0}
    path, _ = await serve_config(tmp_path, emulator, listen=listen)
    kg = Serve(path)
    await kg.start()
    key = await key_for(tmp_path)
    async with client(kg, key) as c, aiohttp.ClientSession() as http:
        started = asyncio.Event()
        stream = asyncio.create_task(stream_to_end(c, started))
        await started.wait()
        kg.signal(signal.SIGTERM)
        async with asyncio.timeout(5):  # readiness turns false during the grace
            while True:
                async with http.get(kg.admin_url + "/readyz") as r:
                    if r.status == 503:
                        body = await r.json()
                        break
                await asyncio.sleep(0.05)
        assert body["checks"]["draining"] == {"ok": False, "reason": "the process is stopping"}
        host, port = kg.proxy_url.removeprefix("http://").rsplit(":", 1)
        async with asyncio.timeout(5):  # then new connections are refused
            while True:
                try:
                    _, writer = await asyncio.open_connection(host, int(port))
                except ConnectionRefusedError:
                    break
                writer.close()
                await asyncio.sleep(0.05)
        assert not stream.done()
        assert await stream == "stop"
    assert await kg.wait() == 0


async def _second_emulator() -> RunningEmulator:
    from keyguard.emulator.server import start_emulator

    return await start_emulator(EmulatorConfig())
