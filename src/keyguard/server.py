"""Run the gateway: the proxy port and the admin port, until told to stop.

:class:`Gateway` owns every long-lived resource (store, vault-backed credential providers,
the upstream connection pool, the key cache) and starts and stops them in order. The proxy is
an aiohttp low-level server (no router, no middleware), measured as the fastest stack that
meets the hot-path budget (see docs/performance.md).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from .config import Settings
from .core.hooks import Recorders
from .identity.keys import KeyAuthenticator
from .identity.wiring import Access, start_access
from .limits.admission import LimitAdmission
from .limits.factory import build_admission
from .monitor.wiring import Monitoring, start_monitor
from .proxy.access_log import AccessLog
from .proxy.app import ProxyHandler
from .proxy.headers import SERVER_HEADER
from .proxy.protocol import ProxyServer
from .proxy.relay import Relay, new_upstream_session
from .rotation.scheduler import GatewayRotation, start_gateway_rotation
from .runtime import Runtime, open_runtime
from .upstream.pool import UpstreamPool

__all__ = ["Gateway", "serve"]

log = logging.getLogger("keyguard")


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


class Gateway:
    """A running gateway. ``await start()``, read ``proxy_url``/``admin_url``, ``await stop()``."""

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self._environ = environ
        self.runtime: Runtime | None = None
        self.proxy_url = ""
        self.admin_url = ""
        self.authenticator: KeyAuthenticator | None = None
        self._runners: list[web.BaseRunner] = []
        self._pool: UpstreamPool | None = None
        self._session: aiohttp.ClientSession | None = None
        self.rotation: GatewayRotation | None = None
        self.admission: LimitAdmission | None = None
        self.monitoring: Monitoring | None = None
        self.access: Access | None = None

    async def start(self) -> None:
        s = self.settings
        self.runtime = runtime = await open_runtime(s, self._environ)
        try:
            self._pool = pool = UpstreamPool.from_settings(
                s, vault=runtime.vault, environ=self._environ
            )
            await pool.start()
            self.rotation = await start_gateway_rotation(runtime, pool)  # reports, triggers
            session = new_upstream_session(
                connect_timeout=s.proxy.connect_timeout_s,
                read_timeout=s.proxy.upstream_timeout_s,
                max_connections=s.proxy.max_upstream_connections,
            )
            self._session = session
            self.authenticator = KeyAuthenticator(
                runtime.store, runtime.keys, ttl=s.proxy.key_cache_ttl_s
            )
            lim = s.limits
            password = (
                await runtime.vault.get(lim.redis_password_vault)
                if lim.redis_password_vault
                else None
            )
            self.admission = await build_admission(
                s,
                events=runtime.events,
                password=password,
                engine=getattr(runtime.store, "engine", None),
            )
            self.monitoring = monitoring = await start_monitor(
                runtime, s, invalidate=self.authenticator.invalidate
            )
            self.access = access = await start_access(runtime, self.authenticator)
            handler = ProxyHandler(
                pool=pool,
                authenticator=self.authenticator,
                relay=Relay(session, pool),
                admission=self.admission,
                max_body_bytes=s.proxy.max_body_bytes,
                recorder=Recorders(
                    [*([AccessLog()] if s.proxy.access_log else []), monitoring.recorder]
                ),
                authorizer=monitoring.guard(access.authorizer),
                identity=access.identity,
                client_address=access.client_address,
                keep_response_bodies=monitoring.keep_bodies,
                events=runtime.events,
            )
            max_body = s.proxy.max_body_bytes

            def request_factory(
                message: RawRequestMessage,
                payload: StreamReader,
                protocol: RequestHandler,
                writer: Any,
                task: asyncio.Task[None],
            ) -> web.BaseRequest:
                return web.BaseRequest(
                    message,
                    payload,
                    protocol,
                    writer,
                    task,
                    asyncio.get_running_loop(),
                    client_max_size=max_body,
                )

            server = ProxyServer(handler, request_factory=request_factory, access_log=None)
            proxy_runner = web.ServerRunner(server, handle_signals=False)
            await proxy_runner.setup()
            self._runners.append(proxy_runner)
            host, port = _split(s.listen.proxy)
            site = web.TCPSite(proxy_runner, host, port, reuse_address=True)
            await site.start()
            self.proxy_url = _url(proxy_runner)

            admin_app = access.admin_app(runtime)
            monitoring.add_routes(admin_app, require_admin=access.require_viewer)
            admin_app.on_response_prepare.append(_name_server)
            admin_runner = web.AppRunner(admin_app, access_log=None)
            await admin_runner.setup()
            self._runners.append(admin_runner)
            host, port = _split(s.listen.admin)
            await web.TCPSite(admin_runner, host, port, reuse_address=True).start()
            self.admin_url = _url(admin_runner)
        except BaseException:
            await self.stop()
            raise
        log.info("keyguard proxy on %s, admin on %s", self.proxy_url, self.admin_url)

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self.monitoring is not None:  # after the proxy stopped, before the store closes
            await self.monitoring.close()
            self.monitoring = None
        if self.access is not None:
            await self.access.close()
            self.access = None
        if self.authenticator is not None:
            await self.authenticator.close()
        if self._session is not None:
            await self._session.close()
        if self.rotation is not None:
            await self.rotation.close()
            self.rotation = None
        if self._pool is not None:
            await self._pool.close()
        if self.admission is not None:
            await self.admission.close()
            self.admission = None
        if self.runtime is not None:
            await self.runtime.close()
            self.runtime = None


def _url(runner: web.BaseRunner) -> str:
    addr = runner.addresses[0]
    host, port = addr[0], addr[1]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


_GC_YOUNG_THRESHOLD = 20_000  # allocations between two young collections (CPython: 700)


async def _name_server(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SERVER_HEADER)


def _settle_memory() -> None:
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
    """Run until SIGINT or SIGTERM, then stop gracefully."""
    gateway = Gateway(settings, environ)
    await gateway.start()
    _settle_memory()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await gateway.stop()
