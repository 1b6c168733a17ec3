"""Connection hygiene over real sockets: half-open connections, slow bodies, idle keep-alive
and the connection caps, on the proxy port and the admin port.

Each test configures the timeouts small and waits on what the gateway does (it answers and
closes the socket); the bounds around those waits only turn a hang into a failure. Loopback
has the whole of 127/8, so clients bind 127.0.0.2, 127.0.0.3, ... to be other addresses.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from keyguard.emulator.server import RunningEmulator
from keyguard.server import Gateway
from tests.support.gateway import start_gateway
from tests.support.servers import lacks_on_granian

from .sockets import (
    HALF,
    SLACK,
    answer_of,
    chat,
    error_code,
    metric,
    opened,
    request,
    sdk,
    status_of,
    until_closed,
    wait_until,
)

# What the proxy port does not do on Granian (tests/support/servers.py)
HEADER_408 = (
    "a request line and headers late are cut by Granian's header read timeout, silently (no "
    "408), and nothing counts them (ConnectionGuard.header_timeouts, .open)"
)
IDLE = (
    "a kept-alive connection is closed by the header read timeout (header_timeout_s), not "
    "after idle_timeout_s"
)
CAPS = (
    "no connection caps: Granian serves max_connections at once and holds more in the "
    "kernel's backlog (no 503), per address nothing"
)


async def new_key(gw: Gateway, app: str = "conn-app") -> str:
    assert gw.runtime is not None
    return (await gw.runtime.keys.create(app, now=datetime.now(UTC)))[1]


@pytest.fixture
async def started(tmp_path: Path, emulator: RunningEmulator) -> AsyncIterator[Any]:
    gateways: list[Gateway] = []

    async def start(**proxy: Any) -> Gateway:
        gw = await start_gateway(tmp_path, emulator.url, emulator.keys()[0], **proxy)
        gateways.append(gw)
        return gw

    try:
        yield start
    finally:
        for gw in gateways:
            await gw.stop()


def descriptors_for(count: int) -> int:
    """How many connections the test can open: ``count``, or fewer under a low hard limit
    (each connection costs two descriptors here, the client's and the gateway's)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * count + 1024
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))
        soft = min(hard, needed)
    return min(count, (soft - 1024) // 2)


@lacks_on_granian(HEADER_408)
async def test_half_open_connections_are_closed_in_time_while_both_ports_serve(
    started: Any,
) -> None:
    n = descriptors_for(1500)
    assert n >= 1000, "the open-file limit is too low for this test"
    timeout = 6.0
    gw = await started(header_timeout_s=timeout, max_connections_per_address=2 * n)
    key = await new_key(gw)
    guard = gw.proxy_guard
    assert guard is not None
    loop = asyncio.get_running_loop()
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
    for start in range(0, n, 100):
        begun = loop.time()  # no connection of the batch was accepted before this
        batch = await asyncio.gather(*(opened(gw.proxy_url) for _ in range(min(100, n - start))))
        for reader, writer in batch:
            writer.write(HALF)
            conns.append((reader, writer, begun))
    first_close: list[float] = []

    async def watch(reader: asyncio.StreamReader, since: float) -> tuple[bytes, float]:
        answer = await until_closed(reader)
        first_close.append(loop.time())
        return answer, loop.time() - since

    watchers = [asyncio.create_task(watch(reader, since)) for reader, _, since in conns]
    try:
        await wait_until(lambda: guard.open >= n)
        # The attack holds its connections; both ports serve meanwhile.
        assert await chat(gw.proxy_url, key)
        async with aiohttp.ClientSession() as http:
            for path in ("/healthz", "/readyz"):
                async with http.get(gw.admin_url + path) as resp:
                    assert resp.status == 200
        served = loop.time()
        async with asyncio.timeout(timeout + 30):
            closed = await asyncio.gather(*watchers)
    finally:
        for task in watchers:
            task.cancel()
        for _, writer, _ in conns:
            writer.close()
    assert served < min(first_close), "the attack was over before both ports were checked"
    assert all(status_of(a) == 408 and error_code(a) == "RequestTimeout" for a, _ in closed)
    assert min(after for _, after in closed) >= timeout - SLACK
    assert guard.header_timeouts >= n and guard.open <= 1


@lacks_on_granian(HEADER_408)
async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    started: Any,
) -> None:
    gw = await started(header_timeout_s=0.5, idle_timeout_s=60)
    for port_url in (gw.proxy_url, gw.admin_url):
        reader, writer = await opened(port_url)
        begun = asyncio.get_running_loop().time()
        async with asyncio.timeout(20):
            answer = await until_closed(reader)
        writer.close()
        assert status_of(answer) == 408
        assert asyncio.get_running_loop().time() - begun >= 0.5 - SLACK


