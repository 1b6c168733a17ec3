"""Build and start the monitor from the settings and the runtime; stop it in order.

The gateway calls :func:`start_monitor` once and wires what it returns with a few lines::

    monitoring = await start_monitor(stack, runtime, invalidate=authenticator.invalidate)
    ProxyHandler(..., recorder=Recorders([access_log, monitoring.recorder]),
                 authorizer=monitoring.guard(policy_authorizer), ...)
    monitoring.add_routes(admin_app)

``stack`` (the gateway's exit stack) stops it after the proxy stopped accepting requests and
before the store closes: pending requests handled, the audit written to its last record and
its segment closed, sealed and anchored, alerts sent, every task stopped.

The audit writer opens its segment here, before the gateway takes a request: it checks the
end of the log (and the anchor) and reports tampering as a critical security event, which the
monitor records. The signing key and webhook URLs are read from the vault here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from ..audit.anchor import FileAnchor
from ..audit.archiver import Archiver
from ..audit.delivery import Stream
from ..audit.hec import HecSink
from ..audit.sentinel import SentinelSink, check_target
from ..audit.settings import AuditSettings
from ..audit.signing import load_signer
from ..audit.sinks import Sink, open_sink
from ..audit.store import AuditStore
from ..audit.writer import AuditWriter
from ..bus import Bus
from ..config import Settings
from ..core.hooks import AllowAuthenticated, Authorizer
from ..core.tasks import PeriodicTask, cancel_and_wait
from ..detect.engine import Detector
from ..errors import ConfigurationError, GatewayError
from ..events import SecurityEvent
from ..metrics.registry import GatewayMetrics
from ..monitor.declarations import declarations_from, role_ceilings
from ..monitor.gate import AuditGate
from ..monitor.pipeline import Monitor
from ..monitor.routes import add_monitor_routes
from ..monitor.store import MonitorStore
from ..policy.compiled import Policy
from ..respond.alerts import AlertSender, Webhook
from ..respond.blocks import BlockGuard, BlockList
from ..respond.incidents import IncidentBook
from ..respond.responder import Responder
from ..upstream.azure_credentials import identity_credential
from .archive import start_archiver
from .bus import blocks_from_bus
from .rotation import GatewayRotation
from .runtime import Runtime

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
    archiver: Archiver | None = None

    @property
    def keep_bodies(self) -> bool:
        return self.settings.monitor.audit.enabled and self.settings.monitor.audit.record_content

    def incident_changed(self, incident_id: str) -> None:
        """An operator acknowledged or resolved the incident: the responder's next repeat of it
        reads its status from the store at once."""
        if self.recorder.responder is not None:
            self.recorder.responder.status_changed(incident_id)

    def use_policy(self, current: Callable[[], Policy]) -> None:
        """Judge new keys also by what the roles of ``current()`` (the policy in force) let
        one request carry (access control starts after the monitor)."""
        detector = self.recorder.detector
        if detector is not None and detector.declarations is not None:
            detector.declarations.role = role_ceilings(current)

    def guard(self, inner: Authorizer | None = None) -> BlockGuard:
        """The proxy's screen (blocked addresses) and the authorizer around ``inner``
        (blocked keys and apps, decoys, key checkers' probes)."""
        d = self.settings.monitor.detect
        return BlockGuard(
            inner or AllowAuthenticated(),
            self.blocks,
            decoy_key_ids=frozenset(d.decoy_key_ids) if d.decoy.enabled else frozenset(),
            decoy_apps=frozenset(d.decoy_apps) if d.decoy.enabled else frozenset(),
            probes=d.key_probe if d.enabled and d.key_probe.enabled else None,
            v4=d.ipv4_prefix,
            v6=d.ipv6_prefix,
        )

    def authorizer(self, guard: BlockGuard) -> Authorizer:
        """``guard`` (blocks, decoys, then the policy), then the audit gate."""
        if self.recorder.audit is None:
            return guard
        refuse = self.settings.monitor.audit.on_full == "refuse"
        return AuditGate(guard, self.recorder, refuse=refuse)

    def add_routes(self, app: web.Application) -> None:
        add_monitor_routes(app, metrics=self.metrics)


async def _webhooks(runtime: Runtime) -> list[Webhook]:
    hooks = []
    for hook in runtime.settings.monitor.respond.webhooks:
        url = hook.url if hook.url is not None else await runtime.vault.get(hook.vault or "")
        hooks.append(Webhook(hook, url.strip()))
    return hooks


async def _audit_sink(runtime: Runtime, settings: AuditSettings) -> Sink | None:
    """The SIEM copy of the audit: stdout, syslog, the HEC stream (token from the vault) or
    Microsoft Sentinel (Keyguard's Entra identity)."""
    if settings.sink == "sentinel":
        return _sentinel_sink(settings)
    if settings.sink != "hec":
        return open_sink(
            settings.sink,
            settings.syslog_address,
            settings.syslog_format,
            transport=settings.syslog_transport,
            max_lines=settings.sink_max_lines,
        )
    if settings.hec_url is None:
        raise ConfigurationError("monitor.audit.sink is hec: set monitor.audit.hec_url")
    try:
        token = await runtime.vault.get(settings.hec_token_secret)
    except GatewayError:
        raise ConfigurationError(
            f"monitor.audit.hec_token_secret: store the HEC token in the vault as "
            f"{settings.hec_token_secret!r} (keyguard vault put)"
        ) from None
    return HecSink(settings.hec_url, token, max_lines=settings.hec_max_lines)


def _sentinel_sink(settings: AuditSettings) -> Sink:
    if settings.sentinel_endpoint is None or settings.sentinel_rule_id is None:
        raise ConfigurationError(
            "monitor.audit.sink is sentinel: set monitor.audit.sentinel_endpoint (the data "
            "collection endpoint's logs ingestion URL) and sentinel_rule_id (the rule's "
            "immutable id)"
        )
    check_target(settings.sentinel_endpoint, settings.sentinel_rule_id, settings.sentinel_stream)
    identity = settings.sentinel_identity
    return SentinelSink(
        settings.sentinel_endpoint,
        settings.sentinel_rule_id,
        settings.sentinel_stream,
        identity_credential(identity, blocking=True),
        max_lines=settings.sink_max_lines,
        ca_file=identity.ca_file,
    )


async def start_monitor(
    stack: AsyncExitStack,
    runtime: Runtime,
    *,
    invalidate: Callable[[str], None] | None = None,
    rotation: GatewayRotation | None = None,
    bus: Bus | None = None,
) -> Monitoring:
    settings = runtime.settings
    m = settings.monitor
    engine = runtime.engine
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
            sink=await _audit_sink(runtime, m.audit),
            anchor=FileAnchor(m.audit.anchor_file) if m.audit.anchor_file else None,
            emit=runtime.events.emit,
        )
        if m.audit.anchor_file is None:
            log.warning(
                "audit: no anchor file (monitor.audit.anchor_file): deleting the newest audit "
                "records together with their checkpoints could not be detected"
            )
    teams: dict[str, str] = {}  # app -> its (first) team: a new key's peers after its app's
    for team, apps in settings.limits.teams.items():
        for app in apps:
            teams.setdefault(app, team)
    detector = (
        Detector(m.detect, teams, declarations_from(settings.limits)) if m.detect.enabled else None
    )
    if detector is not None and store is not None:
        try:
            loaded = detector.load(await store.load_profiles())
            log.info("monitor: %d baselines loaded", loaded)
        except GatewayError as exc:
            log.warning("monitor: baselines not loaded (%s); learning again", exc)
    blocks = BlockList()
    hooks = await _webhooks(runtime)
    alerts = None
    if hooks:
        session = aiohttp.ClientSession()
        stack.push_async_callback(session.close)
        alerts = AlertSender(hooks, session, metrics=metrics)
        alerts_task = asyncio.create_task(alerts.run(), name="keyguard: alerts")
        stack.push_async_callback(cancel_and_wait, alerts_task)
        stack.push_async_callback(alerts.close)
        stack.push_async_callback(_drain_alerts, alerts)
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
        publish=bus.publish if bus is not None else None,
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
        responses_elsewhere=_rotations(rotation),
        prompt_digest=(
            _keyed_digest(await runtime.vault.get_or_create_random(PROMPT_DIGEST_KEY))
            if detector is not None and m.detect.repetition.enabled
            else None
        ),
        publish=bus.publish if bus is not None else None,
        alert=runtime.events.emit,
    )
    if bus is not None:
        blocks_from_bus(blocks, bus)
        bus.subscribe("refused", lambda message: monitor.remote_refused(message.data))
    runtime.events.subscribe(monitor.on_event)
    if audit is not None:
        audit_task = PeriodicTask("audit writer", audit.tick, interval=m.audit.flush_interval_s)
        stack.push_async_callback(audit_task.close)  # after the close: never mid-write
        stack.push_async_callback(audit.close)  # writes to the last record, seals, anchors
        await audit.open()  # checks the end of the log before the first request
        audit_task.start()
    archiver = await start_archiver(stack, runtime, metrics) if audit is not None else None
    monitor_task = asyncio.create_task(monitor.run(), name="keyguard: monitor")
    stack.push_async_callback(cancel_and_wait, monitor_task)
    stack.push_async_callback(monitor.close)  # handles what is pending
    if metrics is not None:
        _gauges(metrics, monitor, blocks, audit, m.audit.max_queue)
    return Monitoring(monitor, blocks, metrics, store, settings, alerts, archiver)


