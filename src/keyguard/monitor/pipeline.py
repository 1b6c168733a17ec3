"""The monitor: the proxy's recorder on the hot path, everything else in a background task.

``Monitor.record(ctx)`` (the :class:`~keyguard.core.hooks.Recorder`, called once the answer
has gone out) takes the request's :class:`~keyguard.core.observation.Observation` (a few
microseconds, no I/O), queues its audit record to the writer at once (so what a crash loses is
bounded by the writer's flush interval, never by the detectors' backlog) and keeps the
observation in the :class:`~.backlog.Backlog`, so the request's context is freed at once.
Every ``interval`` the background task (:meth:`Monitor.run`) drains the backlog and feeds each
observation to the metrics and the detector; findings go to the
:class:`~keyguard.respond.responder.Responder`. When it falls behind it takes more of the
event loop at a time (:meth:`.Backlog.step`); what does not fit is counted and raised.
It also reloads replicas' blocks and saves the detector's baselines on their intervals.

Admin actions and security events arrive through :meth:`on_event` (an event-bus sink) and are
audited the same way.

Nothing one request holds can stop the others being recorded: an observation that cannot be
taken is replaced by a minimal one (who, when, status, and that it failed), content that
cannot be kept is left out, and each part (metrics, audit, detection) handles each observation
on its own, so a failure in one is logged and counted in ``errors`` and the pass goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..audit.records import admin_record, content_of, request_record, security_record
from ..audit.redact import redact_short
from ..audit.settings import AuditSettings
from ..audit.writer import AuditWriter
from ..core.observation import Observation, observe_context
from ..core.request import RequestContext
from ..detect.detection import Detection
from ..detect.engine import Detector
from ..errors import GatewayError, StorageError
from ..events import AdminAction, Event, SecurityEvent
from ..metrics.registry import GatewayMetrics
from ..respond.blocks import BlockList, subject_key
from ..respond.incidents import detection_from_event
from ..respond.responder import Responder
from .backlog import Backlog
from .gate import RETRY_AFTER_S, AuditUnavailable

__all__ = ["Monitor"]

log = logging.getLogger("keyguard.monitor")
FOLD_S = 1.0  # identical findings within this many seconds reach the responder once
_MAX_GATES = 10_000
_REFUSED_PER_S = 500.0  # refused credentials told to the other replicas, at most


_MIN_GAP_S = 0.005  # the shortest time between two passes of the background loop


class Monitor:
    def __init__(
        self,
        *,
        audit_settings: AuditSettings,
        audit: AuditWriter | None = None,
        metrics: GatewayMetrics | None = None,
        detector: Detector | None = None,
        responder: Responder | None = None,
        blocks: BlockList | None = None,
        store: Any = None,  # MonitorStore: blocks and baselines
        interval: float = 0.05,
        blocks_poll_s: float = 2.0,
        persist_s: float = 60.0,
        max_pending: int = 50_000,
        clock: Callable[[], float] = time.time,
        responses_elsewhere: Callable[[SecurityEvent], Sequence[str]] | None = None,
        prompt_digest: Callable[[bytes], str] | None = None,
        publish: Callable[[str, dict[str, Any]], None] | None = None,
        alert: Callable[[SecurityEvent], None] | None = None,
    ) -> None:
        self._publish = publish
        self._refused_budget = _REFUSED_PER_S
        self._refused_at = 0.0
        self._digest = prompt_digest
        self._min_chars = detector.settings.repetition.min_chars if detector else 0
        self._audit_settings = audit_settings
        self._elsewhere = responses_elsewhere
        self.audit = audit
        self.metrics = metrics
        self.detector = detector
        self.responder = responder
        self.blocks = blocks
        self._store = store
        self._interval = interval
        self._blocks_poll = blocks_poll_s
        self._persist = persist_s
        self._clock = clock
        # observations waiting for metrics and detection (their audit records are queued)
        self._backlog = Backlog(max_pending, alert=alert)
        self._watch = metrics is not None or detector is not None
        # security events raised outside the detectors, as findings (and responses under way)
        self._raised: deque[tuple[Detection, tuple[str, ...]]] = deque(maxlen=10_000)
        self._wake = asyncio.Event()
        self._urgent = False  # a refused request is waiting: no gap before the next pass
        self._record_content = audit is not None and audit_settings.record_content
        self._active = audit is not None or metrics is not None or detector is not None
        self._passed: dict[tuple[str, str, str], float] = {}  # repeat gate: last passed on
        # repeat gate: how many were folded since, and the latest of them
        self._folded: dict[tuple[str, str, str], tuple[int, Detection]] = {}
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._next_poll = 0.0
        self._next_persist = clock() + persist_s
        self._v4 = detector.settings.ipv4_prefix if detector else 24
        self._v6 = detector.settings.ipv6_prefix if detector else 48
        self.processed = 0
        self.errors = 0  # observations a part failed on (logged; the others went on)
        self.audit_refused = 0  # refused: the audit queue or the backlog was full
        self.served_while_full = 0  # requests forwarded while it was (on_full: serve_unaudited)
        self._logged_error = float("-inf")

    @property
    def pending(self) -> int:
        return len(self._backlog)

    @property
    def dropped(self) -> int:
        """Requests the detectors and metrics did not see (the backlog was full)."""
        return self._backlog.dropped

    def lag(self) -> float:
        """Seconds the oldest request waiting for the detectors has waited."""
        return self._backlog.lag(self._clock())

    @property
    def audit_full(self) -> bool:
        """O(1), for the request path: the monitor cannot take more requests now: the audit
        queue is 90% full, or the detectors' backlog is at its bound (a request served then
        would not be seen by detection; the gate refuses it unless ``on_full`` says serve)."""
        audit = self.audit
        return (audit is not None and audit.full) or self._backlog.full

    # -- hot path --------------------------------------------------------------------------

    @property
    def durable(self) -> bool:
        """Whether answers wait for their audit record (``durability: before_answer``)."""
        return self.audit is not None and self._audit_settings.durability == "before_answer"

    def record(self, ctx: RequestContext) -> None:
        self._record(ctx)

    async def record_durably(self, ctx: RequestContext) -> None:
        """Queue the request's audit record now and return once it is committed (raises
        :class:`~keyguard.errors.StorageError` otherwise); the rest as :meth:`record`."""
        ticket = self._record(ctx)
        if self.audit is None or ticket is None:
            return
        if ticket < 0 and self._audit_settings.on_full != "refuse":
            return  # dropped, serve_unaudited: counted, and raised as a critical event
        try:
            if ticket < 0:
                raise StorageError("audit: the queue is full")
            await self.audit.durable(ticket)
        except StorageError as exc:
            self.audit_refused += 1
            raise AuditUnavailable(
                "Keyguard could not commit this request's audit record (durability: "
                f"before_answer), so its answer is withheld; retry after {RETRY_AFTER_S} "
                "second(s).",
                reason="audit_not_durable",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from exc

    def _record(self, ctx: RequestContext) -> int | None:
        """Observe the request, queue its audit record, keep the observation for metrics and
        detection; the audit record's ticket (-1: dropped), or ``None`` without an audit."""
        if not self._active:
            return None
        backlog = self._backlog
        if self._watch:
            if not backlog:  # the loop wakes: a finding applies to the next request
                self._wake.set()
            if ctx.status >= 400:  # refusals (stuffing, probes, enumeration) at once
                self._urgent = True
        # The observation is taken now, so the request's context (its parsed body, headers,
        # principal, ...) is freed at once instead of waiting in the queue for the next pass.
        latency_ms = (time.perf_counter() - ctx.started) * 1000.0
        wall = time.time()
        try:
            obs = observe_context(
                ctx,
                wall,
                latency_ms,
                v4=self._v4,
                v6=self._v6,
                clean=redact_short,
                digest=self._digest,
                min_chars=self._min_chars,
            )
        except Exception as exc:  # whatever the request held, it is still recorded
            self._failed("observe", exc)
            obs = Observation(
                at=wall,
                request_id=ctx.request_id,
                status=ctx.status,
                reason=f"unobservable:{type(exc).__name__}"[:64],
                latency_ms=latency_ms,
            )
        content = None
        if self._record_content:
            try:
                content = content_of(ctx, self._audit_settings.max_content_chars)
            except Exception as exc:
                self._failed("content", exc)
                content = {"unrecordable": type(exc).__name__}
        ticket = None
        if self.audit is not None:  # first, whatever the detectors' backlog
            try:
                taken = self.audit.append("request", request_record(obs, content), obs.at)
            except Exception as exc:  # the writer refuses bad records itself; belt and braces
                self._failed("audit", exc)
                taken = False
            ticket = self.audit.ticket() if taken else -1
        if self._watch:
            backlog.put(obs)  # when full: counted and raised; its audit record is queued
        return ticket

    def _failed(self, part: str, exc: Exception) -> None:
        """Count a part's failure on one observation; log it (at most once a second)."""
        self.errors += 1
        now = time.monotonic()
        if now - self._logged_error >= 1.0:
            self._logged_error = now
            log.error("monitor: %s failed on a request (%s: %s); %d such failures so far",
                      part, type(exc).__name__, str(exc)[:120], self.errors)  # fmt: skip

    # -- event bus sink --------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        if isinstance(event, SecurityEvent) and self.responder is not None:
            raised = detection_from_event(event, v4=self._v4, v6=self._v6)
            if raised is not None:
                taken = tuple(self._elsewhere(event)) if self._elsewhere is not None else ()
                self._raised.append((raised, taken))
                self._wake.set()
        if self.audit is None:
            return
        if isinstance(event, AdminAction):
            self.audit.append("admin", admin_record(event), event.created.timestamp())
        elif isinstance(event, SecurityEvent):
            self.audit.append("security", security_record(event), event.created.timestamp())

    # -- background ------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):  # not wait_for: see core/tasks.py
                    await self._wake.wait()
            # Woken by a served request: let a few more arrive first. A pass per request under
            # load cost more than its work (~15 µs a request at 3,000 a second); a finding on
            # served traffic (velocity, new networks, ...) still applies within _MIN_GAP_S.
            # A refusal is handled at once.
            gap = _MIN_GAP_S - (loop.time() - last)
            if gap > 0 and not self._urgent:
                await asyncio.sleep(gap)
            last = loop.time()
            self._urgent = False
            self._wake.clear()
            try:
                await self.process()
                await self._housekeeping()
            except Exception:
                log.exception("monitor: unexpected error; carrying on")

    async def process(self) -> int:
        """Handle every request recorded so far; returns how many."""
        n = 0
        async with self._lock:
            backlog = self._backlog
            inbox, step = backlog.items, backlog.step(self._clock())
            while inbox:
                await self._one(inbox.popleft())
                n += 1
                if n % step == 0:  # a few at a time while it keeps up, many when behind
                    await asyncio.sleep(0)
                    step = backlog.step(self._clock())
            backlog.report(self._clock())  # drops not reported yet, once a minute
            raised = self._raised
            while raised and self.responder is not None:
                finding, taken = raised.popleft()
                await self.responder.handle(finding, taken, raised=True)
        if self.metrics is not None:
            self.metrics.commit()
        self.processed += n
        return n

    async def _one(self, obs: Observation) -> None:
        """Metrics and detection each see the request; one failing never keeps the other (or
        the next requests) from it."""
        if self.metrics is not None:
            try:
                self.metrics.observe(obs)
            except Exception as exc:
                self._failed("metrics", exc)
        if self.detector is None:
            return
        if self._publish is not None and obs.auth_failed and obs.key_id is None:
            self._tell_refused(obs)
        try:
            findings = self.detector.observe(obs)
        except Exception as exc:
            self._failed("detection", exc)
            return
        for finding in findings:
            if not self._fold(finding):
                try:
                    await self._pass_on(finding)
                except Exception as exc:  # the responder handles the store's errors itself
                    self._failed("response", exc)

    def _tell_refused(self, obs: Observation) -> None:
        """Tell the other replicas about a refused credential (bounded: a flood is told at
        ``_REFUSED_PER_S``, which is far above every stuffing threshold)."""
        now = obs.at
        budget = min(
            _REFUSED_PER_S, self._refused_budget + (now - self._refused_at) * _REFUSED_PER_S
        )
        self._refused_at = now
        if budget < 1.0:
            self._refused_budget = budget
            return
        self._refused_budget = budget - 1.0
        assert self._publish is not None
        self._publish(
            "refused",
            {
                "at": now,
                "source": obs.source,
                "network": obs.network,
                "client": obs.client_id,
                "refused": obs.refused or obs.request_id,
                "presented": obs.presented_key_id,
            },
        )

    def remote_refused(self, data: dict[str, Any]) -> None:
        """A credential another replica refused (from the bus): counted, not judged."""
        if self.detector is None:
            return
        values = {k: data.get(k) for k in ("source", "network", "client", "refused", "presented")}
        if not all(v is None or (isinstance(v, str) and len(v) <= 512) for v in values.values()):
            return
        at = data.get("at")
        if not isinstance(at, int | float) or isinstance(at, bool):
            return
        user_agent, _, client = (values["client"] or "").partition("|")
        self.detector.observe_remote(
            Observation(
                at=float(at),
                status=401,
                source=values["source"],
                network=values["network"],
                user_agent=user_agent or None,
                client=client or None,
                refused=values["refused"],
                presented_key_id=values["presented"],
            )
        )

    async def _pass_on(self, finding: Detection) -> None:
        """Count a finding (with the repeats folded into it) and hand it to the responder."""
        if self.metrics is not None:
            self.metrics.count(
                self.metrics.detections, finding.rule, finding.severity, n=1 + finding.repeats
            )
        if self.responder is not None:
            await self.responder.handle(finding)

    def _fold(self, finding: Detection) -> bool:
        """The repeat gate: a finding identical in rule, subject and severity to one passed on
        less than ``FOLD_S`` ago is only counted, and the count rides on the next one passed
        on. A flood (a stolen key at thousands of requests a second: a finding per request)
        then costs the responder one call a second per incident, not one per request; a new
        rule, subject or a higher severity passes at once."""
        key = (finding.rule, finding.subject, finding.severity)
        last = self._passed.get(key)
        if last is not None and 0 <= finding.at - last < FOLD_S:
            held = self._folded.get(key)
            self._folded[key] = (held[0] + 1 if held else 1, finding)
            return True
        if len(self._passed) >= _MAX_GATES:
            self._passed.clear()
        self._passed[key] = finding.at
        held = self._folded.pop(key, None)
        finding.repeats = held[0] if held else 0
        return False

    async def _release_folded(self) -> None:
        """Pass on what the gate still holds (at shutdown): incident counts end exact."""
        folded, self._folded = self._folded, {}
        for count, latest in folded.values():
            latest.repeats = count - 1
            await self._pass_on(latest)

    async def _housekeeping(self) -> None:
        now = self._clock()
        if self._store is None:
            return
        try:
            if self.blocks is not None and now >= self._next_poll:
                self._next_poll = now + self._blocks_poll
                active = await self._store.active_blocks(now)
                parsed = {subject_key(s): until for s, until in active.items()}
                self.blocks.replace_all({k: v for k, v in parsed.items() if k is not None}, now)
            if self.detector is not None and now >= self._next_persist:
                self._next_persist = now + self._persist
                await self._store.save_profiles(self.detector.take_dirty(), now)
        except GatewayError as exc:
            log.warning("monitor: store unavailable for blocks or baselines (%s)", exc)

    async def drain(self) -> None:
        """Process everything recorded, pass on what the repeat gate holds and write the audit
        now (tests, shutdown)."""
        await self.process()
        await self._release_folded()
        if self.audit is not None:
            await self.audit.flush()

    async def close(self) -> None:
        """Stop the loop, then handle and write everything still pending."""
        self._stop.set()
        self._wake.set()
        await self.process()
        await self._release_folded()
        if self._store is not None and self.detector is not None:
            with contextlib.suppress(GatewayError):
                await self._store.save_profiles(self.detector.take_dirty(), self._clock())