async def test_the_admin_port_closes_half_open_connections_too(started: Any) -> None:
    gw = await started(header_timeout_s=0.5)
    reader, writer = await opened(gw.admin_url)
    writer.write(b"GET /healthz HTTP/1.1\r\nHo")
    async with asyncio.timeout(20):
        answer = await until_closed(reader)
    writer.close()
    assert status_of(answer) == 408 and gw.admin_guard is not None
    assert gw.admin_guard.header_timeouts == 1


@lacks_on_granian(IDLE)
async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(
    started: Any,
) -> None:
    gw = await started(header_timeout_s=0.3, idle_timeout_s=1.5)
    key = await new_key(gw)
    reader, writer = await opened(gw.proxy_url)
    writer.write(request(key))
    assert status_of(await answer_of(reader)) == 200
    answered = asyncio.get_running_loop().time()
    async with asyncio.timeout(20):
        rest = await until_closed(reader)
    writer.close()
    # Closed silently, and by the idle timeout: the header clock does not run while idle.
    assert rest == b""
    assert asyncio.get_running_loop().time() - answered >= 1.5 - SLACK


@lacks_on_granian(HEADER_408)
async def test_a_kept_alive_connection_must_send_its_next_headers_in_time(started: Any) -> None:
    gw = await started(header_timeout_s=0.5, idle_timeout_s=60)
    key = await new_key(gw)
    reader, writer = await opened(gw.proxy_url)
    writer.write(request(key))
    assert status_of(await answer_of(reader)) == 200
    writer.write(request(key))  # a second request on the same connection is fine ...
    assert status_of(await answer_of(reader)) == 200
    writer.write(HALF)  # ... a third that stops half way is not, however long idle may be
    began = asyncio.get_running_loop().time()
    async with asyncio.timeout(20):
        answer = await until_closed(reader)
    writer.close()
    assert status_of(answer) == 408
    assert asyncio.get_running_loop().time() - began >= 0.5 - SLACK


async def slow_body(url: str, key: str, chunk: bytes, pace: float | None) -> tuple[bytes, float]:
    """Headers for a 50,000-byte body and its first bytes, then ``chunk`` every ``pace``
    seconds (nothing more with ``None``) until the gateway answers and closes; its answer and
    how long that took from the headers."""
    reader, writer = await opened(url)
    writer.write(request(key, b'{"messages": [', length=50_000))
    began = asyncio.get_running_loop().time()

    async def send() -> None:
        while pace is not None:
            await asyncio.sleep(pace)  # the client's pace, not a synchronisation
            writer.write(chunk)

    sender = asyncio.create_task(send())
    try:
        async with asyncio.timeout(20):
            answer = await until_closed(reader)
    finally:
        sender.cancel()
        writer.close()
    return answer, asyncio.get_running_loop().time() - began


@pytest.mark.parametrize(
    ("pace", "reason"),
    [
        (None, "stops sending"),  # part of the body, then nothing
        (0.05, "trickles at 20 bytes/s"),  # far below min_body_rate_bytes_s
    ],
)
async def test_a_slow_body_is_cut_off_with_a_408(
    started: Any, pace: float | None, reason: str
) -> None:
    gw = await started(body_grace_s=0.5, body_timeout_s=5, min_body_rate_bytes_s=1000)
    answer, _ = await slow_body(gw.proxy_url, await new_key(gw), b" ", pace)
    assert status_of(answer) == 408, reason
    assert error_code(answer) == "RequestTimeout"
    assert b"1000 bytes per second" in answer
    assert gw.proxy_guard is not None and gw.proxy_guard.body_timeouts == 1


async def test_a_body_that_keeps_the_rate_but_takes_too_long_is_cut_at_body_timeout(
    started: Any,
) -> None:
    gw = await started(body_grace_s=0.2, body_timeout_s=1.5, min_body_rate_bytes_s=100)
    # 40 bytes every 50 ms: 800 bytes/s, above the rate, but 50,000 bytes take a minute
    answer, took = await slow_body(gw.proxy_url, await new_key(gw), b" " * 40, 0.05)
    assert status_of(answer) == 408
    assert took >= 1.5 - SLACK


