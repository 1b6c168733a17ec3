"""Where a request comes from, and whom it was addressed to (pure functions).

**Client address.** Behind a load balancer the TCP peer is the balancer; the client's address is
in ``X-Forwarded-For``, which every hop appends to and which the client itself can pre-fill
with anything. So the header is believed only as far as it was written by proxies Keyguard
trusts (``access.trusted_proxies``, CIDRs): starting from the TCP peer, walk the header's
entries right to left while the current hop is a trusted proxy; the first address written
about an untrusted hop is the client. A client's own (spoofed) entries are left of that and
never read. Without trusted proxies the header is ignored entirely. An entry that is not an
address where one is needed makes the client address unknown (``None``), which no source
network matches: fail closed. Several ``X-Forwarded-For`` headers count as one list, in order.

**Host.** With ``access.allowed_hosts`` set, a request whose ``Host`` is not one of them is
refused: a browser tricked by DNS rebinding into calling a gateway on a private address sends
the attacker's host name.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

from .transport import Peer

__all__ = ["ClientAddress", "client_address", "host_allowed", "parse_hop", "MAX_HOPS"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_HOPS = 32  # entries read from the right; more trusted hops than this: unknown client


def _normal(ip: Address) -> Address:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@functools.lru_cache(maxsize=8192)  # parsing is ~6 us; a gateway sees few distinct peers
def _parse(text: str) -> tuple[Address, str] | None:
    hop = text.strip()
    if hop.startswith("["):
        hop, sep, _ = hop[1:].partition("]")
        if not sep:
            return None
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    try:
        ip = _normal(ipaddress.ip_address(hop))
    except ValueError:
        return None
    return ip, str(ip)


def parse_hop(text: str) -> Address | None:
    """An ``X-Forwarded-For`` entry: ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1`` or
    ``[2001:db8::1]:443``; anything else is ``None``."""
    parsed = _parse(text)
    return None if parsed is None else parsed[0]


def _trusted(ip: Address, trusted: Sequence[Network]) -> bool:
    for net in trusted:
        if ip in net:
            return True
    return False


def client_address(
    peer: str | None, forwarded: Iterable[str], trusted: Sequence[Network]
) -> str | None:
    """The client's address (see the module docstring); ``None`` when it cannot be known."""
    if peer is None:
        return None
    current = _parse(peer)
    if current is None:
        return peer  # not an IP peer (a Unix socket): nothing to walk
    hops: list[str] | None = None
    walked = 0
    while _trusted(current[0], trusted):
        if hops is None:
            hops = [hop for header in forwarded for hop in header.split(",")]
        if not hops:
            return current[1]  # every hop trusted: the left-most one is the client
        if walked == MAX_HOPS:
            return None
        written = _parse(hops.pop())
        walked += 1
        if written is None:
            return None
        current = written
    return current[1]


class ClientAddress:
    """The proxy's client-address function, configured once with the trusted proxies."""

    def __init__(self, trusted_proxies: Sequence[str] = ()) -> None:
        self._trusted = tuple(ipaddress.ip_network(c) for c in trusted_proxies)

    def __call__(self, request: Peer) -> str | None:
        if not self._trusted:
            return request.remote
        return client_address(
            request.remote, request.headers.getall("X-Forwarded-For", ()), self._trusted
        )


def host_allowed(host_headers: Sequence[str], allowed: frozenset[str]) -> bool:
    """One ``Host`` header naming an allowed host (the port is ignored); any when no list."""
    if not allowed:
        return len(host_headers) <= 1
    if len(host_headers) != 1:
        return False
    host = host_headers[0].strip().lower()
    if host.startswith("["):
        host = host[: host.find("]") + 1]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host in allowed
