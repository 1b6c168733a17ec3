"""Build and start the monitor from the settings and the runtime; stop it in order.

The gateway calls :func:`start_monitor` once and wires what it returns with a few lines::

    monitoring = await start_monitor(runtime, settings, invalidate=authenticator.invalidate)
    ProxyHandler(..., recorder=Recorders([access_log, monitoring.recorder]),
                 authorizer=monitoring.guard(policy_authorizer), ...)
    monitoring.add_routes(admin_app)
    ...
    await monitoring.close()  # after the proxy stopped accepting requests, before the store

The signing key and webhook URLs are read from the vault here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from ..audit.signing import load_signer
from ..audit.sinks import open_sink
from ..audit.store import AuditStore
from ..audit.writer import AuditWriter
from ..config import Settings
from ..core.hooks import AllowAuthenticated, Authorizer
from ..detect.engine import Detector
from ..errors import GatewayError
from ..metrics.registry import GatewayMetrics
from ..respond.alerts import AlertSender, Webhook
from ..respond.blocks import BlockGuard, BlockList
from ..respond.incidents import IncidentBook
from ..respond.responder import Responder
from ..runtime import Runtime
from .pipeline import Monitor
from .routes import RequireAdmin, add_monitor_routes
from .store import MonitorStore

__all__ = ["Monitoring", "start_monitor"]

log = logging.getLogger("keyguard.monitor")


@dataclass
class Monitoring:
    recorder: Monitor
    blocks: BlockList
    metrics: GatewayMetrics | None
    store: MonitorStore | None
    settings: Settings
    alerts: AlertSender | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    session: aiohttp.ClientSession | None = None

    @property
    def keep_bodies(self) -> bool:
        return self.settings.monitor.audit.enabled and self.settings.monitor.audit.record_content

    def guard(self, inner: Authorizer | None = None) -> Authorizer:
        d = self.settings.monitor.detect
        return BlockGuard(
            inner or AllowAuthenticated(),
            self.blocks,
            decoy_key_ids=frozenset(d.decoy_key_ids) if d.decoy.enabled else frozenset(),
            decoy_apps=frozenset(d.decoy_apps) if d.decoy.enabled else frozenset(),
            v4=d.ipv4_prefix,
            v6=d.ipv6_prefix,
        )

    def add_routes(self, app: web.Application, require_admin: RequireAdmin | None = None) -> None:
        add_monitor_routes(app, metrics=self.metrics, store=self.store, require_admin=require_admin)

    async def close(self) -> None:
        """Handle what is pending, write the audit to the last record, stop every task."""
        monitor = self.recorder
        await monitor.close()
        if monitor.audit is not None:
            await monitor.audit.close()
        if self.alerts is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.alerts.drain(), 10)
            await self.alerts.close()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.session is not None:
            await self.session.close()


async def _webhooks(runtime: Runtime) -> list[Webhook]:
    hooks = []
    for hook in runtime.settings.monitor.respond.webhooks:
        url = hook.url if hook.url is not None else await runtime.vault.get(hook.vault or "")
        hooks.append(Webhook(hook, url.strip()))
    return hooks


async def start_monitor(
    runtime: Runtime,
    settings: Settings,
    *,
    invalidate: Callable[[str], None] | None = None,
) -> Monitoring:
    m = settings.monitor
    engine = getattr(runtime.store, "engine", None)
    deployments = [d for up in settings.upstreams for d in up.deployments]
    metrics = (
        GatewayMetrics(deployments, max_apps=m.metrics.max_apps) if m.metrics.enabled else None
    )
    store = MonitorStore(engine) if engine is not None else None
    audit = None
    if m.audit.enabled and engine is not None:
        signer = await load_signer(runtime.vault)
        audit = AuditWriter(
            AuditStore(engine, direct=True),
            m.audit,
            signer=signer,
            sink=open_sink(m.audit.sink, m.audit.syslog_address),
        )
    detector = Detector(m.detect) if m.detect.enabled else None
    if detector is not None and store is not None:
        try:
            loaded = detector.load(await store.load_profiles())
            log.info("monitor: %d baselines loaded", loaded)
        except GatewayError as exc:
            log.warning("monitor: baselines not loaded (%s); learning again", exc)
    blocks = BlockList()
    hooks = await _webhooks(runtime)
    session = aiohttp.ClientSession() if hooks else None
    alerts = AlertSender(hooks, session, metrics=metrics) if session is not None else None
    responder = Responder(
        m.respond,
        IncidentBook(m.detect.cooldown_s),
        events=runtime.events,
        blocks=blocks,
        store=store,
        keys=runtime.keys,
        invalidate=invalidate,
        alerts=alerts,
        metrics=metrics,
        upstreams=[up.name for up in settings.upstreams],
    )
    monitor = Monitor(
        audit_settings=m.audit,
        audit=audit,
        metrics=metrics,
        detector=detector,
        responder=responder,
        blocks=blocks,
        store=store,
        blocks_poll_s=m.respond.blocks_poll_s,
        persist_s=m.detect.persist_interval_s,
    )
    runtime.events.subscribe(monitor.on_event)
    monitoring = Monitoring(monitor, blocks, metrics, store, settings, alerts, session=session)
    if metrics is not None:
        metrics.gauge("keyguard_monitor_pending", "Requests waiting for the monitor.",
                      lambda: float(monitor.pending))  # fmt: skip
        metrics.gauge("keyguard_blocks_active", "Subjects currently throttled.",
                      lambda: float(len(blocks)))  # fmt: skip
        if audit is not None:
            metrics.gauge("keyguard_audit_queued", "Audit records not yet written.",
                          lambda: float(audit.queued))  # fmt: skip
            metrics.gauge("keyguard_audit_written", "Audit records written by this process.",
                          lambda: float(audit.written))  # fmt: skip
            metrics.gauge("keyguard_audit_dropped", "Audit records dropped (queue full).",
                          lambda: float(audit.dropped + monitor.dropped))  # fmt: skip
    monitoring.tasks.append(asyncio.create_task(monitor.run(), name="keyguard-monitor"))
    if audit is not None:
        monitoring.tasks.append(asyncio.create_task(audit.run(), name="keyguard-audit"))
    if alerts is not None:
        monitoring.tasks.append(asyncio.create_task(alerts.run(), name="keyguard-alerts"))
    return monitoring