async def test_large_bodies_at_full_speed_pass(started: Any) -> None:
    gw = await started(body_grace_s=0.2, body_timeout_s=5, min_body_rate_bytes_s=100)
    key = await new_key(gw)
    async with sdk(gw.proxy_url, key) as client:
        reply = await client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "word " * 180_000}],  # 900 kB
            max_tokens=3,
        )
    assert reply.choices[0].message.content
    assert gw.proxy_guard is not None and gw.proxy_guard.body_timeouts == 0


async def test_a_slow_body_on_the_admin_port_is_cut_off_too(started: Any) -> None:
    from keyguard.cli.support import cli_actor
    from keyguard.wiring.access import open_admin_service

    gw = await started(body_grace_s=0.3, body_timeout_s=5, min_body_rate_bytes_s=1000)
    assert gw.runtime is not None
    service = await open_admin_service(gw.runtime)
    token = (await service.create_admin_token(cli_actor(), name="slow", role="admin"))[1]
    reader, writer = await opened(gw.admin_url)
    writer.write(
        b"POST /admin/keys HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\nContent-Length: 5000\r\n\r\n".encode()
        + b'{"app": '
    )
    async with asyncio.timeout(20):
        answer = await until_closed(reader)
    writer.close()
    assert status_of(answer) == 408 and error_code(answer) == "RequestTimeout"
    assert gw.admin_guard is not None and gw.admin_guard.body_timeouts == 1


@lacks_on_granian(CAPS)
async def test_the_per_address_cap_refuses_one_address_and_serves_another(started: Any) -> None:
    gw = await started(max_connections_per_address=4, header_timeout_s=30)
    key = await new_key(gw)
    guard = gw.proxy_guard
    assert guard is not None
    held = [await opened(gw.proxy_url) for _ in range(4)]
    try:
        await wait_until(lambda: guard.open == 4)
        reader, writer = await opened(gw.proxy_url)  # the fifth from 127.0.0.1
        writer.write(request(key))
        async with asyncio.timeout(20):
            answer = await until_closed(reader)
        writer.close()
        assert status_of(answer) == 429 and error_code(answer) == "429"
        assert b"Retry-After: 1" in answer and guard.refused == 1
        assert await chat(gw.proxy_url, key, local="127.0.0.2")  # another address is served
        # A freed place is a place again.
        await wait_until(lambda: guard.open == 4)  # the SDK's connection closed
        held.pop()[1].close()
        await wait_until(lambda: guard.open == 3)
        reader, writer = await opened(gw.proxy_url)
        writer.write(request(key))
        assert status_of(await answer_of(reader)) == 200
        writer.close()
    finally:
        for _, w in held:
            w.close()


@lacks_on_granian(CAPS)
async def test_the_port_cap_refuses_with_a_503(started: Any) -> None:
    gw = await started(max_connections=16, max_connections_per_address=4, header_timeout_s=30)
    guard = gw.proxy_guard
    assert guard is not None
    held = [await opened(gw.proxy_url, f"127.0.0.{2 + i // 4}") for i in range(16)]
    try:
        await wait_until(lambda: guard.open == 16)
        reader, writer = await opened(gw.proxy_url, "127.0.0.9")
        async with asyncio.timeout(20):
            answer = await until_closed(reader)
        writer.close()
        assert status_of(answer) == 503 and error_code(answer) == "ServiceUnavailable"
        # The admin port has its own cap, and shows the proxy port's counts.
        assert await metric(gw.admin_url, "keyguard_proxy_connections_open") == 16
        assert await metric(gw.admin_url, "keyguard_proxy_connections_refused") == 1
    finally:
        for _, w in held:
            w.close()


async def test_the_admin_port_has_its_own_per_address_cap(started: Any) -> None:
    gw = await started(admin_max_connections=8, admin_max_connections_per_address=2)
    held = [await opened(gw.admin_url) for _ in range(2)]
    try:
        assert gw.admin_guard is not None
        await wait_until(lambda: gw.admin_guard is not None and gw.admin_guard.open == 2)
        reader, writer = await opened(gw.admin_url)
        async with asyncio.timeout(20):
            answer = await until_closed(reader)
        writer.close()
        assert status_of(answer) == 429
        transport = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=transport) as http:
            async with http.get(gw.admin_url + "/healthz") as resp:
                assert resp.status == 200
    finally:
        for _, w in held:
            w.close()
