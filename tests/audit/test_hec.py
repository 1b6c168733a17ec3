"""The SIEM stream (Splunk HEC-compatible JSON over HTTPS) against a local collector: every
committed line arrives once and in order, keeping its chain fields, so the SIEM's copy
verifies; a collector that fails is retried with back-off until it takes the lines; a
collector down for long fills a bounded buffer whose oldest lines are dropped and counted;
the token never reaches a log; a careless plain-http URL is refused."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.audit.chain import canonical
from keyguard.audit.export import verify_lines
from keyguard.audit.hec import HecSink
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.errors import ConfigurationError
from tests.support.settings import free_port

SIGNER = Signer(Ed25519PrivateKey.generate())
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))
TOKEN = "canary-hec-token-6f1d2c"


class Collector:
    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.posts = 0
        self.events: list[dict[str, Any]] = []
        self.auth: set[str] = set()

    async def handle(self, request: web.Request) -> web.Response:
        self.posts += 1
        self.auth.add(request.headers.get("Authorization", ""))
        body = await request.read()
        if self.posts <= self.fail_first:
            return web.Response(status=503)
        self.events += [orjson.loads(line) for line in body.splitlines() if line.strip()]
        return web.json_response({"text": "Success", "code": 0})


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, str]]:
    found = Collector(fail_first=2)
    app = web.Application()
    app.router.add_post("/services/collector/event", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield found, f"http://127.0.0.1:{port}/services/collector/event"
    finally:
        await runner.cleanup()


async def _until(condition: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.02)


async def test_every_line_arrives_in_order_and_the_copy_verifies(
    engine: AsyncEngine, collector: tuple[Collector, str], caplog: pytest.LogCaptureFixture
) -> None:
    found, url = collector
    caplog.set_level(logging.DEBUG)
    sink = HecSink(url, TOKEN, initial_s=0.01, max_s=0.05)
    writer = AuditWriter(AuditStore(engine), AuditSettings(), signer=SIGNER, sink=sink)
    for i in range(1200):  # more than one post's worth
        writer.append("request", {"i": i, "status": 200})
    await writer.tick()
    await writer.close()  # the closing record, its checkpoint, a head set; delivered
    assert sink.waiting == 0 and sink.failures == 2 and sink.dropped == 0
    assert found.auth == {f"Splunk {TOKEN}"}
    assert all(e["sourcetype"] == "keyguard:audit" for e in found.events)
    lines = [canonical(e["event"]) for e in found.events]
    assert [e["event"]["type"] for e in found.events].count("heads") == 1
    report = verify_lines(lines, CHECK)
    assert report.ok and report.records == 1202 and report.head_sets == 1, report.problems
    assert all(e["event"].get("chain") == writer.id for e in found.events[:-1])
    assert TOKEN not in caplog.text


async def test_a_collector_down_fills_a_bounded_buffer_counted(engine: AsyncEngine) -> None:
    url = f"http://127.0.0.1:{free_port()}/services/collector/event"  # nothing listens
    sink = HecSink(url, TOKEN, max_lines=1000, initial_s=0.01, max_s=0.05)
    sink.write([canonical({"type": "record", "seq": i}) for i in range(1500)])
    await _until(lambda: sink.failures >= 2)
    assert sink.dropped == 500 and sink.waiting == 1000 and sink.lag() > 0
    await asyncio.to_thread(sink.close, 0.5)


def test_plain_http_to_another_host_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="monitor.audit.hec_url: use an https:// URL"):
        HecSink("http://siem.example.com:8088/services/collector/event", TOKEN)