PROMPT_DIGEST_KEY = "keyguard/prompt-digest-key"  # an internal vault secret


def _keyed_digest(key: bytes) -> Callable[[bytes], str]:
    """A short keyed digest of a normalised prompt: the repetition rule compares prompts
    without keeping them, and nobody without the key can test a guess against a digest."""
    secret = hashlib.blake2b(key).digest()  # any length in, the 64 bytes blake2b takes

    def digest(data: bytes) -> str:
        return hashlib.blake2b(data, digest_size=8, key=secret).hexdigest()

    return digest


def _rotations(rotation: GatewayRotation | None) -> Callable[[SecurityEvent], list[str]]:
    """The response the rotation scheduler gives a security event on its own (it rotates
    the upstream a leak or a presented key names), for the event's incident."""

    def taken(event: SecurityEvent) -> list[str]:
        if rotation is None or rotation.scheduler is None:
            return []
        return ["rotate_upstream"] if rotation.scheduler.would_rotate(event) else []

    return taken


async def _drain_alerts(alerts: AlertSender) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(alerts.drain(), 10)


def _gauges(
    metrics: GatewayMetrics,
    monitor: Monitor,
    blocks: BlockList,
    audit: AuditWriter | None,
    audit_capacity: int,
) -> None:
    metrics.gauge("keyguard_monitor_pending", "Requests waiting for the monitor.",
                  lambda: float(monitor.pending))  # fmt: skip
    metrics.gauge("keyguard_monitor_lag_seconds",
                  "How long the oldest request waiting for the detectors has waited.",
                  monitor.lag)  # fmt: skip
    metrics.gauge("keyguard_monitor_dropped",
                  "Requests the detectors and metrics did not see (the monitor was full); "
                  "their audit records were kept.", lambda: float(monitor.dropped))  # fmt: skip
    metrics.gauge("keyguard_blocks_active", "Subjects currently throttled.",
                  lambda: float(len(blocks)))  # fmt: skip
    metrics.gauge("keyguard_monitor_errors", "Observations a monitor part failed on.",
                  lambda: float(monitor.errors))  # fmt: skip
    if audit is not None:
        metrics.gauge("keyguard_audit_queued", "Audit records not yet written.",
                      lambda: float(audit.queued))  # fmt: skip
        metrics.gauge("keyguard_audit_capacity", "Audit records the queue holds at most.",
                      lambda: float(audit_capacity))  # fmt: skip
        metrics.gauge("keyguard_audit_full", "1 while the audit queue is full (see on_full).",
                      lambda: float(monitor.audit_full))  # fmt: skip
        metrics.gauge("keyguard_audit_written", "Audit records written by this process.",
                      lambda: float(audit.written))  # fmt: skip
        metrics.gauge("keyguard_audit_dropped", "Audit records dropped (queue full).",
                      lambda: float(audit.dropped))  # fmt: skip
        metrics.gauge("keyguard_audit_rejected",
                      "Audit records that could not be written as they were (replaced).",
                      lambda: float(audit.rejected))  # fmt: skip
        metrics.gauge("keyguard_audit_refused_requests",
                      "Requests refused with 503 because the audit queue was full.",
                      lambda: float(monitor.audit_refused))  # fmt: skip
        metrics.gauge("keyguard_audit_served_while_full",
                      "Requests forwarded while the audit queue was full (serve_unaudited).",
                      lambda: float(monitor.served_while_full))  # fmt: skip
        metrics.gauge("keyguard_audit_lag_seconds",
                      "Age of the oldest audit record not yet written (the store's lag).",
                      audit.lag)  # fmt: skip
        metrics.gauge("keyguard_audit_write_failures",
                      "Audit flushes that failed (store down, full or refusing writes).",
                      lambda: float(audit.failures))  # fmt: skip
        sink = audit.sink
        if isinstance(sink, Stream):
            _stream_gauges(metrics, sink)
        metrics.gauge("keyguard_audit_tamper_findings",
                      "Changes to the audit log by someone without the signing key, found by "
                      "this process.", lambda: float(audit.findings))  # fmt: skip


def _stream_gauges(metrics: GatewayMetrics, sink: Stream) -> None:
    metrics.gauge("keyguard_audit_sink_lag_seconds",
                  "Age of the oldest audit line not yet delivered to the SIEM.",
                  sink.lag)  # fmt: skip
    metrics.gauge("keyguard_audit_sink_waiting",
                  "Audit lines waiting in the SIEM stream's buffer.",
                  lambda: float(sink.waiting))  # fmt: skip
    metrics.gauge("keyguard_audit_sink_sent", "Audit lines delivered to the SIEM.",
                  lambda: float(sink.sent))  # fmt: skip
    metrics.gauge("keyguard_audit_sink_dropped",
                  "Audit lines dropped from the SIEM stream's full buffer.",
                  lambda: float(sink.dropped))  # fmt: skip
    metrics.gauge("keyguard_audit_sink_rejected",
                  "Audit lines too long for the SIEM's transport, not sent.",
                  lambda: float(sink.rejected))  # fmt: skip
    metrics.gauge("keyguard_audit_sink_failures",
                  "Sends to the SIEM that failed and were retried.",
                  lambda: float(sink.failures))  # fmt: skip
