"""Incidents, blocks, the hot-path guard, alert formats and delivery with retries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from keyguard.core.hooks import AllowAuthenticated
from keyguard.core.principal import Principal
from keyguard.core.request import RequestContext
from keyguard.detect.detection import Detection
from keyguard.errors import AuthenticationFailed, TooManyRequests
from keyguard.events import Event, EventBus, SecurityEvent
from keyguard.respond.alerts import AlertSender, Webhook, render
from keyguard.respond.blocks import BlockGuard, BlockList
from keyguard.respond.incidents import IncidentBook
from keyguard.respond.responder import Responder
from keyguard.respond.settings import RespondSettings, WebhookSettings

from .conftest import WebhookReceiver

NOW = 1_800_000_000.0


def finding(
    rule: str = "velocity", severity: str = "high", at: float = NOW, **kw: Any
) -> Detection:
    return Detection(
        rule=rule,
        severity=severity,  # type: ignore[arg-type]
        subject=kw.pop("subject", "key:KEYAAAAAAAA1"),
        summary=f"{rule} summary",
        at=at,
        request_id="r1",
        key_id=kw.pop("key_id", "KEYAAAAAAAA1"),
        app="billing",
        source="203.0.113.0/24",
        evidence={"tokens": 1},
    )


def ctx(
    key_id: str = "KEYAAAAAAAA1", app: str = "billing", remote: str = "10.0.0.1"
) -> RequestContext:
    c = RequestContext("id", 0.0, "POST", remote, "ua")
    c.principal = Principal("key", f"key:{key_id}", app, key_id)
    return c


def test_incident_book_groups_escalates_and_reopens_after_cooldown() -> None:
    book = IncidentBook(cooldown_s=3600)
    first, change = book.take(finding(severity="medium"), NOW)
    assert change == "new" and first.count == 1
    same, change = book.take(finding(severity="medium"), NOW + 10)
    assert change == "repeat" and same.id == first.id and same.count == 2
    worse, change = book.take(finding(severity="high"), NOW + 20)
    assert change == "escalated" and worse.severity == "high"
    other, change = book.take(finding(subject="key:OTHERKEY0001"), NOW + 30)
    assert change == "new" and other.id != first.id
    later, change = book.take(finding(), NOW + 20 + 3601)
    assert change == "new" and later.id != first.id


def test_block_list_and_guard() -> None:
    clock = [NOW]
    blocks = BlockList(clock=lambda: clock[0])
    guard = BlockGuard(AllowAuthenticated(), blocks, decoy_key_ids=frozenset({"DECOYDECOY01"}))
    now = datetime.now(UTC)
    guard.authorize(ctx(), now)
    blocks.add("key", "KEYAAAAAAAA1", NOW + 100)
    with pytest.raises(TooManyRequests) as caught:
        guard.authorize(ctx(), now)
    assert caught.value.headers["Retry-After"] == "100" and caught.value.reason == "abuse_block"
    guard.authorize(ctx("KEYBBBBBBBB2"), now)
    blocks.add("source", "10.0.0.0/24", NOW + 50)
    with pytest.raises(TooManyRequests):  # a blocked network, before any credential is read
        guard.screen(ctx("KEYBBBBBBBB2"))
    blocks.add("address", "10.9.9.9", NOW + 50)
    with pytest.raises(TooManyRequests):
        guard.screen(ctx(remote="10.9.9.9"))
    clock[0] = NOW + 101
    guard.screen(ctx(remote="10.9.9.9"))  # expired
    guard.authorize(ctx(remote="10.9.9.9"), now)
    with pytest.raises(AuthenticationFailed) as denied:
        guard.authorize(ctx("DECOYDECOY01"), now)
    assert denied.value.reason == "decoy_key" and "not valid" in denied.value.message


def test_block_list_takes_the_store_as_truth_but_keeps_fresh_local_blocks() -> None:
    clock = [NOW]
    blocks = BlockList(clock=lambda: clock[0])
    blocks.add("key", "A", NOW + 900)
    blocks.replace_all({}, NOW)  # not in the store yet: kept
    assert blocks.until("key", "A") is not None
    clock[0] = NOW + 30
    blocks.replace_all({("app", "x"): NOW + 500}, NOW + 30)  # lifted in the store: gone
    assert blocks.until("key", "A") is None and blocks.until("app", "x") is not None


def test_alert_formats_carry_no_secret() -> None:
    book = IncidentBook(3600)
    incident, _ = book.take(finding(), NOW)
    generic = render("generic", incident, "new")
    assert generic["rule"] == "velocity" and generic["key_id"] == "KEYAAAAAAAA1"
    slack = render("slack", incident, "new")
    assert slack["text"].startswith("Keyguard HIGH: velocity") and slack["blocks"]
    teams = render("teams", incident, "escalated")
    card = teams["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard" and "escalated" in card["body"][0]["text"]


def test_webhook_urls_with_secrets_must_come_from_the_vault() -> None:
    with pytest.raises(ValueError, match="vault"):
        WebhookSettings(name="s", format="slack", url="https://hooks.slack.com/services/T/B/x")
    with pytest.raises(ValueError, match="vault"):
        WebhookSettings(name="g", url="https://siem.example/ingest?token=x")
    WebhookSettings(name="ok", url="https://siem.example/ingest")


async def test_alerts_are_retried_with_backoff(webhook: WebhookReceiver) -> None:
    webhook.statuses.extend([500, 429, 503])
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    hook = Webhook(
        WebhookSettings(name="siem", url=webhook.url, min_severity="medium"), webhook.url
    )
    async with aiohttp.ClientSession() as session:
        sender = AlertSender([hook], session, sleep=sleep)
        book = IncidentBook(3600)
        incident, _ = book.take(finding(), NOW)
        low, _ = book.take(finding(rule="unusual_time", severity="low"), NOW)
        assert sender.send(incident, "new") == 1 and sender.send(low, "new") == 0
        import asyncio

        task = asyncio.create_task(sender.run())
        await sender.drain()
        await sender.close()
        await task
    assert sender.sent == 1 and len(webhook.received) == 4
    assert webhook.received[-1]["id"] == incident.id
    assert delays[0] < delays[2] and delays[1] == 0  # exponential, Retry-After honoured


class FakeKeys:
    def __init__(self) -> None:
        self.suspended: list[str] = []

    async def suspend(self, key_id: str, *, now: datetime) -> Any:
        self.suspended.append(key_id)
        from keyguard.store.base import KeyRecord

        return KeyRecord(key_id, "billing", "d" * 64, now, now, suspended_at=now)


async def test_responder_runs_the_policy_once_per_incident() -> None:
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    keys, invalidated = FakeKeys(), list[str]()
    blocks = BlockList(clock=lambda: NOW)
    responder = Responder(
        RespondSettings(
            policy={"velocity": {"high": ["throttle", "suspend_key", "rotate_upstream"]}}
        ),
        IncidentBook(3600),
        events=bus,
        blocks=blocks,
        keys=keys,  # type: ignore[arg-type]
        invalidate=invalidated.append,
        upstreams=["east"],
        clock=lambda: NOW,
    )
    incident = await responder.handle(finding())
    assert set(incident.actions) == {"throttle", "suspend_key", "rotate_upstream"}
    assert blocks.until("key", "KEYAAAAAAAA1") == NOW + 900
    assert keys.suspended == ["KEYAAAAAAAA1"] and invalidated == ["KEYAAAAAAAA1"]
    kinds = [getattr(e, "kind", None) or getattr(e, "action", None) for e in events]
    assert "velocity" in kinds and "keys.suspend" in kinds and "rotate_upstream_requested" in kinds
    rotate = next(e for e in events if isinstance(e, SecurityEvent) and e.upstream)
    assert rotate.upstream == "east"
    again = await responder.handle(finding(at=NOW + 5))
    assert again.count == 2 and keys.suspended == ["KEYAAAAAAAA1"]  # not suspended twice


async def test_automatic_responses_can_be_switched_off() -> None:
    blocks = BlockList(clock=lambda: NOW)
    responder = Responder(
        RespondSettings(automatic=False), IncidentBook(3600), events=EventBus(), blocks=blocks
    )
    incident = await responder.handle(finding())
    assert incident.actions == () and not blocks.active
