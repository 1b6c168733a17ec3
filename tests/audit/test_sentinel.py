"""The Microsoft Sentinel stream against the emulator's Logs Ingestion endpoint, with the real
``azure-monitor-ingestion`` client and a managed-identity token from the emulator: a hostile
or careless caller of the endpoint is refused as Azure refuses it; a careless operator's
endpoint, rule or stream fails at start naming the setting; every committed line arrives once
and in order through injected 429s (their Retry-After followed) and the rows received verify
with the export verifier; an endpoint that is down fills a bounded buffer whose losses are
counted and reported; the token never reaches a log."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.identity import ManagedIdentityCredential
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.audit.chain import canonical
from keyguard.audit.delivery import MAX_RETRY_AFTER_S, Attempt, take_batch, wait_after
from keyguard.audit.export import verify_lines
from keyguard.audit.sentinel import MAX_CALL_BYTES, SentinelSink, row
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer, load_public_keys, load_signer, signature_checker
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.config import settings_from_mapping
from keyguard.emulator import issue_token
from keyguard.emulator.logs_ingestion import LOGS_KEY
from keyguard.errors import ConfigurationError
from keyguard.events import Event, SecurityEvent
from tests.support.emulators import AzureEmulator
from tests.support.gateway import azure_client, new_key, running_gateway
from tests.support.logs import LogCapture
from tests.support.settings import CHAT_DEPLOYMENTS, free_port, keyguard_config, upstream

SIGNER = Signer(Ed25519PrivateKey.generate())
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))
RULE = "dcr-" + "0123456789abcdef" * 2
STREAM = "Custom-KeyguardAudit_CL"
MESSAGES: Any = [{"role": "user", "content": "Hello, world!"}]
PATH = f"/dataCollectionRules/{RULE}/streams/{STREAM}?api-version=2023-01-01"


async def _until(condition: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.02)


def _sink(emulator: AzureEmulator, **kwargs: Any) -> SentinelSink:
    credential = ManagedIdentityCredential(connection_verify=emulator.ca_file)
    return SentinelSink(emulator.url, RULE, STREAM, credential, ca_file=emulator.ca_file, **kwargs)


# -- a careless operator --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "rule", "stream", "setting"),
    [
        ("http://dce.eastus-1.ingest.monitor.azure.com", RULE, STREAM, "sentinel_endpoint"),
        ("dce.eastus-1.ingest.monitor.azure.com", RULE, STREAM, "sentinel_endpoint"),
        ("https://dce.example/?sig=x", RULE, STREAM, "sentinel_endpoint"),
        ("https://dce.example", "my-rule", STREAM, "sentinel_rule_id"),
        ("https://dce.example", RULE.upper(), STREAM, "sentinel_rule_id"),
        ("https://dce.example", RULE, "KeyguardAudit_CL", "sentinel_stream"),
        ("https://dce.example", RULE, "Custom-../../x", "sentinel_stream"),
    ],
)
def test_a_wrong_endpoint_rule_or_stream_fails_at_start(
    endpoint: str, rule: str, stream: str, setting: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"monitor.audit.{setting}: "):
        SentinelSink(endpoint, rule, stream, credential=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "logged"),
    [
        ({"publishers": frozenset({"someone-else"})}, "answered 403; give Keyguard's identity "
         "the role 'Monitoring Metrics Publisher' on the data collection rule"),
    ],
)  # fmt: skip
async def test_a_missing_role_is_retried_and_named_in_the_log(
    azure_emulator: AzureEmulator, logs: LogCapture, change: dict[str, Any], logged: str
) -> None:
    ingestion = azure_emulator.app[LOGS_KEY]
    for name, value in change.items():
        setattr(ingestion, name, value)
    sink = _sink(azure_emulator, initial_s=0.01, max_s=0.05)
    await asyncio.to_thread(sink.write, [canonical({"type": "record", "seq": 1})])
    await _until(lambda: sink.failures >= 2)
    assert sink.waiting == 1 and sink.sent == 0 and ingestion.rows(RULE, STREAM) == []
    assert any(logged in line for line in logs.lines)
    for name in change:  # the operator fixes it: the line waiting goes through
        setattr(ingestion, name, None)
    await _until(lambda: sink.sent == 1)
    await asyncio.to_thread(sink.close)
    assert [r["Seq"] for r in ingestion.rows(RULE, STREAM)] == [1]


async def test_no_token_is_retried_and_the_identity_secret_never_logged(
    azure_emulator: AzureEmulator, logs: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = "canary-identity-header-5c1e"
    monkeypatch.setenv("IDENTITY_HEADER", canary)  # not the emulator's: no token is issued
    sink = _sink(azure_emulator, initial_s=0.01, max_s=0.05)
    await asyncio.to_thread(sink.write, [canonical({"type": "record", "seq": 1})])
    await _until(lambda: sink.failures >= 2)
    await asyncio.to_thread(sink.close, 0.1)
    assert not sink._thread.is_alive()
    assert azure_emulator.app[LOGS_KEY].calls == 0 and sink.waiting == 1
    assert any("no token for the Logs Ingestion endpoint" in line for line in logs.lines)
    assert not any(canary in line for line in logs.lines)


# -- delivery ---------------------------------------------------------------------------------


async def test_every_line_arrives_in_order_through_429s_and_the_copy_verifies(
    engine: AsyncEngine, azure_emulator: AzureEmulator, logs: LogCapture
) -> None:
    ingestion = azure_emulator.app[LOGS_KEY]
    ingestion.add_fault({"status": 429, "retry_after": 1, "count": 2}, time.time())
    sink = _sink(azure_emulator, initial_s=0.01, max_s=0.05)
    writer = AuditWriter(AuditStore(engine), AuditSettings(), signer=SIGNER, sink=sink)
    started = time.monotonic()
    for i in range(3000):  # more than one call's worth of lines
        writer.append("request", {"i": i, "status": 200, "user_agent": "x" * 300})
    await writer.tick()
    await writer.close()  # the closing record, its checkpoint, a head set; delivered
    elapsed = time.monotonic() - started
    assert sink.waiting == 0 and sink.failures == 2 and sink.losses == 0
    assert elapsed >= 2.0  # each 429 said "retry after 1 s", and it was followed
    rows = ingestion.rows(RULE, STREAM)
    assert ingestion.accepted >= 2  # more than one call: batches of at most 1 MB
    report = verify_lines([r["Line"] for r in rows], CHECK)
    assert report.ok and report.records == 3002 and report.head_sets == 1, report.problems
    records = [r for r in rows if r["RecordType"] == "record"]
    assert [r["Seq"] for r in records] == list(range(1, 3003))
    assert all(r["Chain"] == writer.id and len(r["Hash"]) == 64 for r in records)
    assert all(r["PrevHash"] for r in records) and records[1]["PrevHash"] == records[0]["Hash"]
    assert all(r["TimeGenerated"].endswith("Z") for r in rows)
    token = issue_token(azure_emulator.state, "https://monitor.azure.com")["access_token"]
    head = token.split(".")[0]  # every token of the emulator starts alike; none is logged
    assert not any(head in line for line in logs.lines)


async def test_an_endpoint_down_fills_a_bounded_buffer_counted_and_reported(
    engine: AsyncEngine, azure_emulator: AzureEmulator
) -> None:
    down = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    credential = ManagedIdentityCredential(connection_verify=azure_emulator.ca_file)
    sink = SentinelSink(down, RULE, STREAM, credential, max_lines=1000, initial_s=0.01,
                        max_s=0.05, ca_file=azure_emulator.ca_file)  # fmt: skip
    events: list[Event] = []
    writer = AuditWriter(
        AuditStore(engine), AuditSettings(), signer=SIGNER, sink=sink, emit=events.append
    )
    for i in range(1500):
        writer.append("request", {"i": i})
    await writer.tick()  # committed to the store, handed to the stream: never waits for it
    await _until(lambda: sink.failures >= 2)
    assert sink.dropped > 0 and sink.waiting == 1000 and sink.lag() > 0
    [lost] = [e for e in events if isinstance(e, SecurityEvent)]
    assert lost.kind == "audit_sink_lost" and lost.severity == "high"
    assert lost.evidence["dropped"] == sink.dropped
    await asyncio.to_thread(sink.close, 0.5)


async def test_a_row_over_one_call_is_refused_alone_and_counted(
    azure_emulator: AzureEmulator,
) -> None:
    sink = _sink(azure_emulator, initial_s=0.01, max_s=0.05)
    huge = canonical({"type": "record", "seq": 2, "data": {"c": "y" * MAX_CALL_BYTES}})
    small = [canonical({"type": "record", "seq": n}) for n in (1, 3)]
    await asyncio.to_thread(sink.write, [small[0], huge, small[1]])
    await _until(lambda: sink.sent == 2)
    await asyncio.to_thread(sink.close)
    assert sink.rejected == 1 and sink.losses == 1
    seqs = [r["Seq"] for r in azure_emulator.app[LOGS_KEY].rows(RULE, STREAM)]
    assert seqs == [1, 3]


# -- the pure parts ----------------------------------------------------------------------------


def test_the_row_keeps_the_line_and_its_chain_fields() -> None:
    line = canonical({"type": "checkpoint", "chain": "c1", "seq": 9, "hash": "h",
                      "created": "2026-12-03T08:00:00.000000Z"})  # fmt: skip
    assert row(line) == {"TimeGenerated": "2026-12-03T08:00:00.000000Z",
                         "RecordType": "checkpoint", "Chain": "c1", "Seq": 9, "Kind": None,
                         "Hash": "h", "PrevHash": None, "Line": line}  # fmt: skip
    assert row("[1]")["Line"] == "[1]" and row("{bad")["RecordType"] is None


def test_retry_after_is_followed_within_a_bound() -> None:
    assert wait_after(Attempt(False), 0.5) == 0.5
    assert wait_after(Attempt(False, retry_after=7), 0.5) == 7
    assert wait_after(Attempt(False, retry_after=0), 0.5) == 0.5
    assert wait_after(Attempt(False, retry_after=86_400), 0.5) == MAX_RETRY_AFTER_S


def test_a_batch_is_bounded_by_lines_and_bytes_and_never_empty() -> None:
    lines = [(n, 0.0, "x" * 99) for n in range(10)]
    assert take_batch(lines, 4, 10_000) == 4
    assert take_batch(lines, 100, 350) == 3
    assert take_batch(lines, 100, 10) == 1  # one line over the budget still goes alone
    assert take_batch([], 5, 5) == 0


# -- through the gateway ---------------------------------------------------------------------


async def test_the_gateway_streams_its_audit_to_sentinel_with_its_managed_identity(
    tmp_path: Path, azure_emulator: AzureEmulator, logs: LogCapture
) -> None:
    audit = {
        "sink": "sentinel",
        "sentinel_endpoint": azure_emulator.url,
        "sentinel_rule_id": RULE,
        "sentinel_identity": {"type": "managed_identity", "ca_file": azure_emulator.ca_file},
    }
    async with running_gateway(
        tmp_path,
        upstreams=[upstream(azure_emulator.http_url, deployments=CHAT_DEPLOYMENTS)],
        vault={"upstream/emulator": azure_emulator.keys()[0]},
        monitor={"audit": audit},
    ) as gateway:
        _, key = await new_key(gateway)
        async with azure_client(gateway, key) as api:
            await api.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        monitoring = gateway.monitoring
        assert monitoring is not None and monitoring.metrics is not None
        text = monitoring.metrics.render(None)[0].decode()
        assert "keyguard_audit_sink_lag_seconds" in text and "keyguard_audit_sink_sent" in text
        assert gateway.runtime is not None
        public = load_public_keys(
            [(await load_signer(gateway.runtime.vault)).public_pem().encode()]
        )
    rows = azure_emulator.app[LOGS_KEY].rows(RULE, STREAM)
    lines = [r["Line"] for r in rows]
    requests = [r for r in rows if r["Kind"] == "request"]
    assert len(requests) == 1 and orjson.loads(requests[0]["Line"])["data"]["status"] == 200
    report = verify_lines(lines, signature_checker(public))
    assert report.ok and report.head_sets >= 1, report.problems
    assert key not in "".join(lines) and all(key not in line for line in logs.lines)


def test_a_rule_id_is_no_key_but_a_bare_32_hex_value_still_is(tmp_path: Path) -> None:
    def audit(rule: str) -> Any:
        return settings_from_mapping(keyguard_config(tmp_path, monitor={"audit": {
            "sink": "sentinel", "sentinel_endpoint": "https://dce.example",
            "sentinel_rule_id": rule}}))  # fmt: skip

    assert audit(RULE).monitor.audit.sentinel_rule_id == RULE
    with pytest.raises(ConfigurationError, match="sentinel_rule_id: this value looks like an API"):
        audit(RULE.removeprefix("dcr-"))


async def test_sink_sentinel_without_its_endpoint_fails_at_start_naming_it(
    tmp_path: Path, azure_emulator: AzureEmulator
) -> None:
    with pytest.raises(ConfigurationError, match="monitor.audit.sentinel_endpoint"):
        async with running_gateway(
            tmp_path,
            upstreams=[upstream(azure_emulator.http_url, deployments=CHAT_DEPLOYMENTS)],
            vault={"upstream/emulator": azure_emulator.keys()[0]},
            monitor={"audit": {"sink": "sentinel", "sentinel_rule_id": RULE}},
        ):
            pass  # pragma: no cover - it does not start
