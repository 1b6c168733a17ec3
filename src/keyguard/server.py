"""Run the gateway: the proxy port and the admin port, until told to stop.

:class:`Gateway` owns every long-lived resource (store, vault-backed credential providers,
the upstream connection pool, the key cache) and starts and stops them in order. The proxy is
an aiohttp low-level server (no router, no middleware) by default, or Granian's embedded ASGI
server (``proxy.http_server: granian``, ``proxy/granian_server.py``); the request pipeline
sees either only through the transport seam's adapters (``proxy/aiohttp_server.py`` or
``proxy/asgi_server.py``, and ``proxy/aiohttp_client.py``). The admin port is aiohttp's.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .bus import Bus
from .config import ProxySettings, Settings
from .core.hooks import Recorders
from .core.transport import Answer, Incoming, StreamedAnswer, UpstreamClient
from .identity.key_index import KeyIdIndex
from .identity.keys import KeyAuthenticator
from .limits.admission import LimitAdmission
from .proxy.access_log import AccessLog
from .proxy.aiohttp_client import new_upstream_session
from .proxy.aiohttp_server import request_factory, web_response
from .proxy.app import ProxyHandler
from .proxy.asgi_server import AsgiProxy, close_connection
from .proxy.connections import ConnectionGuard, GuardedAppRunner
from .proxy.fairshare import FairShare
from .proxy.headers import SERVER_HEADER
from .proxy.protocol import ProxyServer
from .proxy.relay import Relay
from .upstream.pool import UpstreamPool
from .wiring.access import Access, start_access
from .wiring.bus import bus_gauges, incident_changes, invalidation, lifting, start_bus
from .wiring.connections import (
    connection_gauges,
    connection_guards,
    fair_share,
    fd_limit,
    raise_fd_limit,
)
from .wiring.content_safety import start_content_safety
from .wiring.guard import guard_gauges, guard_stage
from .wiring.health import Health
from .wiring.limits import build_admission, limits_gauges
from .wiring.monitor import Monitoring, start_monitor
from .wiring.rotation import GatewayRotation, replica_id, start_rotation
from .wiring.runtime import Runtime, open_runtime
from .wiring.tls import ListenerTls

if TYPE_CHECKING:
    from .proxy.granian_server import GranianSite

__all__ = ["Gateway", "serve", "settle_memory"]


def upstream_client(proxy: ProxySettings) -> UpstreamClient:
    """The pool of connections toward the upstreams, on the configured HTTP client."""
    connect, read = proxy.connect_timeout_s, proxy.upstream_timeout_s
    limit = proxy.max_upstream_connections
    if proxy.upstream_client == "pyreqwest":
        from .proxy.pyreqwest_client import new_pyreqwest_upstream  # loaded only when chosen

        return new_pyreqwest_upstream(
            connect_timeout=connect, read_timeout=read, max_connections=limit
        )
    return new_upstream_session(connect_timeout=connect, read_timeout=read, max_connections=limit)


log = logging.getLogger("keyguard")


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


class Gateway:
    """A running gateway. ``await start()``, read ``proxy_url``/``admin_url``, ``await stop()``.

    Every long-lived part is started in :meth:`start` and registered on one exit stack as it
    starts, so :meth:`stop` (or a failed start) stops exactly what was started, in the reverse
    order: the ports first, then the monitor (which still writes the audit), access control,
    limits, the upstream sessions and credentials, and the store last.
    """

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str],
        *,
        sockets: Mapping[str, socket.socket] | None = None,
        generation: int = 0,
    ) -> None:
        self.settings = settings
        self._environ = environ
        # listening sockets handed over by a supervisor ("proxy", "admin"); else bound here
        self._sockets = dict(sockets or {})
        self._generation = generation
        self._reloader: Callable[[], Awaitable[dict[str, Any]]] | None = None
        self.health: Health | None = None
        self._proxy_runner: web.ServerRunner | None = None
        self._proxy_site: GranianSite | None = None  # the proxy port on Granian
        self._inflight: _InFlight | None = None
        self._stack = AsyncExitStack()
        self.runtime: Runtime | None = None
        self.proxy_url = ""
        self.admin_url = ""
        self.authenticator: KeyAuthenticator | None = None
        self.pool: UpstreamPool | None = None
        self.rotation: GatewayRotation | None = None
        self.admission: LimitAdmission | None = None
        self.monitoring: Monitoring | None = None
        self.access: Access | None = None
        self.bus: Bus | None = None
        self.replica = replica_id()  # this process, among the gateway's replicas
        self.share: FairShare | None = None
        self.proxy_guard: ConnectionGuard | None = None
        self.admin_guard: ConnectionGuard | None = None

    async def start(self) -> None:
        async with AsyncExitStack() as stack:
            await self._start(stack)
            self._stack = stack.pop_all()
        log.info("keyguard proxy on %s, admin on %s", self.proxy_url, self.admin_url)

    async def _start(self, stack: AsyncExitStack) -> None:
        s = self.settings
        self.runtime = runtime = await open_runtime(s, self._environ)
        stack.push_async_callback(runtime.close)
        self.pool = pool = UpstreamPool.from_settings(
            s.upstreams,
            vault=runtime.vault,
            environ=self._environ,
            refresh_s=s.rotation.credential_refresh_s,
        )
        stack.push_async_callback(pool.close)
        await pool.start()
        self.rotation = await start_rotation(stack, runtime, pool, replica=lambda: self.replica)
        session = upstream_client(s.proxy)
        stack.push_async_callback(session.close)
        index = KeyIdIndex(
            runtime.store,
            refresh_s=max(s.proxy.key_cache_ttl_s, 1.0),
            lookups_per_s=s.proxy.unknown_key_lookups_per_s,
        )
        await index.start()
        stack.push_async_callback(index.close)
        self.authenticator = keys = KeyAuthenticator(
            runtime.store, runtime.keys, ttl=s.proxy.key_cache_ttl_s, index=index
        )
        stack.push_async_callback(keys.close)
        self.bus = bus = await start_bus(stack, runtime, self.replica)
        invalidate = invalidation(keys, bus, index)  # here at once, on the others via the bus
        lim = s.limits
        password = (
            await runtime.vault.get(lim.redis_password_vault) if lim.redis_password_vault else None
        )
        self.admission = await build_admission(
            s, events=runtime.events, password=password, engine=runtime.engine
        )
        if self.admission is not None:
            stack.push_async_callback(self.admission.close)
        self.monitoring = monitoring = await start_monitor(
            stack, runtime, invalidate=invalidate, rotation=self.rotation, bus=bus
        )
        self.access = access = await start_access(
            stack,
            runtime,
            keys,
            invalidate=invalidate,
            bus=bus,
            lift=lifting(monitoring.blocks, bus),
            incident_changed=incident_changes(monitoring.incident_changed, bus),
            admission=self.admission,
        )
        if (policy := access.policy) is not None:
            monitoring.use_policy(lambda: policy.current)
        guard = monitoring.guard(access.authorizer)
        self.share = share = fair_share(s.proxy)
        safety = await start_content_safety(stack, runtime, self._environ, access.policy)
        guardrails = guard_stage(runtime, access.policy)
        handler = ProxyHandler(
            pool=pool,
            identity=access.identity,
            relay=Relay(session, pool, share, max_answer_bytes=s.proxy.max_answer_bytes),
            admission=self.admission,
            max_body_bytes=s.proxy.max_body_bytes,
            recorder=Recorders(
                [*([AccessLog()] if s.proxy.access_log else []), monitoring.recorder]
            ),
            authorizer=monitoring.authorizer(guard),
            screen=guard,
            client_address=access.client_address,
            keep_response_bodies=monitoring.keep_bodies,
            events=runtime.events,
            guard=guardrails,
            safety=safety,
        )
        raise_fd_limit()
        self.proxy_guard, self.admin_guard = guards = connection_guards(s, fd_limit())
        if monitoring.metrics is not None:
            connection_gauges(monitoring.metrics, share, *guards)
            bus_gauges(monitoring.metrics, bus)
            limits_gauges(monitoring.metrics, self.admission)
            if guardrails is not None:
                guard_gauges(monitoring.metrics, guardrails)
        self.health = health = Health(
            runtime.store, pool=pool, admission=self.admission, generation=self._generation
        )
        stack.push_async_callback(health.close)
        if self._reloader is not None:
            access.api.service.set_reloader(self._reloader)
        tls = admin_tls = None
        if (tls_cfg := s.listen.tls) is not None:
            proxy_side = ListenerTls(tls_cfg.cert_file, tls_cfg.key_file, tls_cfg.client_ca_file)
            admin_side = ListenerTls(tls_cfg.cert_file, tls_cfg.key_file)  # admin: tokens only
            for side in (proxy_side, admin_side):
                side.watch(tls_cfg.reload_interval_s)
                stack.push_async_callback(side.close)
            tls, admin_tls = proxy_side.context, admin_side.context
        drain = s.listen.drain_timeout_s
        if s.proxy.http_server == "granian":
            self._inflight = inflight = _InFlight(handler, close_connection)
            self._proxy_site, self.proxy_url = await _listen_granian(
                stack, AsgiProxy(inflight, self.proxy_guard), s, sock=self._sockets.get("proxy")
            )
        else:
            self._inflight = inflight = _InFlight(handler, _force_close)
            runner = _proxy_runner(inflight, s.proxy.max_body_bytes, self.proxy_guard, drain)
            self._proxy_runner = runner
            self.proxy_url = await _listen(
                stack,
                runner,
                s.listen.proxy,
                backlog=_PROXY_BACKLOG,
                sock=self._sockets.get("proxy"),
                tls=tls,
            )
        admin_app = access.admin_app(runtime, health)
        monitoring.add_routes(admin_app)
        admin_app.on_response_prepare.append(_name_server)
        admin_runner = GuardedAppRunner(
            admin_app, guard=self.admin_guard, access_log=None, shutdown_timeout=drain
        )
        self.admin_url = await _listen(
            stack, admin_runner, s.listen.admin, sock=self._sockets.get("admin"), tls=admin_tls
        )

    def set_reloader(self, reloader: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        """What ``POST /admin/reload`` runs (set before :meth:`start`)."""
        self._reloader = reloader

    async def drain(self, grace_s: float) -> None:
        """Stop for good without cutting anything short: readiness turns false at once;
        connections are still accepted for ``grace_s`` (a load balancer notices meanwhile),
        then refused; requests and streams in flight finish, for at most
        ``listen.drain_timeout_s``; then everything stops."""
        if self.health is not None:
            self.health.draining = True
        if grace_s > 0:
            log.info("draining: not ready; accepting connections for %g s more", grace_s)
            await asyncio.sleep(grace_s)
        await self._settle()
        await self.stop()

    async def _settle(self) -> None:
        """Stop accepting on the proxy port, then let the connections already open finish
        what they carry: a request that arrives on a kept-alive connection (its client just
        reused it) is still answered, with ``Connection: close``; once nothing has been in
        flight for :data:`_SETTLE_S` (or ``drain_timeout_s`` passed) the rest are closed. A
        client therefore never sends a request on a connection that closes under it, save in
        the last instant of an idle connection, which its pool checks before reuse."""
        runner, inflight = self._proxy_runner, self._inflight
        if inflight is None:
            return
        if self._proxy_site is not None:  # Granian: it refuses new connections at once and
            inflight.closing = True  # returns once the requests in flight have finished
            await self._proxy_site.stop(self.settings.listen.drain_timeout_s)
            return
        if runner is not None:
            for site in list(runner.sites):
                await site.stop()
        inflight.closing = True
        deadline = time.monotonic() + self.settings.listen.drain_timeout_s
        while time.monotonic() < deadline and (
            inflight.count or time.monotonic() - inflight.last < _SETTLE_S
        ):
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        await self._stack.aclose()
        self.runtime = self.pool = self.monitoring = self.access = None
        self.rotation = self.admission = self.share = None


class _InFlight:
    """The proxy's handler, counting the requests in flight (a stream until its end). Once
    ``closing`` (the process is draining), answers not yet started say ``Connection: close``
    (``close``, the server's way of saying it), so clients move to another process instead of
    reusing this one's connections."""

    def __init__(
        self, handler: ProxyHandler, close: Callable[[Answer | StreamedAnswer], None]
    ) -> None:
        self._handler = handler
        self._close = close
        self.count = 0
        self.last = time.monotonic()
        self.closing = False

    async def __call__(self, request: Incoming) -> Answer | StreamedAnswer:
        self.count += 1
        try:
            response = await self._handler(request)
            if self.closing and not (response.streamed and response.started):
                self._close(response)
            return response
        finally:
            self.count -= 1
            self.last = time.monotonic()


def _force_close(answer: Answer | StreamedAnswer) -> None:
    web_response(answer).force_close()


def _proxy_runner(
    handler: _InFlight, max_body: int, guard: ConnectionGuard, drain_s: float
) -> web.ServerRunner:
    server = ProxyServer(
        handler, guard=guard, request_factory=request_factory(max_body), access_log=None
    )
    return web.ServerRunner(server, handle_signals=False, shutdown_timeout=drain_s)


async def _listen(
    stack: AsyncExitStack,
    runner: web.BaseRunner,
    hostport: str,
    *,
    backlog: int = 128,
    sock: socket.socket | None = None,
    tls: ssl.SSLContext | None = None,
) -> str:
    """Set the runner up, listen on ``hostport`` (or on the listening socket ``sock``, which
    other processes may share), register its clean-up; its URL."""
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site: web.BaseSite
    if sock is not None:
        site = web.SockSite(runner, sock, backlog=backlog, ssl_context=tls)
    else:
        host, port = _split(hostport)
        site = web.TCPSite(runner, host, port, reuse_address=True, backlog=backlog, ssl_context=tls)
    await site.start()
    return _url(runner, "https" if tls is not None else "http")


async def _listen_granian(
    stack: AsyncExitStack, app: AsgiProxy, s: Settings, *, sock: socket.socket | None
) -> tuple[GranianSite, str]:
    """Serve ``app`` with Granian on ``listen.proxy`` (or the listening socket ``sock``, which
    other processes may share); the site and its URL. Its clean-up is registered."""
    from .proxy.granian_server import GranianSite  # loaded only when chosen

    if sock is None:
        host, port = _split(s.listen.proxy)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        own = socket.create_server((host, port), family=family, backlog=_PROXY_BACKLOG)
        stack.callback(own.close)
        sock = own
    tls = s.listen.tls
    site = GranianSite(
        app,
        sock,
        limits=app.guard.limits,
        backlog=_PROXY_BACKLOG,
        cert_file=tls.cert_file if tls is not None else None,
        key_file=tls.key_file if tls is not None else None,
    )
    await site.start()
    stack.push_async_callback(site.stop)
    host, port = sock.getsockname()[:2]
    return site, _url_of("https" if tls is not None else "http", host, port)


def _url(runner: web.BaseRunner, scheme: str = "http") -> str:
    addr = runner.addresses[0]
    return _url_of(scheme, addr[0], addr[1])


def _url_of(scheme: str, host: str, port: int) -> str:
    """The URL of a listening address (an IPv6 host in brackets)."""
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


_GC_YOUNG_THRESHOLD = 20_000  # allocations between two young collections (CPython: 700)
_PROXY_BACKLOG = 1024  # connections the kernel queues before the proxy accepts them
_SETTLE_S = 1.0  # a draining process closes its connections after this long with none busy


async def _name_server(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SERVER_HEADER)


def settle_memory() -> None:
    """Move everything built at start-up (modules, configuration, caches: several hundred
    thousand objects) out of the garbage collector's sight. Without this every full collection
    walks all of them, a pause of tens of milliseconds that lands on some request's latency;
    with it, collections only walk what requests allocate. Young collections are also made
    rarer: their cost is that of the objects alive at the time (the requests in flight), not of
    the garbage, which reference counting has already freed."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


async def serve(settings: Settings, environ: Mapping[str, str]) -> None:
    """Run until SIGINT or SIGTERM, then drain (:meth:`Gateway.drain`)."""
    gateway = Gateway(settings, environ)
    await gateway.start()
    settle_memory()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await gateway.drain(settings.listen.drain_grace_s)
