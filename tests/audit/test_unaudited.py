"""End to end: no request is served unaudited without it being counted and said.

A flood of requests whose values the audit cannot write as they are does not keep another
app's requests out of the log. When the store stops taking writes and the audit queue fills,
the gateway refuses new requests with 503 and ``Retry-After`` in Azure's error shape
(``on_full: refuse``, the default), or serves them with a critical security event and counts
what it drops (``serve_unaudited``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from keyguard.audit.writer import AuditWriter
from keyguard.emulator.server import RunningEmulator
from keyguard.metrics.registry import GatewayMetrics
from keyguard.monitor.pipeline import Monitor
from tests.integration.harness import GatewayHarness, harnessed
from tests.support.settings import keyguard_settings, upstream, write_config

from .test_gateway_audit import HI, invoke, rows


@contextmanager
def store_locked(db: Path) -> Iterator[None]:
    """The store takes no writes while another connection holds its write lock."""
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def parts(gw: GatewayHarness) -> tuple[Monitor, AuditWriter, GatewayMetrics]:
    monitoring = gw.gateway.monitoring
    assert monitoring is not None and monitoring.metrics is not None
    assert monitoring.recorder.audit is not None
    return monitoring.recorder, monitoring.recorder.audit, monitoring.metrics


def of_kind(tmp: Path, kind: str) -> list[dict[str, Any]]:
    return [orjson.loads(d) for _, k, d in rows(tmp / "keyguard.db") if k == kind]


async def test_a_flood_of_unwritable_values_leaves_other_apps_audited(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with harnessed(tmp_path, emulator) as gw:
        prober_id, prober = await gw.new_key("prober")
        victim_id, victim = await gw.new_key("victim")
        async with gw.azure(prober) as bad, gw.azure(victim) as good:

            async def probe() -> None:
                await bad.chat.completions.create(
                    model="gpt-4o", messages=HI, max_tokens=5, extra_body={"seed": 1e20}
                )

            async def work() -> None:
                await good.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=5)

            await asyncio.gather(*(probe() for _ in range(60)), *(work() for _ in range(20)))
        assert gw.gateway.monitoring is not None
        await gw.gateway.monitoring.recorder.drain()
    requests = of_kind(tmp_path, "request")
    assert len(requests) == 80  # one record per request, whatever it held
    victims = [r for r in requests if r.get("key_id") == victim_id]
    assert len(victims) == 20 and all(r["status"] == 200 and r["app"] == "victim" for r in victims)
    probes = [r for r in requests if r.get("key_id") != victim_id]
    assert all(r.get("key_id") == prober_id or "unrecordable" in r for r in probes)
    config = write_config(tmp_path, keyguard_settings(tmp_path, upstreams=[upstream(emulator.url)]))
    assert (await invoke("audit", "verify", "-c", str(config))).exit_code == 0


async def test_a_full_audit_queue_refuses_requests_with_503(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    async with harnessed(tmp_path, emulator, monitor={"audit": {"max_queue": 1000}}) as gw:
        _, key = await gw.new_key("app")
        recorder, audit, metrics = parts(gw)
        async with gw.azure(key) as client:
            with store_locked(tmp_path / "keyguard.db"):
                for i in range(900):  # records waiting while the store is unavailable
                    audit.append("admin", {"filler": i})
                assert recorder.audit_full
                with pytest.raises(openai.APIStatusError) as refused:
                    await client.chat.completions.create(model="gpt-4o", messages=HI)
            assert refused.value.status_code == 503
            assert refused.value.response.headers["retry-after"] == "1"
            error = refused.value.response.json()["error"]
            assert error["code"] == "ServiceUnavailable" and "audit" in error["message"]
            assert recorder.audit_refused == 1
            await recorder.drain()  # the store is back: the queue drains
            assert not recorder.audit_full
            served = await client.chat.completions.create(model="gpt-4o", messages=HI)
            assert served.choices
        await recorder.drain()
        assert audit.dropped == 0 and recorder.dropped == 0  # nothing lost
        text = metrics.render(None)[0].decode()
        assert "keyguard_audit_refused_requests 1.0" in text and "keyguard_audit_full 0.0" in text
    requests = of_kind(tmp_path, "request")
    assert [(r["status"], r["reason"]) for r in requests] == [(503, "audit_full"), (200, "ok")]
    security = of_kind(tmp_path, "security")
    assert [(s["kind"], s["severity"]) for s in security] == [("audit_queue_full", "high")]


async def test_serving_unaudited_is_counted_and_raised(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    monitor = {"audit": {"max_queue": 1000, "on_full": "serve_unaudited"}}
    async with harnessed(tmp_path, emulator, monitor=monitor) as gw:
        _, key = await gw.new_key("app")
        recorder, audit, metrics = parts(gw)
        async with gw.azure(key) as client:
            with store_locked(tmp_path / "keyguard.db"):
                while audit.queued < 1000:
                    audit.append("admin", {"filler": audit.queued})
                served = await client.chat.completions.create(model="gpt-4o", messages=HI)
                assert served.choices and recorder.served_while_full == 1
                await recorder.process()  # its record does not fit: dropped, and counted
                assert audit.dropped == 1
            await recorder.drain()
        text = metrics.render(None)[0].decode()
        assert "keyguard_audit_dropped 1.0" in text
        assert "keyguard_audit_served_while_full 1.0" in text
    assert not of_kind(tmp_path, "request")  # the one that did not fit
    security = of_kind(tmp_path, "security")
    assert [(s["kind"], s["severity"]) for s in security] == [("audit_queue_full", "critical")]


async def test_before_answer_withholds_an_answer_whose_record_is_not_committed(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """``durability: before_answer``: the answer waits for its record; when the store takes no
    writes the caller gets a 503 in Azure's shape, not an answer the audit log may lack."""
    monitor = {"audit": {"durability": "before_answer", "durable_timeout_s": 0.5}}
    async with harnessed(tmp_path, emulator, monitor=monitor) as gw:
        _, key = await gw.new_key("app")
        recorder, audit, _ = parts(gw)
        async with gw.azure(key) as client:
            served = await client.chat.completions.create(model="gpt-4o", messages=HI)
            assert served.choices
            [rid] = [r["request_id"] for r in of_kind(tmp_path, "request")]  # committed already
            with store_locked(tmp_path / "keyguard.db"):
                with pytest.raises(openai.APIStatusError) as withheld:
                    await client.chat.completions.create(model="gpt-4o", messages=HI)
            assert withheld.value.status_code == 503
            assert withheld.value.response.headers["retry-after"] == "1"
            error = withheld.value.response.json()["error"]
            assert error["code"] == "ServiceUnavailable" and "audit record" in error["message"]
            assert recorder.audit_refused == 1
            again = await client.chat.completions.create(model="gpt-4o", messages=HI)
            assert again.choices
        await recorder.drain()
        assert audit.dropped == 0
    requests = of_kind(tmp_path, "request")
    assert rid == requests[0]["request_id"] and len(requests) == 3  # the withheld one included
