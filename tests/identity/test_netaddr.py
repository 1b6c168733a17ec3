"""The client address behind trusted proxies, and the Host check (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from keyguard.core.netaddr import MAX_HOPS, client_address, host_allowed, parse_hop

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.5", [], "203.0.113.5"),  # direct: the peer
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),  # untrusted peer: header ignored
        ("10.0.0.1", [], "10.0.0.1"),  # a trusted proxy itself
        ("10.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.1", ["1.1.1.1, 198.51.100.1"], "198.51.100.1"),  # spoofed left part ignored
        ("10.0.0.1", ["1.1.1.1, 198.51.100.1, 10.2.3.4"], "198.51.100.1"),  # two proxies
        ("10.0.0.1", ["1.1.1.1", "198.51.100.1"], "198.51.100.1"),  # two headers, one list
        ("10.0.0.1", ["10.9.9.9, 10.8.8.8"], "10.9.9.9"),  # all trusted: the left-most
        ("10.0.0.1", ["198.51.100.1:4711"], "198.51.100.1"),  # with a port
        ("10.0.0.1", ["[2001:db9::1]:443"], "2001:db9::1"),
        ("2001:db8::1", ["2001:db9::2"], "2001:db9::2"),
        ("::ffff:10.0.0.1", ["198.51.100.1"], "198.51.100.1"),  # IPv4-mapped peer
        ("10.0.0.1", ["1.1.1.1, unknown"], None),  # garbage where an address is needed
        ("10.0.0.1", ["[2001:db9::1"], None),
        ("10.0.0.1", [""], None),
        ("10.0.0.1", ["garbage, 198.51.100.1"], "198.51.100.1"),  # garbage never read
        (None, ["198.51.100.1"], None),
        ("unix-socket", ["198.51.100.1"], "unix-socket"),
    ],
)
def test_client_address(peer: str | None, forwarded: list[str], client: str | None) -> None:
    assert client_address(peer, forwarded, TRUSTED) == client


def test_too_many_trusted_hops_is_unknown() -> None:
    hops = ", ".join(f"10.0.0.{i}" for i in range(MAX_HOPS + 5))
    assert client_address("10.0.0.1", ["198.51.100.1, " + hops], TRUSTED) is None


def test_no_trusted_proxies_ignores_the_header() -> None:
    assert client_address("10.0.0.1", ["198.51.100.1"], ()) == "10.0.0.1"


def test_parse_hop() -> None:
    assert parse_hop(" 192.0.2.1 ") == ipaddress.ip_address("192.0.2.1")
    assert parse_hop("::1") == ipaddress.ip_address("::1")
    assert parse_hop("_hidden") is None


@pytest.mark.parametrize(
    ("headers", "allowed", "ok"),
    [
        (["gw.contoso.com"], frozenset(), True),
        ([], frozenset(), True),
        (["a", "b"], frozenset(), False),
        (["GW.contoso.com:443"], frozenset({"gw.contoso.com"}), True),
        (["evil.example"], frozenset({"gw.contoso.com"}), False),
        ([], frozenset({"gw.contoso.com"}), False),
        (["[::1]:8080"], frozenset({"[::1]"}), True),
        (["127.0.0.1:8080"], frozenset({"127.0.0.1"}), True),
    ],
)
def test_host_allowed(headers: list[str], allowed: frozenset[str], ok: bool) -> None:
    assert host_allowed(headers, allowed) is ok
