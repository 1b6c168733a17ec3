"""Alerts: incidents posted to webhooks as generic JSON, Slack or Microsoft Teams messages.

An alert carries the incident (rule, severity, subject, key id, app, network, summary, counts,
evidence) and never a secret: evidence holds no credential, and client-supplied text in it was
redacted on the way in. Webhook URLs may themselves be secrets (Slack, Teams): they come from
the vault and are never logged; errors name the webhook, not its URL.

Delivery is off the hot path: :meth:`AlertSender.send` queues, a background task posts, retrying
timeouts, connection errors, 429 and 5xx with exponential backoff and jitter (``Retry-After``
honoured), up to ``attempts`` tries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from ..core.times import utc_seconds
from ..metrics.registry import GatewayMetrics
from .incidents import Incident
from .settings import SEVERITIES, WebhookSettings

__all__ = ["Webhook", "AlertSender", "render", "generic_body", "slack_body", "teams_body"]

log = logging.getLogger("keyguard.alerts")
_MAX_DELAY = 60.0


@dataclass(frozen=True, slots=True)
class Webhook:
    settings: WebhookSettings
    url: str  # resolved from the vault when it is a secret; never logged


def _when(ts: float) -> str:
    return utc_seconds(datetime.fromtimestamp(ts, UTC)) or ""


def _title(incident: Incident, change: str) -> str:
    verb = {"new": "", "escalated": " (escalated)"}.get(change, " (update)")
    return f"Keyguard {incident.severity.upper()}: {incident.rule}{verb}"


def _facts(incident: Incident) -> list[tuple[str, str]]:
    facts = [
        ("Subject", incident.subject),
        ("App", incident.app or "-"),
        ("Key id", incident.key_id or "-"),
        ("Network", incident.source or "-"),
        ("Requests", str(incident.count)),
        ("First seen", _when(incident.created_at)),
        ("Actions", ", ".join(incident.actions) or "recorded"),
        ("Incident", incident.id),
    ]
    return facts


def generic_body(incident: Incident, change: str) -> dict[str, Any]:
    return {"source": "keyguard", "type": "incident", "change": change, **incident.to_json()}


def slack_body(incident: Incident, change: str) -> dict[str, Any]:
    title = _title(incident, change)
    return {
        "text": f"{title}: {incident.summary}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "plain_text", "text": incident.summary[:2900]}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{name}*\n{value}"}
                    for name, value in _facts(incident)[:10]
                ],
            },
        ],
    }


def teams_body(incident: Incident, change: str) -> dict[str, Any]:
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": _title(incident, change),
                "weight": "Bolder",
                "size": "Medium",
                "color": "Attention" if incident.severity in ("high", "critical") else "Warning",
            },
            {"type": "TextBlock", "text": incident.summary, "wrap": True},
            {
                "type": "FactSet",
                "facts": [{"title": name, "value": value} for name, value in _facts(incident)],
            },
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


_FORMATS = {"generic": generic_body, "slack": slack_body, "teams": teams_body}


def render(fmt: str, incident: Incident, change: str) -> dict[str, Any]:
    return _FORMATS[fmt](incident, change)


class AlertSender:
    def __init__(
        self,
        webhooks: list[Webhook],
        session: aiohttp.ClientSession,
        *,
        metrics: GatewayMetrics | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        base_delay: float = 1.0,
    ) -> None:
        self._webhooks = webhooks
        self._session = session
        self._metrics = metrics
        self._sleep = sleep
        self._base = base_delay
        self._queue: asyncio.Queue[tuple[Webhook, dict[str, Any]] | None] = asyncio.Queue()
        self.sent = 0
        self.failed = 0

    def send(self, incident: Incident, change: str) -> int:
        """Queue the incident for every webhook its severity reaches; returns how many."""
        n = 0
        for hook in self._webhooks:
            if SEVERITIES.index(incident.severity) >= SEVERITIES.index(hook.settings.min_severity):
                self._queue.put_nowait((hook, render(hook.settings.format, incident, change)))
                n += 1
        return n

    async def run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if item is None:
                    return
                await self._deliver(*item)
            finally:
                self._queue.task_done()

    async def drain(self) -> None:
        """Wait until every queued alert was delivered or given up."""
        await self._queue.join()

    async def close(self) -> None:
        self._queue.put_nowait(None)

    async def _deliver(self, hook: Webhook, body: dict[str, Any]) -> bool:
        s = hook.settings
        timeout = aiohttp.ClientTimeout(total=s.timeout_s)
        for attempt in range(1, s.attempts + 1):
            retry_after: float | None = None
            try:
                async with self._session.post(
                    hook.url, json=body, timeout=timeout, allow_redirects=False
                ) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        self._count(s.format, "sent")
                        self.sent += 1
                        return True
                    if resp.status != 429 and resp.status < 500:
                        log.error("alert webhook %s refused the alert (%d)", s.name, resp.status)
                        break
                    with contextlib.suppress(ValueError):
                        retry_after = float(resp.headers.get("Retry-After", ""))
                    problem = f"status {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = type(exc).__name__
            if attempt == s.attempts:
                log.error("alert webhook %s failed %d times (%s)", s.name, attempt, problem)
                break
            self._count(s.format, "retried")
            delay = min(_MAX_DELAY, self._base * 2 ** (attempt - 1))
            delay = delay * (0.5 + random.random() / 2)  # jitter
            await self._sleep(min(_MAX_DELAY, retry_after) if retry_after is not None else delay)
        self._count(s.format, "failed")
        self.failed += 1
        return False

    def _count(self, fmt: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.count(self._metrics.alerts, fmt, outcome)
