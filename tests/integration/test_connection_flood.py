"""The connection flood of the issue, on a real ``keyguard serve`` process (uvloop, the
default configuration) whose open-file limit is 1,024: 1,500 connections from one address
that each send half a header line.

Before connection hygiene the flood took every descriptor and then ``/healthz`` and every
proxied request got connection resets. Now the flooding address gets its share of the port
(a quarter of what the descriptor limit leaves) and the rest of its connections a 429 at once;
what it holds is closed after the header timeout; another address is served throughout.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
import yaml

from keyguard.config import ProxySettings
from keyguard.emulator.server import RunningEmulator
from keyguard.vault.master import create_master_key_file
from keyguard.wiring.connections import connection_limits
from keyguard.wiring.runtime import open_runtime
from tests.support.settings import keyguard_settings, upstream

from .sockets import HALF, SLACK, chat, opened, status_of, until_closed

pytestmark = pytest.mark.slow
NOFILE = 1024
ATTACK = 1500


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def served(tmp_path: Path, emulator: RunningEmulator) -> AsyncIterator[tuple[str, str, str]]:
    """``keyguard serve`` limited to NOFILE open files; its proxy URL, admin URL and a key."""
    create_master_key_file(tmp_path / "master.key")
    settings = keyguard_settings(tmp_path, upstreams=[upstream(emulator.url)])
    proxy, admin = _free_port(), _free_port()
    data = settings.model_dump(mode="json", exclude_defaults=True)
    data["listen"] = {"proxy": f"127.0.0.1:{proxy}", "admin": f"127.0.0.1:{admin}"}
    data["proxy"] = {"access_log": False}
    (tmp_path / "keyguard.yaml").write_text(yaml.safe_dump(data))
    rt = await open_runtime(settings, {})
    try:
        await rt.vault.put("upstream/emulator", emulator.keys()[0])
        _, key = await rt.keys.create("flood-test", now=datetime.now(UTC))
    finally:
        await rt.close()
    main = "from keyguard.cli.main import main; main()"
    serve = f"{sys.executable} -c '{main}' serve -c keyguard.yaml"
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", f"ulimit -n {NOFILE} && exec {serve}"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    admin_url = f"http://127.0.0.1:{admin}"
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(60):
            while True:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                try:
                    async with http.get(admin_url + "/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{proxy}", admin_url, key
    finally:
        proc.terminate()
        proc.wait(30)


async def test_a_flood_from_one_address_at_the_descriptor_limit(
    served: tuple[str, str, str],
) -> None:
    proxy_url, admin_url, key = served
    defaults = ProxySettings()
    share = connection_limits(defaults, NOFILE)[0].max_per_address
    assert share < ATTACK
    loop = asyncio.get_running_loop()
    conns = []
    for start in range(0, ATTACK, 100):
        begun = loop.time()
        batch = await asyncio.gather(
            *(opened(proxy_url, "127.0.0.2") for _ in range(min(100, ATTACK - start)))
        )
        for reader, writer in batch:
            writer.write(HALF)
            conns.append((reader, writer, begun))
    closed: list[tuple[int, float]] = []

    async def watch(reader: asyncio.StreamReader, since: float) -> None:
        answer = await until_closed(reader)
        closed.append((status_of(answer) if answer else 0, loop.time() - since))

    watchers = [asyncio.create_task(watch(r, since)) for r, _, since in conns]
    try:
        async with asyncio.timeout(30):
            while len(closed) < ATTACK - share:  # the refused ones, at once
                await asyncio.sleep(0.02)
        # 429, or a reset when the half line reached the closed socket before the answer was read
        assert {status for status, _ in closed} <= {429, 0}
        assert any(status == 429 for status, _ in closed)
        # The flood still holds its share; another address is served on both ports.
        assert await chat(proxy_url, key)
        async with aiohttp.ClientSession() as http:
            async with http.get(admin_url + "/healthz") as resp:
                assert resp.status == 200
        assert len(closed) == ATTACK - share, "the held connections were closed too early"
        async with asyncio.timeout(defaults.header_timeout_s + 30):
            await asyncio.gather(*watchers)
    finally:
        for task in watchers:
            task.cancel()
        for _, writer, _ in conns:
            writer.close()
    held = [after for status, after in closed if status == 408]
    assert len(held) == share
    assert min(held) >= defaults.header_timeout_s - SLACK
