"""The ``proxy:`` settings to the ports' connection guards and the upstream fair share.

The gateway calls these once at start::

    share = fair_share(settings.proxy)
    raise_fd_limit()
    proxy_guard, admin_guard = connection_guards(settings, fd_limit())
    connection_gauges(metrics, share, proxy_guard, admin_guard)

The proxy port's connection cap, unless set, is what the process's file descriptor limit
leaves after the upstream pool, the admin port and the process's own files, at most 10,000
(each connection also costs memory); a cap the limit
cannot honour refuses the start, because a connection flood would then reach the limit (and
break every port) before the cap. The gateway first raises the soft limit to the hard one
(:func:`raise_fd_limit`).
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Callable

from ..config import ProxySettings, Settings
from ..errors import ConfigurationError
from ..metrics.registry import GatewayMetrics
from ..proxy.connections import ConnectionGuard, ConnectionLimits, connection_budget
from ..proxy.fairshare import FairShare, share_caps

__all__ = [
    "connection_gauges",
    "connection_guards",
    "connection_limits",
    "fair_share",
    "fd_limit",
    "raise_fd_limit",
]

log = logging.getLogger("keyguard")

_MAX_NOFILE = 1 << 20  # the open-file limit the process raises itself to, at most
_MIN_CONNECTIONS = 16  # a proxy port that cannot hold this many refuses to start
_PER_ADDRESS = 1024  # the default cap per client address (or a quarter of the port's)
_CONNECTIONS = 10_000  # the default cap of the proxy port, when the descriptors allow it


def fair_share(proxy: ProxySettings) -> FairShare:
    per_caller, per_app = share_caps(
        proxy.max_upstream_connections,
        proxy.upstream_share_per_caller,
        proxy.upstream_share_per_app,
    )
    return FairShare(per_caller=per_caller, per_app=per_app)


def fd_limit() -> int:
    """This process's limit on open file descriptors (the soft one: the one enforced)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return _MAX_NOFILE if soft == resource.RLIM_INFINITY else soft


def raise_fd_limit() -> None:
    """Raise the soft limit on open files towards the hard one (at most 2**20), as servers do:
    the usual soft default, 1,024 (256 on macOS), is what lets a connection flood exhaust a
    process. Where the kernel refuses that much (macOS caps it below an unlimited hard limit),
    65,536 and then 10,240 are tried."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return
    top = _MAX_NOFILE if hard == resource.RLIM_INFINITY else min(hard, _MAX_NOFILE)
    for target in (top, 65_536, 10_240):
        if target <= soft:
            return
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(target, top), hard))
            return
        except (ValueError, OSError):  # pragma: no cover - a kernel below its hard limit
            continue
    log.warning("could not raise the open-file limit from %d", soft)  # pragma: no cover


def connection_limits(
    proxy: ProxySettings, nofile: int
) -> tuple[ConnectionLimits, ConnectionLimits]:
    """The proxy port's and the admin port's limits under an open-file limit of ``nofile``."""
    budget = connection_budget(
        nofile, upstream=proxy.max_upstream_connections, others=proxy.admin_max_connections
    )
    cap = proxy.max_connections if proxy.max_connections is not None else min(budget, _CONNECTIONS)
    if cap > budget or cap < _MIN_CONNECTIONS:
        asked = f", not {cap}," if proxy.max_connections is not None else ""
        raise ConfigurationError(
            f"proxy.max_connections: this process may open {nofile} files, which leaves room "
            f"for {budget} client connections{asked} next to {proxy.max_upstream_connections} "
            f"upstream and {proxy.admin_max_connections} admin connections; raise the limit "
            "('ulimit -n', LimitNOFILE= in a systemd unit) or lower proxy.max_connections, "
            "max_upstream_connections or admin_max_connections"
        )
    timeouts = {
        "header_timeout_s": proxy.header_timeout_s,
        "idle_timeout_s": proxy.idle_timeout_s,
        "body_grace_s": proxy.body_grace_s,
        "body_timeout_s": proxy.body_timeout_s,
        "min_body_rate": float(proxy.min_body_rate_bytes_s),
    }
    return (
        ConnectionLimits(
            **timeouts,
            max_connections=cap,
            max_per_address=(
                min(proxy.max_connections_per_address, cap)
                if proxy.max_connections_per_address is not None
                else min(_PER_ADDRESS, max(1, cap // 4))
            ),
        ),
        ConnectionLimits(
            **timeouts,
            max_connections=proxy.admin_max_connections,
            max_per_address=proxy.admin_max_connections_per_address,
        ),
    )


def connection_guards(settings: Settings, nofile: int) -> tuple[ConnectionGuard, ConnectionGuard]:
    """The proxy port's guard and the admin port's, logged once."""
    proxy_limits, admin_limits = connection_limits(settings.proxy, nofile)
    trusted = settings.access.trusted_proxies
    log.info(
        "connections: proxy port at most %d (%d per address), admin port at most %d (%d per "
        "address), open-file limit %d",
        proxy_limits.max_connections, proxy_limits.max_per_address,
        admin_limits.max_connections, admin_limits.max_per_address, nofile,
    )  # fmt: skip
    return (
        ConnectionGuard(proxy_limits, trusted_proxies=trusted),
        ConnectionGuard(admin_limits, trusted_proxies=trusted),
    )


_GUARD_GAUGES = (
    ("connections_open", "open", "Open connections on the {} port."),
    ("connections_refused", "refused", "Connections refused on the {} port (a cap reached)."),
    ("header_timeouts", "header_timeouts",
     "Connections closed on the {} port: request headers not complete in time."),
    ("body_timeouts", "body_timeouts", "Requests on the {} port whose body came too slowly."),
)  # fmt: skip


def connection_gauges(
    metrics: GatewayMetrics, share: FairShare, proxy: ConnectionGuard, admin: ConnectionGuard
) -> None:
    """Gauges read when scraped (the counts of refusals and timeouts are since the start)."""
    for port, guard in (("proxy", proxy), ("admin", admin)):
        for name, attribute, doc in _GUARD_GAUGES:
            metrics.gauge(f"keyguard_{port}_{name}", doc.format(port), _reader(guard, attribute))
    metrics.gauge("keyguard_upstream_in_flight", "Requests forwarded upstream, in flight.",
                  lambda: float(share.in_flight))  # fmt: skip
    metrics.gauge("keyguard_fair_share_refused",
                  "Requests refused: the caller or its app held its share of the upstream pool.",
                  lambda: float(share.refused))  # fmt: skip


def _reader(guard: ConnectionGuard, attribute: str) -> Callable[[], float]:
    return lambda: float(getattr(guard, attribute))
