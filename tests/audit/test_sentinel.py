"""The Microsoft Sentinel stream against the emulator's Logs Ingestion endpoint, with the real
``azure-monitor-ingestion`` client and a managed-identity token from the emulator: a hostile
or careless caller of the endpoint is refused as Azure refuses it; a careless operator's
endpoint, rule or stream fails at start naming the setting; every committed line arrives once
and in order through injected 429s (their Retry-After followed) and the rows received verify
with the export verifier; an endpoint that is down fills a bounded buffer whose losses are
counted and reported; the token never reaches a log."""

from __future__ import annotations

import asyncio
import gzip
import io
import ssl
import time
from typing import Any

import aiohttp
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
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.emulator import issue_token
from keyguard.emulator.logs_ingestion import LOGS_KEY, MAX_BODY_BYTES
from keyguard.errors import ConfigurationError
from keyguard.events import Event, SecurityEvent
from tests.support.emulators import AzureEmulator
from tests.support.logs import LogCapture
from tests.support.settings import free_port

SIGNER = Signer(Ed25519PrivateKey.generate())
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))
RULE = "dcr-" + "0123456789abcdef" * 2
STREAM = "Custom-KeyguardAudit_CL"
PATH = f"/dataCollectionRules/{RULE}/streams/{STREAM}?api-version=2023-01-01"


async def _until(condition: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.02)


def _sink(emulator: AzureEmulator, **kwargs: Any) -> SentinelSink:
    credential = ManagedIdentityCredential(connection_verify=emulator.ca_file)
    return SentinelSink(emulator.url, RULE, STREAM, credential, ca_file=emulator.ca_file, **kwargs)


# -- a hostile or careless caller of the endpoint -----------------------------------------------


async def test_the_endpoint_refuses_what_azure_refuses(azure_emulator: AzureEmulator) -> None:
    context = ssl.create_default_context(cafile=azure_emulator.ca_file)
    url = azure_emulator.url + PATH
    right = issue_token(azure_emulator.state, "https://monitor.azure.com")["access_token"]
    wrong = issue_token(azure_emulator.state, "https://cognitiveservices.azure.com")
    bomb = gzip.compress(b"[" + b" " * (50 * MAX_BODY_BYTES) + b"]")  # inflates to 50 MB
    assert len(bomb) < MAX_BODY_BYTES
    calls: list[tuple[str, dict[str, str], bytes, int, str]] = [
        (url, {"Authorization": "Basic dXNlcjpwdw=="}, b"[]", 401, "bearer token is missing"),
        (url, {"Authorization": f"Bearer {wrong['access_token']}"}, b"[]", 401, "audience"),
        (url, {"Authorization": "Bearer not-a-token"}, b"[]", 401, "not valid"),
        (url.replace("2023-01-01", "2021-11-01-preview"), {}, b"[]", 400, "api-version"),
        (url, {}, b'{"a": 1}', 400, "JSON array of objects"),
        (url, {}, b"[1, 2]", 400, "JSON array of objects"),
        (url, {}, b"[{]", 400, "not valid JSON"),
        (url, {}, b"[" + b" " * MAX_BODY_BYTES + b"]", 413, "RequestEntityTooLarge"),
        (url, {"Content-Encoding": "gzip"}, bomb, 413, "RequestEntityTooLarge"),
        (url, {"Content-Encoding": "gzip"}, b"\x1f\x8bnot gzip", 400, "gzip"),
        (url, {"Content-Encoding": "x-snappy"}, b"[]", 415, "x-snappy"),
    ]
    async with aiohttp.ClientSession() as http:
        for target, extra, body, status, words in calls:
            headers = {"Authorization": f"Bearer {right}", **extra}
            data = io.BytesIO(body)
            async with http.post(target, data=data, headers=headers, ssl=context) as response:
                text = await response.text()
                assert response.status == status, (target, extra, text)
                assert words in text and orjson.loads(text)["error"]["code"]
        fine = gzip.compress(orjson.dumps([{"Line": "x"}]))
        headers = {"Authorization": f"Bearer {right}", "Content-Encoding": "gzip"}
        async with http.post(url, data=fine, headers=headers, ssl=context) as response:
            assert response.status == 204
    logs = azure_emulator.app[LOGS_KEY]
    assert logs.rows(RULE, STREAM) == [{"Line": "x"}]  # nothing refused was kept
    assert logs.accepted == 1 and logs.calls == len(calls) + 1


async def test_faults_and_the_rows_kept_over_the_control_endpoints(
    azure_emulator: AzureEmulator,
) -> None:
    context = ssl.create_default_context(cafile=azure_emulator.ca_file)
    control = {"x-emulator-token": azure_emulator.state.config.control_token}
    base = azure_emulator.url + "/_emulator/logs-ingestion"
    token = issue_token(azure_emulator.state, "https://monitor.azure.com")["access_token"]
    async with aiohttp.ClientSession() as http:
        async with http.post(base + "/faults", json={"status": 429}, ssl=context) as response:
            assert response.status == 401  # no control token
        fault = {"status": 429, "retry_after": 7, "count": 1}
        async with http.post(base + "/faults", json=fault, headers=control, ssl=context) as r:
            assert r.status == 201
        async with http.post(base + "/faults", json={"status": 200}, headers=control,
                             ssl=context) as r:  # fmt: skip
            assert r.status == 400
        auth = {"Authorization": f"Bearer {token}"}
        for expected in (429, 204):
            async with http.post(azure_emulator.url + PATH, json=[{"n": 1}], headers=auth,
                                 ssl=context) as response:  # fmt: skip
                assert response.status == expected
                if expected == 429:
                    assert response.headers["Retry-After"] == "7"
        async with http.get(base + "/received", headers=control, ssl=context) as response:
            assert (await response.json())["received"] == {f"{RULE}/{STREAM}": [{"n": 1}]}


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
