"""The connection guard's decisions (pure), the limits taken from the settings, and the one
case the end-to-end tests cannot provoke: a body the gateway itself is slow to read."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import resource

import aiohttp
import pytest
from aiohttp import web

from keyguard.config import ProxySettings, settings_from_mapping
from keyguard.errors import ConfigurationError
from keyguard.proxy.connections import (
    ConnectionGuard,
    ConnectionLimits,
    GuardedServer,
    address_key,
)
from keyguard.wiring import connections as wiring
from keyguard.wiring.connections import connection_limits

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # a dual-stack socket's view of an IPv4 client
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # same /64: same client
        ("fe80::1%eth0", "fe80::/64"),
        ("10.1.2.3", ""),  # a trusted proxy: not counted per address
        ("::ffff:10.1.2.3", ""),
        ("not-an-address", ""),
        ("", ""),
    ],
)
def test_address_key(host: str, key: str) -> None:
    assert address_key(host, TRUSTED) == key


def test_the_guard_caps_each_address_and_the_port() -> None:
    guard = ConnectionGuard(
        ConnectionLimits(max_connections=5, max_per_address=2), trusted_proxies=["10.0.0.0/8"]
    )
    assert guard.admit(("192.0.2.1", 1000)) == "192.0.2.1"
    assert guard.admit(("192.0.2.1", 1001)) == "192.0.2.1"
    refusal = guard.admit(("192.0.2.1", 1002))
    assert isinstance(refusal, bytes) and refusal.startswith(b"HTTP/1.1 429 ")
    assert b"\r\nConnection: close\r\n" in refusal and b"\r\nRetry-After: 1\r\n" in refusal
    assert b"Server: keyguard" in refusal and refusal.endswith(b"}}")
    assert guard.admit(("192.0.2.2", 1000)) == "192.0.2.2"  # another address
    assert guard.admit(("10.0.0.1", 1)) == "" and guard.admit(("10.0.0.1", 2)) == ""  # trusted
    full = guard.admit(("192.0.2.3", 1000))
    assert isinstance(full, bytes) and full.startswith(b"HTTP/1.1 503 ")
    assert guard.open == 5 and guard.refused == 2
    guard.release("192.0.2.1")
    assert guard.admit(("192.0.2.1", 1003)) == "192.0.2.1"  # its place again
    for address in ("192.0.2.1", "192.0.2.1", "192.0.2.2", "", ""):
        guard.release(address)
    assert guard.open == 0 and not guard._per_address  # nothing left behind


def test_a_peer_without_an_address_counts_towards_the_port_only() -> None:
    guard = ConnectionGuard(ConnectionLimits(max_connections=2, max_per_address=1))
    assert guard.admit(None) == "" and guard.admit("/run/keyguard.sock") == ""
    assert isinstance(guard.admit(None), bytes)


def test_the_late_body_error_is_a_408_that_names_the_limits() -> None:
    guard = ConnectionGuard(ConnectionLimits(min_body_rate=2048, body_timeout_s=30))
    exc = guard.late_body()
    assert exc.status == 408 and exc.reason == "body_timeout" and isinstance(exc, TimeoutError)
    assert "2048 bytes per second" in exc.message and "30 seconds" in exc.message
    assert guard.body_timeouts == 1


def test_the_proxy_cap_is_what_the_descriptor_limit_leaves() -> None:
    proxy, admin = connection_limits(ProxySettings(), 1024)
    assert proxy.max_connections == 1024 - 256 - 128 - 256
    assert proxy.max_per_address == proxy.max_connections // 4  # one address: a quarter
    assert (admin.max_connections, admin.max_per_address) == (128, 32)
    big, _ = connection_limits(ProxySettings(), 1 << 20)  # also memory: at most 10,000
    assert (big.max_connections, big.max_per_address) == (10_000, 1024)
    set_, _ = connection_limits(ProxySettings(max_connections=50_000), 1 << 20)
    assert set_.max_connections == 50_000
    set_, _ = connection_limits(ProxySettings(max_connections=300), 1024)
    assert (set_.max_connections, set_.max_per_address) == (300, 75)
    assert proxy.header_timeout_s == 10 and proxy.idle_timeout_s == 75


@pytest.mark.parametrize(
    ("settings", "nofile", "says"),
    [
        (ProxySettings(max_connections=5000), 1024, "room for 384 client connections, not 5000"),
        (ProxySettings(), 600, "room for 0 client connections"),
        (ProxySettings(max_upstream_connections=2000), 2300, "next to 2000 upstream"),
    ],
)
def test_a_cap_the_descriptor_limit_cannot_honour_refuses_the_start(
    settings: ProxySettings, nofile: int, says: str
) -> None:
    with pytest.raises(ConfigurationError, match="ulimit -n") as refused:
        connection_limits(settings, nofile)
    assert says in str(refused.value)


@pytest.mark.parametrize(
    ("proxy", "says"),
    [
        ({"header_timeout_s": 0}, "header_timeout_s"),
        ({"idle_timeout_s": 7200}, "idle_timeout_s"),
        ({"body_grace_s": 30, "body_timeout_s": 10}, "body_grace_s must not be above"),
        ({"max_connections": 100, "max_connections_per_address": 200}, "per_address"),
        ({"admin_max_connections_per_address": 500}, "admin_max_connections_per_address"),
        ({"upstream_share_per_app": 1.5}, "upstream_share_per_app"),
        ({"upstream_share_per_caller": 0}, "upstream_share_per_caller"),
        ({"min_body_rate_bytes_s": -1}, "min_body_rate_bytes_s"),
    ],
)
def test_careless_values_are_refused_at_start(proxy: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        settings_from_mapping({"proxy": proxy})


async def test_time_the_gateway_spends_not_reading_is_not_the_clients() -> None:
    """A handler that takes longer than the body allowance before it reads: the body arrived
    at full speed, the gateway stopped reading when its buffer filled, no 408."""
    limits = ConnectionLimits(body_grace_s=0.2, body_timeout_s=0.6, min_body_rate=1000)
    guard = ConnectionGuard(limits)

    async def slow_reader(request: web.BaseRequest) -> web.Response:
        await asyncio.sleep(1.5)  # the handler's own slowness is the case under test
        return web.Response(text=str(len(await request.read())))

    server = GuardedServer(slow_reader, guard=guard)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            body = io.BytesIO(b"x" * 900_000)  # above what is buffered before pausing
            async with http.post(f"http://127.0.0.1:{port}/", data=body) as resp:
                assert resp.status == 200 and await resp.text() == "900000"
        assert guard.body_timeouts == 0
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("soft", "hard", "kernel_max", "raised"),
    [
        (1024, 524_288, 1 << 30, 524_288),  # systemd's default: up to the hard limit
        (256, resource.RLIM_INFINITY, 10_240, 10_240),  # macOS: unlimited hard, capped kernel
        (1024, 1024, 1 << 30, 1024),  # nothing to gain
        (4096, 1 << 24, 1 << 30, 1 << 20),  # at most 2**20
    ],
)
def test_the_soft_descriptor_limit_is_raised_as_far_as_the_kernel_allows(
    monkeypatch: pytest.MonkeyPatch, soft: int, hard: int, kernel_max: int, raised: int
) -> None:
    limits = [soft, hard]

    def setrlimit(which: int, value: tuple[int, int]) -> None:
        if value[0] > kernel_max:
            raise ValueError("not allowed to raise maximum limit")
        limits[0] = value[0]

    monkeypatch.setattr(resource, "getrlimit", lambda which: tuple(limits))
    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    wiring.raise_fd_limit()
    assert limits[0] == raised
