"""Listening sockets the supervisor binds once and every worker inherits."""

from __future__ import annotations

import socket

from ..errors import ConfigurationError

__all__ = ["listening_socket"]


def listening_socket(hostport: str, backlog: int, setting: str = "listen") -> socket.socket:
    """A TCP socket listening on ``HOST:PORT`` (``[::1]:PORT`` for IPv6)."""
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")
    family, kind, proto, _, address = socket.getaddrinfo(
        host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"{setting}: cannot listen on {hostport} ({exc.strerror}); stop what uses that "
            f"port or choose another one in '{setting}'"
        ) from None
    return sock
